#!/usr/bin/env bash
# A throwaway PostgreSQL server on loopback for the panel's tests.
#
#   source tests/postgres.sh          # exports MARZNESHIN_TEST_POSTGRES_URL; the server
#                                     # stops (and its files go) when the sourcing shell exits
#   bash tests/postgres.sh CMD ARGS   # runs CMD with MARZNESHIN_TEST_POSTGRES_URL set, then
#                                     # stops the server; exits with CMD's status
#   bash tests/postgres.sh            # prints the URL; the server keeps running until
#                                     # `pg_ctl -D DIR stop` (both printed on stderr)
#
# If MARZNESHIN_TEST_POSTGRES_URL is already set, that server is used and nothing starts.
# Otherwise: Debian's `postgresql` package is installed if no initdb/pg_ctl can be found, a
# cluster is created under a temporary folder (as the `postgres` user, or a `marzneshin-test`
# system user, when running as root: PostgreSQL refuses to run as root), started on 127.0.0.1
# on a free port, and given a database `marzneshin` owned by superuser `marzneshin` with a
# random password. The panel's tests create a fresh database per test on that server.

# Sourced or executed? (When sourced, don't change the caller's shell options.)
if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
  set -euo pipefail
  _mzpg_sourced=0
else
  _mzpg_sourced=1
fi

_mzpg_log() { echo "tests/postgres.sh: $*" >&2; }

_mzpg_as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

# The folder holding initdb and pg_ctl: PATH first, then Debian's versioned folders (newest).
_mzpg_bindir() {
  if command -v initdb >/dev/null 2>&1 && command -v pg_ctl >/dev/null 2>&1; then
    dirname "$(command -v pg_ctl)"
    return 0
  fi
  local d
  d=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
  if [ -n "$d" ] && [ -x "$d/initdb" ] && [ -x "$d/pg_ctl" ]; then
    echo "$d"
    return 0
  fi
  return 1
}

# An administration command, also when /usr/sbin is not on PATH.
_mzpg_sbin() {
  command -v "$1" 2>/dev/null && return 0
  local d
  for d in /usr/sbin /sbin; do
    if [ -x "$d/$1" ]; then echo "$d/$1"; return 0; fi
  done
  _mzpg_log "$1 not found"
  return 1
}

# Is something listening on 127.0.0.1:$1?
_mzpg_port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

_mzpg_start() {
  local bindir
  if ! bindir=$(_mzpg_bindir); then
    _mzpg_log "installing PostgreSQL from Debian (package postgresql)"
    _mzpg_as_root apt-get update -qq
    _mzpg_as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
    bindir=$(_mzpg_bindir) || { _mzpg_log "no initdb/pg_ctl after installing postgresql"; return 1; }
  fi

  # PostgreSQL refuses to run as root: run it as an unprivileged system user then.
  local run=()
  if [ "$(id -u)" = 0 ]; then
    local user=postgres
    if ! id -u "$user" >/dev/null 2>&1; then
      user=marzneshin-test
      if ! id -u "$user" >/dev/null 2>&1; then
        "$(_mzpg_sbin useradd)" --system --no-create-home --shell /usr/sbin/nologin "$user"
      fi
    fi
    local runuser
    runuser=$(_mzpg_sbin runuser) || return 1
    run=("$runuser" -u "$user" --)
  fi

  local dir
  dir=$(mktemp -d "${TMPDIR:-/tmp}/marzneshin-pg.XXXXXX")
  local password
  password=$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')
  printf '%s\n' "$password" >"$dir/pwfile"
  if [ ${#run[@]} -gt 0 ]; then
    chown -R "${run[2]}" "$dir"
  fi
  chmod 700 "$dir"

  if ! "${run[@]}" "$bindir/initdb" -D "$dir/data" -U marzneshin --pwfile="$dir/pwfile" \
      --auth-host=scram-sha-256 --auth-local=scram-sha-256 -E UTF8 --locale=C.UTF-8 \
      >"$dir/initdb.log" 2>&1; then
    _mzpg_log "initdb failed:"
    cat "$dir/initdb.log" >&2
    rm -rf "$dir"
    return 1
  fi
  rm -f "$dir/pwfile"

  # A free port: not in use now, and the server starts on it (retry on a race).
  local port="" tries=0 candidate
  while [ -z "$port" ]; do
    tries=$((tries + 1))
    if [ "$tries" -gt 20 ]; then
      _mzpg_log "could not start PostgreSQL; last log:"
      cat "$dir/server.log" >&2 || true
      rm -rf "$dir"
      return 1
    fi
    candidate=$((20000 + RANDOM % 40000))
    _mzpg_port_busy "$candidate" && continue
    # Throwaway data: no fsync. Sockets in our folder (not /var/run/postgresql).
    if "${run[@]}" "$bindir/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 -s start -o \
        "-c listen_addresses=127.0.0.1 -p $candidate -k $dir -c max_connections=300 -c fsync=off -c synchronous_commit=off -c full_page_writes=off" \
        >/dev/null 2>&1; then
      port=$candidate
    fi
  done

  local url="postgres://marzneshin:$password@127.0.0.1:$port/marzneshin"
  local psql="$bindir/psql"
  [ -x "$psql" ] || psql=$(command -v psql) || psql=$(ls -d /usr/lib/postgresql/*/bin/psql | sort -V | tail -n 1)
  if ! PGPASSWORD=$password "$psql" -q -h 127.0.0.1 -p "$port" -U marzneshin -d postgres \
      -v ON_ERROR_STOP=1 -c "CREATE DATABASE marzneshin" >/dev/null; then
    _mzpg_log "could not create the database"
    "${run[@]}" "$bindir/pg_ctl" -D "$dir/data" -m immediate -s stop || true
    rm -rf "$dir"
    return 1
  fi

  export MARZNESHIN_TEST_POSTGRES_URL="$url"
  _MZPG_DIR="$dir"
  _MZPG_STOP=("${run[@]}" "$bindir/pg_ctl" -D "$dir/data" -m fast -s stop)
  _mzpg_log "PostgreSQL on 127.0.0.1:$port (data in $dir)"
}

# Stops the server this script started (if any) and removes its files. Safe to call twice.
marzneshin_test_postgres_stop() {
  if [ -n "${_MZPG_DIR:-}" ]; then
    "${_MZPG_STOP[@]}" >/dev/null 2>&1 || true
    rm -rf "$_MZPG_DIR"
    _MZPG_DIR=""
  fi
}

_MZPG_DIR=""
if [ -n "${MARZNESHIN_TEST_POSTGRES_URL:-}" ]; then
  _mzpg_log "using MARZNESHIN_TEST_POSTGRES_URL from the environment"
  export MARZNESHIN_TEST_POSTGRES_URL
elif ! _mzpg_start; then
  if [ "$_mzpg_sourced" = 1 ]; then return 1; else exit 1; fi
fi

if [ "$_mzpg_sourced" = 1 ]; then
  # Stop the server when the sourcing shell exits, however it exits.
  trap marzneshin_test_postgres_stop EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
elif [ $# -gt 0 ]; then
  trap marzneshin_test_postgres_stop EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
  status=0
  "$@" || status=$?
  exit "$status"
else
  echo "$MARZNESHIN_TEST_POSTGRES_URL"
  if [ -n "$_MZPG_DIR" ]; then
    _mzpg_log "stop it with: ${_MZPG_STOP[*]} && rm -rf $_MZPG_DIR"
  fi
fi
