#!/usr/bin/env bash
# A throwaway PostgreSQL cluster for the tests that need one (the PostgreSQL store's tests
# read FLEXPRICE_IMPORT_TEST_PG). `start` prints shell exports; `stop` ends the cluster and
# removes its folder. .ci/run uses it; by hand:
#
#   eval "$(bash tests/pg-cluster.sh start)"    # FLEXPRICE_IMPORT_TEST_PG, FLEXPRICE_IMPORT_PG_DIR
#   cargo test
#   bash tests/pg-cluster.sh stop "$FLEXPRICE_IMPORT_PG_DIR"
#
# The cluster lives in a new temporary folder, listens on 127.0.0.1 only, on a free port,
# with trust authentication there for every role but two the tests use: `flexprice_pw` must
# give its password (the test of a refused password), and `flexprice_tls` may only connect
# over TLS (the test that TLS is used and the server's certificate checked). TLS uses a
# self-signed certificate for localhost made here, whose file FLEXPRICE_IMPORT_TEST_PG_CA
# names. It trades durability for speed (no fsync): it holds test data only. As root, the
# server runs as the `postgres` user (initdb and postgres refuse root). Needs initdb, pg_ctl,
# psql and openssl (Debian: the postgresql package; .ci/run installs it when initdb is
# missing).
set -euo pipefail

say() { echo "pg-cluster: $*" >&2; }

# initdb and pg_ctl: on PATH, else Debian's newest /usr/lib/postgresql/N/bin.
pg_bin() {
    if command -v initdb >/dev/null 2>&1 && command -v pg_ctl >/dev/null 2>&1; then
        dirname "$(command -v initdb)"
        return
    fi
    local newest
    newest=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
    if [ -z "$newest" ] || [ ! -x "$newest/initdb" ]; then
        say "initdb not found (on PATH or in /usr/lib/postgresql/*/bin): install PostgreSQL (Debian: apt-get install postgresql)"
        exit 1
    fi
    echo "$newest"
}

# Runs a command as the cluster's owner: this user, or `postgres` when this is root.
as_owner() {
    if [ "$(id -u)" -eq 0 ]; then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

# A port nobody listens on now (a race with another starter is caught by the retry below).
free_port() {
    local port
    for _ in $(seq 1 50); do
        port=$((20000 + RANDOM % 40000))
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            echo "$port"
            return
        fi
    done
    say "no free port found"
    exit 1
}

start() {
    local bin dir port
    bin=$(pg_bin)
    if [ "$(id -u)" -eq 0 ] && ! id postgres >/dev/null 2>&1; then
        say "running as root: the cluster needs a 'postgres' user to run as (the postgresql package makes one)"
        exit 1
    fi
    # As root, under /tmp: the postgres user may not be able to reach a $TMPDIR in root's home.
    local base=${TMPDIR:-/tmp}
    [ "$(id -u)" -eq 0 ] && base=/tmp
    dir=$(mktemp -d "$base/flexprice-pg.XXXXXX")
    touch "$dir/.flexprice-import-test-cluster"
    if [ "$(id -u)" -eq 0 ]; then
        chown -R postgres "$dir"
    fi
    as_owner "$bin/initdb" -D "$dir/data" -U postgres --auth=trust --no-sync -E UTF8 --locale=C >"$dir/initdb.log" 2>&1 || {
        cat "$dir/initdb.log" >&2
        say "initdb failed"
        exit 1
    }
    # 127.0.0.1 only: no unix-socket or IPv6 entry, so nothing else is trusted.
    cat >"$dir/data/pg_hba.conf" <<'HBA'
host    all flexprice_pw  127.0.0.1/32 scram-sha-256
hostssl all flexprice_tls 127.0.0.1/32 trust
host    all flexprice_tls 127.0.0.1/32 reject
host    all all           127.0.0.1/32 trust
HBA
    # A self-signed certificate for localhost (and 127.0.0.1), for the TLS tests.
    if ! command -v openssl >/dev/null 2>&1; then
        say "openssl not found: it makes the test cluster's TLS certificate (Debian: apt-get install openssl)"
        exit 1
    fi
    # A certificate authority of its own, and the server's certificate signed by it (rustls
    # refuses a CA certificate used as the server's own).
    openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=flexprice-import test CA" \
        -keyout "$dir/ca.key" -out "$dir/ca.crt" >/dev/null 2>&1
    openssl req -newkey rsa:2048 -nodes -subj "/CN=localhost" \
        -keyout "$dir/data/server.key" -out "$dir/server.csr" >/dev/null 2>&1
    printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n' >"$dir/server.ext"
    openssl x509 -req -in "$dir/server.csr" -CA "$dir/ca.crt" -CAkey "$dir/ca.key" -CAcreateserial \
        -days 2 -extfile "$dir/server.ext" -out "$dir/data/server.crt" >/dev/null 2>&1
    chmod 600 "$dir/data/server.key"
    if [ "$(id -u)" -eq 0 ]; then
        chown postgres "$dir/data/server.key" "$dir/data/server.crt"
    fi
    local started=""
    for _ in 1 2 3 4 5; do
        port=$(free_port)
        if as_owner "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 30 \
            -o "-c listen_addresses=127.0.0.1 -c port=$port -c unix_socket_directories='$dir' -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200 -c ssl=on" \
            start >/dev/null 2>&1; then
            started=1
            break
        fi
    done
    if [ -z "$started" ]; then
        tail -n 20 "$dir/server.log" >&2 || true
        say "the server did not start"
        exit 1
    fi
    if ! psql "postgresql://postgres@127.0.0.1:$port/postgres" -v ON_ERROR_STOP=1 -q \
        -c "CREATE ROLE flexprice_pw LOGIN PASSWORD 'flexprice-right-password'" \
        -c "CREATE ROLE flexprice_tls LOGIN" >&2; then
        stop "$dir"
        say "could not create the roles flexprice_pw and flexprice_tls (is psql installed?)"
        exit 1
    fi
    say "PostgreSQL $("$bin/postgres" --version | awk '{print $3}') on 127.0.0.1:$port, in $dir"
    echo "export FLEXPRICE_IMPORT_TEST_PG='postgres://postgres@127.0.0.1:$port/postgres'"
    echo "export FLEXPRICE_IMPORT_PG_DIR='$dir'"
    echo "export FLEXPRICE_IMPORT_TEST_PG_CA='$dir/ca.crt'"
}

stop() {
    local dir=${1:-}
    if [ -z "$dir" ] || [ ! -f "$dir/.flexprice-import-test-cluster" ]; then
        say "stop: '$dir' is not a folder this script made"
        exit 1
    fi
    local bin
    bin=$(pg_bin)
    if [ -f "$dir/data/postmaster.pid" ]; then
        as_owner "$bin/pg_ctl" -D "$dir/data" -m immediate -w stop >/dev/null 2>&1 || true
    fi
    rm -rf "$dir"
}

case "${1:-}" in
    start) start ;;
    stop) stop "${2:-}" ;;
    *)
        echo "usage: $0 start | stop DIR" >&2
        exit 2
        ;;
esac
