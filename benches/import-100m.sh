#!/usr/bin/env bash
# 100M events without a 10 GB file on disk: the 10M generated file (../shared/tools/gen_events.py,
# made once) piped ten times through sed into `flexprice-import run -` (standard input), each
# pass's event_ids made unique (evt_… becomes evt0_…, evt1_…), into a fresh store (release
# build). Prints wall time, rows/s, peak RSS (/usr/bin/time), the CPU time, the store's size and
# the rows it holds (counted), then deletes the store (18.8 GB at 100M: mind the free disk). With
# PLAIN=1, also sqlite3 .import of the same stream into a plain table (the floor). With KEYED=1
# (CSV), also sqlite3 .import into a table keyed on event_id, one pass (10% of the rows, one
# transaction) at a time, each pass timed; KEYED_BUDGET=SECONDS starts no pass after that many
# seconds (it may take hours: the key index outgrows the page cache). TOOL=0 skips the tool's run.
#
# Usage: benches/import-100m.sh [csv|jsonl]     BASE=ROWS for a smaller base file (the input is
#   ten times BASE rows; default 10,000,000).
# Needs: python3, /usr/bin/time (Debian: time), sqlite3 (Debian: sqlite3).
set -euo pipefail

format=${1:-csv}
base=${BASE:-10000000}
root=$(cd "$(dirname "$0")/.." && pwd)
gen=${GEN_EVENTS:-$root/../shared/tools/gen_events.py}
work=${BENCH_DIR:-$root/target/bench}
mkdir -p "$work"
file="$work/events-$base.$format"
if [ ! -f "$file" ]; then
    echo "generating $base events into $file" >&2
    python3 "$gen" --rows "$base" --format "$format" -o "$file"
fi
rows=$((base * 10))

# The stream: the header once (CSV), then each pass with its own event_id prefix.
cat >"$work/stream-$format.sh" <<SH
#!/usr/bin/env bash
if [ "$format" = csv ]; then
    head -1 "$file"
    for i in 0 1 2 3 4 5 6 7 8 9; do tail -n +2 "$file" | sed "s/^evt_/evt\${i}_/"; done
else
    for i in 0 1 2 3 4 5 6 7 8 9; do sed "s/^{\"event_id\":\"evt_/{\"event_id\":\"evt\${i}_/" "$file"; done
fi
SH
# One pass of the CSV stream, without the header: bash pass-csv.sh I.
cat >"$work/pass-csv.sh" <<SH
#!/usr/bin/env bash
tail -n +2 "$file" | sed "s/^evt_/evt\${1}_/"
SH
cargo build --release --quiet --manifest-path "$root/Cargo.toml"
bin="$root/target/release/flexprice-import"

# The stores are large: deleted however the script ends.
trap 'rm -rf "$work"/big.db* "$work"/plain-big.db* "$work"/keyed-big.db*' EXIT
if [ "${TOOL:-1}" = 1 ]; then
    rm -rf "$work"/big.db*
    sync
    status=0
    bash "$work/stream-$format.sh" |
        /usr/bin/time -f "%e %M %U %S" -o "$work/time.txt" "$bin" --db "$work/big.db" --quiet run - --format "$format" \
            >/dev/null 2>"$work/stderr.txt" || status=$?
    if [ "$status" -ne 0 ]; then
        # 3: some rows were rejected (a generated file with --bad-rate); the figures still stand.
        echo "flexprice-import exited $status:" >&2
        { grep -v '^Command exited' "$work/stderr.txt" || true; } | tail -5 >&2
        [ "$status" -eq 3 ] || exit "$status"
    fi
    read -r seconds peak user system < <(grep -v '^Command exited' "$work/time.txt")
    stored=$(sqlite3 -readonly "$work/big.db" "SELECT count(*) FROM event_rows")
    counters=$(sqlite3 -readonly "$work/big.db" "SELECT task_status || ' ' || processed_records || ' processed, ' || successful_records || ' stored, ' || failed_records || ' rejected' FROM tasks")
    awk -v s="$seconds" -v m="$peak" -v u="$user" -v y="$system" -v rows="$rows" -v f="$format" \
        'BEGIN { printf "tool, %d %s rows from standard input: %.1f s, %.0f rows/s, %.1f MB peak RSS, CPU %.0f s user + %.0f s system\n", rows, f, s, rows / s, m / 1024, u, y }'
    echo "store: $(du -b "$work/big.db" | cut -f1) bytes, $stored rows counted in event_rows; task: $counters"
fi

if [ "${PLAIN:-0}" = 1 ] && [ "$format" = csv ]; then
    rm -f "$work"/plain-big.db*
    sync
    /usr/bin/time -f "%e %M" -o "$work/time.txt" sqlite3 "$work/plain-big.db" ".import --csv '|bash $work/stream-csv.sh' events"
    read -r seconds peak <"$work/time.txt"
    awk -v s="$seconds" -v m="$peak" -v rows="$rows" \
        'BEGIN { printf "sqlite3 .import, no key: %.1f s, %.0f rows/s, %.1f MB peak RSS\n", s, rows / s, m / 1024 }'
    echo "its store: $(du -b "$work/plain-big.db" | cut -f1) bytes"
fi

if [ "${KEYED:-0}" = 1 ] && [ "$format" = csv ]; then
    rm -f "$work"/keyed-big.db*
    sqlite3 "$work/keyed-big.db" "CREATE TABLE events(event_id TEXT PRIMARY KEY, event_name TEXT, \
        external_customer_id TEXT, timestamp TEXT, source TEXT, \"properties.tokens\" TEXT, \
        \"properties.model\" TEXT, \"properties.region\" TEXT)"
    sync
    budget=${KEYED_BUDGET:-0}
    started=$(date +%s)
    total=0
    for i in 0 1 2 3 4 5 6 7 8 9; do
        if [ "$budget" -gt 0 ] && [ $(($(date +%s) - started)) -ge "$budget" ]; then
            echo "sqlite3 .import, event_id key: stopped after $i passes (KEYED_BUDGET=$budget s)"
            break
        fi
        /usr/bin/time -f "%e %M" -o "$work/time.txt" sqlite3 "$work/keyed-big.db" ".import --csv '|bash $work/pass-csv.sh $i' events"
        read -r seconds peak <"$work/time.txt"
        total=$(awk -v t="$total" -v s="$seconds" 'BEGIN { print t + s }')
        awk -v i="$i" -v s="$seconds" -v m="$peak" -v rows="$base" -v t="$total" \
            'BEGIN { printf "sqlite3 .import, event_id key, pass %d: %.1f s, %.0f rows/s, %.1f MB peak RSS (%.1f s in all)\n", i, s, rows / s, m / 1024, t }'
    done
    echo "its rows: $(sqlite3 -readonly "$work/keyed-big.db" "SELECT count(*) FROM events"), its store: $(du -b "$work/keyed-big.db" | cut -f1) bytes"
fi
