#!/usr/bin/env bash
# Benchmark of the sandbox's events endpoint with wrk (Debian package `wrk`).
#
# Builds the release binary, starts `gcx sandbox --port 0 --ready-file`, gets a token,
# then runs wrk for DURATION at batch size 1 and 500 (async=true by default), RUNS times
# each, and prints requests/s and events/s per run and their medians.
#
# Every request carries fresh sequenceIds (benches/events_wrk.lua builds each body), so
# no event is a duplicate: each is registered, indexed and checked against its agent's
# state like in a real run. wrk and the sandbox share the machine.
#
# Usage: benches/events_wrk.sh            (env: DURATION=10s RUNS=3 ASYNC=true
#                                          THREADS=2 CONNS_1=16 CONNS_500=8 BATCHES="1 500")
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-10s}
RUNS=${RUNS:-3}
ASYNC=${ASYNC:-true}
THREADS=${THREADS:-2}
CONNS_1=${CONNS_1:-16}
CONNS_500=${CONNS_500:-8}
BATCHES=${BATCHES:-"1 500"}

if ! command -v wrk >/dev/null; then
  echo "wrk not found; installing the Debian package" >&2
  apt-get update -qq && apt-get install -y -qq wrk >/dev/null
fi

cargo build --release -p gcx --bin gcx >&2

work=$(mktemp -d)
sandbox_pid=
cleanup() {
  if [[ -n "$sandbox_pid" ]] && kill -0 "$sandbox_pid" 2>/dev/null; then
    kill -TERM "$sandbox_pid"; wait "$sandbox_pid" || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

target/release/gcx sandbox --port 0 --ready-file "$work/ready.json" >"$work/stdout" 2>"$work/stderr" &
sandbox_pid=$!
for _ in $(seq 1 100); do [[ -s "$work/ready.json" ]] && break; sleep 0.1; done
base=$(sed -n 's/.*"base_url": *"\([^"]*\)".*/\1/p' "$work/ready.json")
[[ -n "$base" ]] || { echo "sandbox did not start: $(cat "$work/stderr")" >&2; exit 1; }

token=$(curl -sf -u gcx-demo:gcx-demo-secret -d grant_type=client_credentials "$base/oauth/token" \
  | sed -n 's/.*"access_token":"\([^"]*\)".*/\1/p')
[[ -n "$token" ]] || { echo "no token" >&2; exit 1; }

median() { sort -g | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }

echo "sandbox $base; wrk -t$THREADS -d$DURATION; async=$ASYNC; $(nproc) cores"
run=0
for batch in $BATCHES; do
  conns=$CONNS_1; [[ "$batch" -gt 1 ]] && conns=$CONNS_500
  rates=()
  for i in $(seq 1 "$RUNS"); do
    run=$((run + 1))
    out=$(TOKEN=$token BATCH=$batch ASYNC=$ASYNC RUN=$run \
      wrk -t"$THREADS" -c"$conns" -d"$DURATION" -s benches/events_wrk.lua "$base")
    rps=$(awk '/^Requests\/sec:/ {print $2}' <<<"$out")
    non2xx=$(awk '/Non-2xx/ {print $NF}' <<<"$out")
    p50=$(awk '/Latency/ {print $2; exit}' <<<"$out")
    echo "batch $batch run $i: $rps requests/s, $(awk -v r="$rps" -v b="$batch" 'BEGIN {printf "%.0f", r*b}') events/s, mean latency $p50, non-2xx ${non2xx:-0}"
    rates+=("$rps")
  done
  med=$(printf '%s\n' "${rates[@]}" | median)
  echo "batch $batch MEDIAN: $med requests/s, $(awk -v r="$med" -v b="$batch" 'BEGIN {printf "%.0f", r*b}') events/s (-c$conns)"
done
echo "sandbox stats: $(curl -sf "$base/sandbox/stats" | sed -n 's/.*"events":\({[^}]*}\).*/\1/p')"
