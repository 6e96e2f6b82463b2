#!/usr/bin/env bash
# A throwaway PostgreSQL for the store tests, on loopback port ${GLOWAI_PG_PORT:-55432}, from the
# Debian package (apt-get install postgresql). `start` prints the URL to export as GLOWAI_TEST_PG_URL;
# `stop` shuts it down and removes its data folder.
set -euo pipefail
PORT="${GLOWAI_PG_PORT:-55432}"
DATA="${GLOWAI_PG_DATA:-/tmp/glowai-test-pg}"
BIN="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)"
[[ -n "$BIN" ]] || { echo "PostgreSQL is not installed: apt-get install postgresql" >&2; exit 1; }
as_owner() {  # PostgreSQL refuses to run as root: use the postgres user then
    if [[ "$(id -u)" == 0 ]]; then su postgres -s /bin/bash -c "$*"; else bash -c "$*"; fi
}
case "${1:-}" in
start)
    if [[ ! -f "$DATA/PG_VERSION" ]]; then
        mkdir -p "$DATA"
        [[ "$(id -u)" == 0 ]] && chown postgres "$DATA"
        as_owner "'$BIN/initdb' -D '$DATA' -A trust -U postgres >/dev/null"
    fi
    as_owner "'$BIN/pg_ctl' -D '$DATA' -l '$DATA/server.log' -w -o \"-p $PORT -k /tmp -c listen_addresses=127.0.0.1 -c fsync=off\" start >/dev/null"
    echo "postgresql+psycopg://postgres@127.0.0.1:$PORT/postgres"
    ;;
stop)
    as_owner "'$BIN/pg_ctl' -D '$DATA' -m fast stop >/dev/null" || true
    rm -rf "$DATA"
    ;;
*)
    echo "usage: $0 start|stop" >&2
    exit 2
    ;;
esac
