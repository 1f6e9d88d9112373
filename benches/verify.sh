#!/usr/bin/env bash
# `verify` benchmark, rerunnable: generates ROWS events (default 1,000,000) with
# ../shared/tools/gen_events.py, starts the FlexPrice stand-in (examples/stand_in.rs, release
# build, keeping every event so that GET /v1/events can answer) on 127.0.0.1, delivers the file
# once, then reads it back with `verify` at each concurrency (default 4). Prints wall time,
# events/s, CPU time (user + system: on a machine shared with other work, steadier than the
# wall time) and peak RSS (from /usr/bin/time) of each verify.
#
# Usage: benches/verify.sh [ROWS] [CONCURRENCY...]
# Needs: python3, curl, /usr/bin/time (Debian: time).
set -euo pipefail

rows=${1:-1000000}
shift || true
levels=${*:-4}
root=$(cd "$(dirname "$0")/.." && pwd)
gen=${GEN_EVENTS:-$root/../shared/tools/gen_events.py}
work=${BENCH_DIR:-$root/target/bench}
port=${STAND_IN_PORT:-18098}
mkdir -p "$work"

input="$work/events-$rows.csv"
if [ ! -f "$input" ]; then
    echo "generating $rows events into $input" >&2
    python3 "$gen" --rows "$rows" -o "$input"
fi
[ -n "${NO_BUILD:-}" ] || cargo build --release --quiet --manifest-path "$root/Cargo.toml" --bin flexprice-import --example stand_in
bin="$root/target/release/flexprice-import"

"$root/target/release/examples/stand_in" "127.0.0.1:$port" >"$work/stand_in_verify.txt" &
server=$!
trap 'kill $server 2>/dev/null || true' EXIT
for _ in $(seq 50); do
    [ -s "$work/stand_in_verify.txt" ] && break
    sleep 0.1
done
read -r url key <"$work/stand_in_verify.txt"
export FLEXPRICE_API_KEY=$key

rm -rf "$work"/verify.db*
task=$("$bin" --db "$work/verify.db" --quiet run "$input" --target flexprice --api-url "$url")
echo "$rows rows delivered as $task; stand-in: $(curl -s "$url/_stand_in/stats")"
for c in $levels; do
    status=0
    /usr/bin/time -f "%e %M %U %S" -o "$work/time.txt" \
        "$bin" --db "$work/verify.db" --quiet verify "$task" --json --concurrency "$c" \
        >"$work/verify.json" 2>"$work/stderr.txt" || status=$?
    [ "$status" -eq 0 ] || { echo "concurrency $c exited $status:" >&2; tail -5 "$work/stderr.txt" >&2; }
    awk -v c="$c" -v rows="$rows" -v out="$(cat "$work/verify.json")" \
        '{ printf "verify concurrency %-3s %8.2f s %10.0f events/s %8.2f s CPU %8.1f MB peak RSS   %s\n", c, $1, rows / $1, $3 + $4, $2 / 1024, out }' \
        "$work/time.txt"
done
