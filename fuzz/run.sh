#!/usr/bin/env bash
# Runs every fuzz target (or those named) for SECONDS each, one after another, and prints per
# target the seconds it ran, the inputs it executed (libFuzzer's final stats) and the crashes
# it found (inputs saved under fuzz/artifacts/TARGET/ by this run).
#
#   fuzz/run.sh 600                      # every target, 10 minutes each
#   fuzz/run.sh 60 fuzz_csv fuzz_json    # two targets, a minute each
#   FUZZ_SANITIZER=none fuzz/run.sh 600  # without AddressSanitizer
#
# cargo-fuzz (`cargo install cargo-fuzz`) builds with nightly flags; RUSTC_BOOTSTRAP=1 lets the
# stable toolchain take them. A run stops at its first crash; the corpus grows in
# fuzz/corpus/TARGET (kept out of git) and starts from the seeds in fuzz/seeds/TARGET.
set -euo pipefail

seconds=${1:?usage: fuzz/run.sh SECONDS [TARGET...]}
shift
cd "$(dirname "$0")"
export RUSTC_BOOTSTRAP=1
sanitizer=${FUZZ_SANITIZER:-address}
if [ $# -gt 0 ]; then
    targets=("$@")
else
    mapfile -t targets < <(cargo fuzz list)
fi

cargo fuzz build -s "$sanitizer" 2>&1 | grep -v '^ *\(Compiling\|Finished\|Blocking\)' || true

mkdir -p logs
printf '%-16s %8s %12s %8s\n' target seconds executions crashes
for target in "${targets[@]}"; do
    mkdir -p "corpus/$target" "artifacts/$target"
    log="logs/$target.log"
    # Crash inputs are named by their hash: one found again is rewritten, and still counts.
    marker=$(mktemp)
    start=$(date +%s)
    dict=()
    [ -f "dict/$target.dict" ] && dict=("-dict=dict/$target.dict")
    set +e
    # -timeout: an input that takes 10 s is a hang, and counts as a crash.
    cargo fuzz run -s "$sanitizer" "$target" "corpus/$target" "seeds/$target" -- \
        -max_total_time="$seconds" -timeout=10 -print_final_stats=1 "${dict[@]}" >"$log" 2>&1
    status=$?
    set -e
    elapsed=$(( $(date +%s) - start ))
    # libFuzzer's own count of the seconds it fuzzed, when it got to say it (-a: the log can
    # hold the bytes of an input, and grep would only say "binary file matches").
    fuzzed=$(grep -ao 'Done [0-9]* runs in [0-9]* second' "$log" | grep -o 'in [0-9]*' | tr -dc '0-9' || true)
    elapsed=${fuzzed:-$elapsed}
    executions=$(grep -ao 'stat::number_of_executed_units: [0-9]*' "$log" | tail -1 | grep -o '[0-9]*$' || true)
    if [ -z "$executions" ]; then
        # A crash ends the run before the final stats: the last status line counts.
        executions=$(grep -ao '^#[0-9]*' "$log" | tail -1 | tr -d '#' || true)
    fi
    # libFuzzer also saves the slowest input it saw (slow-unit-*) when one took over a second:
    # not a crash (one that took -timeout is saved as timeout-*, and counts).
    crashes=$(find "artifacts/$target" -type f -newer "$marker" ! -name 'slow-unit-*' | wc -l)
    rm -f "$marker"
    if [ "$status" -ne 0 ] && [ "$crashes" -eq 0 ]; then
        echo "$target: cargo fuzz exited with $status without a crash input; see fuzz/$log" >&2
        crashes=1
    fi
    printf '%-16s %8s %12s %8s\n' "$target" "$elapsed" "${executions:-?}" "$crashes"
done
