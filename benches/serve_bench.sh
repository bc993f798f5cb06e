#!/usr/bin/env bash
# `gcx serve` throughput and memory (issue 5): accepted triggers/s through POST
# /v1/triggers at batch 1 and batch 100 with the full pipeline behind it, RSS idle and
# under load; medians of 3 runs. Extra arguments go to the example (see its header).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet -p gcx --bin gcx --example serve_bench
GCX_BIN=target/release/gcx target/release/examples/serve_bench "$@"
