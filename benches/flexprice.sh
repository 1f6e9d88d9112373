#!/usr/bin/env bash
# Delivery benchmark of the flexprice target, rerunnable: generates ROWS events (default
# 1,000,000) with ../shared/tools/gen_events.py, starts the FlexPrice stand-in server
# (examples/stand_in.rs, release build, counting what it receives) on 127.0.0.1, and sends the
# same CSV file to it at each concurrency (default 1 4 16), each time from a fresh store.
# Prints wall time, events/s and peak RSS (from /usr/bin/time) side by side, checks that
# the server received every valid event, and shows how much CPU time the stand-in spent on
# them: events per CPU-second of the stand-in is what it could take on one core, so a rate
# well under it is the tool's own.
#
# Usage: benches/flexprice.sh [ROWS] [CONCURRENCY...]
# Needs: python3, curl, /usr/bin/time (Debian: time).
set -euo pipefail

rows=${1:-1000000}
shift || true
levels=${*:-1 4 16}
root=$(cd "$(dirname "$0")/.." && pwd)
gen=${GEN_EVENTS:-$root/../shared/tools/gen_events.py}
work=${BENCH_DIR:-$root/target/bench}
port=${STAND_IN_PORT:-18099}
mkdir -p "$work"

input="$work/events-$rows.csv"
if [ ! -f "$input" ]; then
    echo "generating $rows events into $input" >&2
    python3 "$gen" --rows "$rows" -o "$input"
fi
cargo build --release --quiet --manifest-path "$root/Cargo.toml" --bin flexprice-import --example stand_in
bin="$root/target/release/flexprice-import"

"$root/target/release/examples/stand_in" "127.0.0.1:$port" --count-only >"$work/stand_in.txt" &
server=$!
trap 'kill $server 2>/dev/null || true' EXIT
for _ in $(seq 50); do
    [ -s "$work/stand_in.txt" ] && break
    sleep 0.1
done
read -r url key <"$work/stand_in.txt"
received() { curl -s "$url/_stand_in/stats" | sed 's/.*"events_received":\([0-9]*\).*/\1/'; }
# The stand-in's user + system CPU time so far, in clock ticks (/proc/PID/stat fields 14, 15).
server_ticks() { awk '{ print $14 + $15 }' "/proc/$server/stat"; }
hz=$(getconf CLK_TCK)

echo "$rows rows, $(stat -L -c %s "$input") bytes of csv, $(nproc) cores, stand-in at $url"
for c in $levels; do
    rm -rf "$work"/remote.db*
    before=$(received)
    ticks=$(server_ticks)
    status=0
    FLEXPRICE_API_KEY=$key /usr/bin/time -f "%e %M" -o "$work/time.txt" \
        "$bin" --db "$work/remote.db" --quiet run "$input" --target flexprice --api-url "$url" \
        --concurrency "$c" >/dev/null 2>"$work/stderr.txt" || status=$?
    # Exit 3: the generated file has no bad rows by default, so anything but 0 is shown.
    if [ "$status" -ne 0 ]; then
        echo "concurrency $c exited $status:" >&2
        tail -5 "$work/stderr.txt" >&2
    fi
    got=$(($(received) - before))
    server_cpu=$(awk -v t="$(($(server_ticks) - ticks))" -v hz="$hz" 'BEGIN { printf "%.2f", t / hz }')
    awk -v c="$c" -v rows="$rows" -v got="$got" -v cpu="$server_cpu" \
        '{ printf "concurrency %-3s %8.2f s %10.0f events/s %8.1f MB peak RSS   server received %d, its CPU %s s (%.0f events per CPU-second)\n", c, $1, rows / $1, $2 / 1024, got, cpu, (cpu > 0 ? got / cpu : 0) }' \
        "$work/time.txt"
done
