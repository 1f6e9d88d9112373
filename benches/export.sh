#!/usr/bin/env bash
# Export benchmark, rerunnable: imports ROWS generated events (default 1,000,000; the file and
# store are kept in target/bench and reused) into a store, then exports them with
# flexprice-import export to CSV, JSON Lines and gzip'd CSV, printing seconds, rows/s and peak
# RSS (from /usr/bin/time) for each: memory should not grow with ROWS.
#
# Usage: benches/export.sh [ROWS]
# Needs: python3, /usr/bin/time (Debian: time).
set -euo pipefail

rows=${1:-1000000}
root=$(cd "$(dirname "$0")/.." && pwd)
gen=${GEN_EVENTS:-$root/../shared/tools/gen_events.py}
work=${BENCH_DIR:-$root/target/bench}
mkdir -p "$work"

input="$work/events-$rows.csv"
if [ ! -f "$input" ]; then
    echo "generating $rows events into $input" >&2
    python3 "$gen" --rows "$rows" -o "$input"
fi
cargo build --release --quiet --manifest-path "$root/Cargo.toml" --bin flexprice-import
bin="$root/target/release/flexprice-import"
db="$work/export-$rows.db"
if [ ! -f "$db" ]; then
    echo "importing $rows events into $db" >&2
    "$bin" --db "$db" --quiet run "$input" >/dev/null
fi

measure() {
    local label=$1
    shift
    /usr/bin/time -f "%e %M" -o "$work/time.txt" "$@" >/dev/null 2>"$work/stderr.txt" || {
        echo "$label failed:" >&2
        tail -5 "$work/stderr.txt" >&2
    }
    awk -v label="$label" -v rows="$rows" '{ printf "%-28s %8.2f s %10.0f rows/s %8.1f MB peak RSS\n", label, $1, rows / $1, $2 / 1024 }' "$work/time.txt"
}

echo "$rows events in $db, $(nproc) cores"
for out in export.csv export.jsonl export.csv.gz; do
    rm -f "$work/$out"
    measure "export -o $out" "$bin" --db "$db" --quiet export events -o "$work/$out"
    echo "  $(stat -c %s "$work/$out") bytes" >&2
done
