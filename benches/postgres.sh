#!/usr/bin/env bash
# Whole-program import benchmark on a PostgreSQL store (issue 15: 1M events within 2x of
# `psql \copy` of the same CSV into a table keyed on event_id), rerunnable: starts its own
# throwaway cluster with tests/pg-cluster.sh (stopped whatever happens), then imports the
# same CSV, each time into a fresh database, with
#   - flexprice-import run (release build, local target, default settings),
#   - psql \copy into a table keyed on event_id (the same de-duplication work),
# alternated ROUNDS times (default 2: tool, psql, tool, psql) so that both see the same load.
# Prints each run's wall time, rows/s, peak RSS (/usr/bin/time) and the load average when it
# ended, the medians and their ratio (tool / psql), and uptime at the end. Where the time
# goes: each line gives the client's CPU seconds (user + system, /usr/bin/time) and the
# server's (every process of the cluster, the ended backends included, from /proc).
#
# Usage: benches/postgres.sh [CSV]     default: target/bench/events-1000000.csv, generated
#   with ../shared/tools/gen_events.py when missing. ROUNDS=3 for more rounds; BIN=PATH to
#   measure another build.
# Needs: the PostgreSQL server binaries and psql (see tests/pg-cluster.sh), /usr/bin/time.
# The cluster is the tests' (fsync off): both sides alike.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
rounds=${ROUNDS:-2}
work=${BENCH_DIR:-$root/target/bench}
mkdir -p "$work"
csv=${1:-$work/events-1000000.csv}
if [ ! -f "$csv" ]; then
    echo "generating 1000000 events into $csv" >&2
    python3 "${GEN_EVENTS:-$root/../shared/tools/gen_events.py}" --rows 1000000 --format csv -o "$csv"
fi
rows=$(($(wc -l <"$csv") - 1))
# BIN=path measures another build (an earlier commit's, say) instead of this tree's.
if [ -z "${BIN:-}" ]; then
    cargo build --release --quiet --manifest-path "$root/Cargo.toml"
fi
bin=${BIN:-$root/target/release/flexprice-import}

eval "$(bash "$root/tests/pg-cluster.sh" start)"
trap 'bash "$root/tests/pg-cluster.sh" stop "$FLEXPRICE_IMPORT_PG_DIR" >/dev/null 2>&1 || true' EXIT
admin=$FLEXPRICE_IMPORT_TEST_PG
url_of() { echo "${admin%/postgres}/$1"; }
# psql \copy reads the file as its own user: a copy where anyone may read it.
readable="$FLEXPRICE_IMPORT_PG_DIR/events.csv"
cp "$csv" "$readable"
chmod 644 "$readable"

# The cluster's CPU seconds so far: the postmaster's own and its ended children's (reaped
# backends), and its live children's.
server_cpu() {
    local pm ticks
    pm=$(head -n 1 "$FLEXPRICE_IMPORT_PG_DIR/data/postmaster.pid")
    ticks=$(getconf CLK_TCK)
    {
        awk '{ print $14 + $15 + $16 + $17 }' "/proc/$pm/stat"
        for child in $(pgrep -P "$pm"); do
            awk '{ print $14 + $15 }' "/proc/$child/stat" 2>/dev/null || true
        done
    } | awk -v t="$ticks" '{ s += $1 } END { printf "%.2f", s / t }'
}

# measure LABEL COMMAND...: runs it, prints one line, appends its seconds to $work/LABEL.pg.times.
measure() {
    local label=$1
    shift
    local status=0 before after
    before=$(server_cpu)
    /usr/bin/time -f "%e %M %U %S" -o "$work/time.txt" "$@" >/dev/null 2>"$work/stderr.txt" || status=$?
    # The backend that served it ends just after the client: let the postmaster reap it.
    sleep 1
    after=$(server_cpu)
    if [ "$status" -ne 0 ]; then
        echo "$label exited $status:" >&2
        tail -5 "$work/stderr.txt" >&2
    fi
    local load
    load=$(cut -d' ' -f1 /proc/loadavg)
    awk -v label="$label" -v rows="$rows" -v load="$load" -v server="$(awk -v a="$after" -v b="$before" 'BEGIN { print a - b }')" \
        '{ printf "%-6s %7.2f s %8.0f rows/s %6.1f MB peak RSS  CPU: client %5.2f s, server %5.2f s  load %s\n", label, $1, rows / $1, $2 / 1024, $3 + $4, server, load }' "$work/time.txt"
    cut -d' ' -f1 "$work/time.txt" >>"$work/$label.pg.times"
}

median() {
    sort -n "$work/$1.pg.times" | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

fresh_db() {
    PGOPTIONS="-c client_min_messages=warning" psql "$admin" -q -v ON_ERROR_STOP=1 -c "DROP DATABASE IF EXISTS $1" \
        -c "CREATE DATABASE $1" >/dev/null
}

echo "$rows rows, $(stat -L -c %s "$csv") bytes of CSV, $(nproc) cores, $rounds rounds, $(psql "$admin" -Atc 'SHOW server_version')"
rm -f "$work/tool.pg.times" "$work/psql.pg.times"
for round in $(seq "$rounds"); do
    fresh_db bench_tool
    # Migrated before the clock starts, as a store in use is.
    "$bin" --db "$(url_of bench_tool)" --quiet list >/dev/null
    measure tool "$bin" --db "$(url_of bench_tool)" --quiet run "$csv"
    stored=$(psql "$(url_of bench_tool)" -Atc "SELECT count(*) FROM event_rows")
    fresh_db bench_copy
    psql "$(url_of bench_copy)" -q -v ON_ERROR_STOP=1 -c "CREATE TABLE events(event_id TEXT PRIMARY KEY,
        event_name TEXT, external_customer_id TEXT, timestamp TEXT, source TEXT, \"properties.tokens\" TEXT,
        \"properties.model\" TEXT, \"properties.region\" TEXT)"
    measure psql psql "$(url_of bench_copy)" -q -v ON_ERROR_STOP=1 -c "\\copy events FROM '$readable' CSV HEADER"
    echo "round $round: the tool stored $stored events"
done
tool=$(median tool)
copy=$(median psql)
awk -v t="$tool" -v c="$copy" -v rows="$rows" 'BEGIN {
    printf "medians: tool %.2f s (%.0f rows/s), psql \\copy %.2f s (%.0f rows/s); tool / psql = %.2f\n",
        t, rows / t, c, rows / c, t / c }'
uptime
