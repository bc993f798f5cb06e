#!/usr/bin/env bash
# Runs each fuzz target of fuzz/ for a set number of executions, one target at a time,
# and prints per target: executions, seconds, exec/s, corpus size after the run, crashes.
#
#   scripts/fuzz.sh [RUNS] [TARGET...]     RUNS defaults to 1000000; no TARGET: every one
#
# Needs the nightly toolchain and cargo-fuzz (`cargo install cargo-fuzz`). Each target
# starts from a fresh copy of its committed seed corpus (fuzz/corpus/<target>) under
# target/fuzz/corpus, so what a run grows never lands in the repository; crashing inputs
# go to target/fuzz/artifacts/<target>/. SANITIZER=address runs under ASan (slower; the
# default is none: the code under test is safe Rust, checked with debug assertions and
# overflow checks on). The exit code is 1 when any target crashed or failed to run.
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
runs="${1:-1000000}"
shift || true
sanitizer="${SANITIZER:-none}"
work="$root/target/fuzz"
build_dir="$work/build"
cd "$root/fuzz"

# Longest input per target: 64 KiB, more where the limit under test lies above it (a
# trigger or a frame over 64 KiB, a batch of 500 events).
max_len() {
    case "$1" in
        trigger_intake | assist_sandbox_frame | serve_triggers_body) echo 131072 ;;
        events_batch) echo 262144 ;;
        *) echo 65536 ;;
    esac
}

# Dictionary per target.
dict() {
    case "$1" in
        scenario_toml | config_toml | gc_profile) echo "$root/fuzz/dict/toml.dict" ;;
        webhook_signature) echo "" ;;
        *) echo "$root/fuzz/dict/json.dict" ;;
    esac
}

if [ "$#" -gt 0 ]; then
    targets=("$@")
else
    mapfile -t targets < <(cargo +nightly fuzz list)
fi

cargo +nightly fuzz build -a -s "$sanitizer" --target-dir "$build_dir"

printf '%-22s %12s %9s %9s %8s %8s\n' target executions seconds exec/s corpus crashes
failed=0
for t in "${targets[@]}"; do
    corpus="$work/corpus/$t"
    artifacts="$work/artifacts/$t"
    log="$work/logs/$t.log"
    rm -rf "$corpus" "$artifacts"
    mkdir -p "$corpus" "$artifacts" "$(dirname "$log")"
    cp -a "$root/fuzz/corpus/$t/." "$corpus/"
    d="$(dict "$t")"
    start=$(date +%s.%N)
    set +e
    cargo +nightly fuzz run -a -s "$sanitizer" --target-dir "$build_dir" "$t" "$corpus" -- \
        -runs="$runs" -max_len="$(max_len "$t")" -rss_limit_mb=2048 -timeout=10 \
        ${d:+-dict="$d"} -artifact_prefix="$artifacts/" -print_final_stats=1 \
        >"$log" 2>&1
    rc=$?
    set -e
    end=$(date +%s.%N)
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    execs="${execs:-0}"
    # libFuzzer's own time when it finished (whole seconds), else the wall time, which
    # includes cargo's check of the build.
    secs=$(sed -n 's/^Done [0-9]* runs in \([0-9]*\) second.*/\1/p' "$log" | tail -1)
    if [ -z "$secs" ] || [ "$secs" -eq 0 ]; then
        secs=$(echo "$end - $start" | bc)
    fi
    rate=$(echo "$execs / $secs" | bc)
    crashes=$(find "$artifacts" -type f \( -name 'crash-*' -o -name 'timeout-*' -o -name 'oom-*' -o -name 'leak-*' \) | wc -l)
    size=$(find "$corpus" -type f | wc -l)
    printf '%-22s %12s %9.1f %9s %8s %8s\n' "$t" "$execs" "$secs" "$rate" "$size" "$crashes"
    if [ "$rc" -ne 0 ] || [ "$crashes" -gt 0 ]; then
        failed=1
        echo "  $t: exit $rc; log $log; artifacts $artifacts" >&2
    fi
done
exit "$failed"
