#!/usr/bin/env bash
# Whole-program import benchmark, rerunnable: generates ROWS events (default 1,000,000) with
# ../shared/tools/gen_events.py, then imports the same CSV file, each into a fresh store, with
#   - flexprice-import run (release build, local target, default settings),
#   - sqlite3 .import --csv into a table keyed on event_id (the same de-duplication work),
#   - sqlite3 .import --csv into a plain table (no key: the floor),
# and prints wall time, rows/s and peak RSS (from /usr/bin/time) side by side.
#
# Usage: benches/import.sh [ROWS] [FORMAT]      FORMAT: csv (default) or jsonl (no sqlite3 run)
# Needs: python3, /usr/bin/time (Debian: time), sqlite3 (Debian: sqlite3).
set -euo pipefail

rows=${1:-1000000}
format=${2:-csv}
root=$(cd "$(dirname "$0")/.." && pwd)
gen=${GEN_EVENTS:-$root/../shared/tools/gen_events.py}
work=${BENCH_DIR:-$root/target/bench}
mkdir -p "$work"

input="$work/events-$rows.$format"
if [ ! -f "$input" ]; then
    echo "generating $rows events into $input" >&2
    python3 "$gen" --rows "$rows" --format "$format" -o "$input"
fi
cargo build --release --quiet --manifest-path "$root/Cargo.toml"
bin="$root/target/release/flexprice-import"

measure() {
    local label=$1
    shift
    local status=0
    /usr/bin/time -f "%e %M" -o "$work/time.txt" "$@" >/dev/null 2>"$work/stderr.txt" || status=$?
    if [ "$status" -ne 0 ]; then
        echo "$label exited $status:" >&2
        tail -5 "$work/stderr.txt" >&2
    fi
    awk -v label="$label" -v rows="$rows" '{ printf "%-44s %8.2f s %10.0f rows/s %8.1f MB peak RSS\n", label, $1, rows / $1, $2 / 1024 }' "$work/time.txt"
}

echo "$rows rows, $(stat -c %s "$input") bytes of $format, $(nproc) cores"
rm -rf "$work"/fi.db*
measure "flexprice-import run" "$bin" --db "$work/fi.db" --quiet run "$input"
sqlite3 "$work/fi.db" "SELECT 'stored events: ' || count(*) FROM events" >&2

if [ "$format" = csv ] && command -v sqlite3 >/dev/null; then
    rm -f "$work"/keyed.db* "$work"/plain.db*
    cat >"$work/keyed.sql" <<SQL
CREATE TABLE events(event_id TEXT PRIMARY KEY, event_name TEXT, external_customer_id TEXT, timestamp TEXT,
                    source TEXT, "properties.tokens" TEXT, "properties.model" TEXT, "properties.region" TEXT);
.import --csv --skip 1 $input events
SQL
    measure "sqlite3 .import --csv (event_id primary key)" sqlite3 "$work/keyed.db" ".read $work/keyed.sql"
    measure "sqlite3 .import --csv (no key)" sqlite3 "$work/plain.db" ".import --csv $input events"
fi
