#!/usr/bin/env bash
# Whole-program import benchmark, rerunnable: generates ROWS events (default 1,000,000) with
# ../shared/tools/gen_events.py, then imports the same file, each time into a fresh store, with
#   - flexprice-import run (release build, local target, default settings),
#   - sqlite3 .import --csv into a table keyed on event_id (the same de-duplication work),
# alternated ROUNDS times (default 3: tool, sqlite3, tool, sqlite3, ...) so that both see the
# same load, then once sqlite3 .import --csv into a plain table (no key: the floor). Prints
# each run's wall time, rows/s, peak RSS and the load average (uptime) when it ended, then
# the medians and the ratio of the medians (tool / keyed sqlite3), and the store sizes.
#
# Usage: benches/import.sh [ROWS] [FORMAT]      FORMAT: csv (default) or jsonl
#   (JSON Lines: sqlite3 imports the CSV of the same events). ROUNDS=5 for more rounds.
# Needs: python3, /usr/bin/time (Debian: time), sqlite3 (Debian: sqlite3).
set -euo pipefail

rows=${1:-1000000}
format=${2:-csv}
rounds=${ROUNDS:-3}
root=$(cd "$(dirname "$0")/.." && pwd)
gen=${GEN_EVENTS:-$root/../shared/tools/gen_events.py}
work=${BENCH_DIR:-$root/target/bench}
mkdir -p "$work"

generate() {
    local file="$work/events-$rows.$1"
    if [ ! -f "$file" ]; then
        echo "generating $rows events into $file" >&2
        python3 "$gen" --rows "$rows" --format "$1" -o "$file"
    fi
}
generate "$format"
generate csv
input="$work/events-$rows.$format"
csv="$work/events-$rows.csv"
cargo build --release --quiet --manifest-path "$root/Cargo.toml"
bin="$root/target/release/flexprice-import"

# measure LABEL COMMAND...: runs it, prints one line, appends its seconds to $work/LABEL.times.
measure() {
    local label=$1
    shift
    local status=0
    # Every run starts with nothing of the previous one still being written back: its dirty
    # pages (a keyed sqlite3 run leaves some 100 MB at 1M) would otherwise be flushed while
    # the next run works, and count against whichever comes next.
    sync
    /usr/bin/time -f "%e %M" -o "$work/time.txt" "$@" >/dev/null 2>"$work/stderr.txt" || status=$?
    if [ "$status" -ne 0 ]; then
        echo "$label exited $status:" >&2
        tail -5 "$work/stderr.txt" >&2
    fi
    local load
    load=$(cut -d' ' -f1 /proc/loadavg)
    awk -v label="$label" -v rows="$rows" -v load="$load" '{ printf "%-28s %8.2f s %10.0f rows/s %8.1f MB peak RSS   load %s\n", label, $1, rows / $1, $2 / 1024, load }' "$work/time.txt"
    cut -d' ' -f1 "$work/time.txt" >>"$work/$label.times"
}

median() {
    sort -n "$work/$1.times" | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

cat >"$work/keyed.sql" <<SQL
CREATE TABLE events(event_id TEXT PRIMARY KEY, event_name TEXT, external_customer_id TEXT, timestamp TEXT,
                    source TEXT, "properties.tokens" TEXT, "properties.model" TEXT, "properties.region" TEXT);
.import --csv --skip 1 $csv events
SQL

echo "$rows rows, $(stat -L -c %s "$input") bytes of $format, $(nproc) cores, $rounds rounds"
rm -f "$work/tool.times" "$work/sqlite3-keyed.times" "$work/sqlite3-plain.times"
for _ in $(seq "$rounds"); do
    rm -rf "$work"/fi.db*
    measure tool "$bin" --db "$work/fi.db" --quiet run --format "$format" "$input"
    if command -v sqlite3 >/dev/null; then
        rm -f "$work"/keyed.db*
        measure sqlite3-keyed sqlite3 "$work/keyed.db" ".read $work/keyed.sql"
    fi
done
stored=$(sqlite3 "$work/fi.db" "SELECT count(*) FROM events" 2>/dev/null || echo "?")
if command -v sqlite3 >/dev/null; then
    rm -f "$work"/plain.db*
    measure sqlite3-plain sqlite3 "$work/plain.db" ".import --csv $csv events"
    tool=$(median tool)
    keyed=$(median sqlite3-keyed)
    awk -v t="$tool" -v k="$keyed" -v p="$(median sqlite3-plain)" -v rows="$rows" 'BEGIN {
        printf "medians: tool %.2f s (%.0f rows/s), sqlite3 keyed %.2f s (%.0f rows/s), plain %.2f s; tool / keyed = %.2f\n",
            t, rows / t, k, rows / k, p, t / k }'
    echo "store sizes: tool $(du -b "$work/fi.db" | cut -f1) bytes ($stored events), sqlite3 keyed $(du -b "$work/keyed.db" | cut -f1), plain $(du -b "$work/plain.db" | cut -f1)"
fi
