#!/usr/bin/env bash
# Start (or reuse) a throwaway PostgreSQL server for the test suite.
#
#   export KRONOS_TEST_PG_URL="$(bash .ci/postgres.sh)"   # URL is the only stdout line
#   eval "$(bash .ci/postgres.sh --export)"               # same, as an export line
#   bash .ci/postgres.sh stop                             # stop it and delete the cluster
#
# Idempotent: installs the Debian packages if initdb is missing (needs root),
# initialises a cluster in $KRONOS_PG_DIR (default /tmp/kronos-ci-pg) owned by
# the postgres OS user (when run as root), starts it on 127.0.0.1 on a free port
# (trust auth, fsync off: test use only) and creates database $KRONOS_PG_DB.
set -euo pipefail

PGROOT=${KRONOS_PG_DIR:-/tmp/kronos-ci-pg}
DB=${KRONOS_PG_DB:-kronos_test}
PGUSER_NAME=postgres
DATA="$PGROOT/data"
log() { echo "postgres.sh: $*" >&2; }

find_bindir() {
    local d
    d=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
    if [[ -n "$d" && -x "$d/initdb" ]]; then echo "$d"; return; fi
    if command -v pg_config >/dev/null 2>&1 && [[ -x "$(pg_config --bindir)/initdb" ]]; then
        pg_config --bindir
    fi
}

as_pg() {
    if [[ $(id -u) -eq 0 ]]; then runuser -u "$PGUSER_NAME" -- "$@"; else "$@"; fi
}

port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

free_port() {
    local p
    for _ in $(seq 1 200); do
        p=$(( 20000 + RANDOM % 30000 ))
        if ! port_in_use "$p"; then echo "$p"; return; fi
    done
    log "no free port found"; exit 1
}

BIN=$(find_bindir)

if [[ "${1:-}" == "stop" ]]; then
    if [[ -n "$BIN" && -f "$DATA/PG_VERSION" ]]; then
        as_pg "$BIN/pg_ctl" -D "$DATA" -m fast -w stop >&2 || true
    fi
    rm -rf "$PGROOT"
    exit 0
fi

if [[ -z "$BIN" ]]; then
    [[ $(id -u) -eq 0 ]] || { log "PostgreSQL is not installed and we are not root"; exit 1; }
    log "installing PostgreSQL from Debian packages"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >&2
    apt-get install -y -qq --no-install-recommends postgresql >&2
    BIN=$(find_bindir)
    [[ -n "$BIN" ]] || { log "initdb still not found after install"; exit 1; }
fi

if [[ $(id -u) -eq 0 ]] && ! id "$PGUSER_NAME" >/dev/null 2>&1; then
    log "OS user $PGUSER_NAME is missing (expected from the postgresql package)"; exit 1
fi

mkdir -p "$PGROOT"
[[ $(id -u) -eq 0 ]] && chown "$PGUSER_NAME" "$PGROOT"

if [[ ! -f "$DATA/PG_VERSION" ]]; then
    rm -rf "$DATA"
    log "initdb in $DATA"
    as_pg "$BIN/initdb" -D "$DATA" -U postgres --auth=trust -E UTF8 --no-sync >"$PGROOT/initdb.log" 2>&1 \
        || { cat "$PGROOT/initdb.log" >&2; exit 1; }
fi

if as_pg "$BIN/pg_ctl" -D "$DATA" status >/dev/null 2>&1 && [[ -f "$PGROOT/port" ]]; then
    PORT=$(cat "$PGROOT/port")
    log "reusing server on port $PORT"
else
    PORT=$(free_port)
    echo "$PORT" >"$PGROOT/port"
    log "starting server on 127.0.0.1:$PORT"
    as_pg "$BIN/pg_ctl" -D "$DATA" -l "$PGROOT/server.log" -w -t 60 \
        -o "-h 127.0.0.1 -p $PORT -k $PGROOT -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=100" \
        start >&2 || { tail -n 30 "$PGROOT/server.log" >&2; exit 1; }
fi

if [[ -z "$(as_pg "$BIN/psql" -h 127.0.0.1 -p "$PORT" -U postgres -d postgres -tAc \
        "SELECT 1 FROM pg_database WHERE datname = '$DB'")" ]]; then
    as_pg "$BIN/createdb" -h 127.0.0.1 -p "$PORT" -U postgres "$DB" >&2
fi

URL="postgresql+psycopg://postgres@127.0.0.1:$PORT/$DB"
if [[ "${1:-}" == "--export" ]]; then
    echo "export KRONOS_TEST_PG_URL=$URL"
else
    echo "$URL"
fi
