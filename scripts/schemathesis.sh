#!/usr/bin/env bash
# Runs schemathesis (PyPI) against `gcx serve` from its own OpenAPI document with every
# check: no 5xx, answers as documented (status, content type, headers, body schema),
# every request the document admits accepted and every one it refuses refused. Starts a
# sandbox and a `gcx serve` in front of it on free ports, installs schemathesis into a
# venv under target/ on first use, and stops both at the end.
#
#   scripts/schemathesis.sh            # default budget: 120 s of generated requests
#   ST_MAX_TIME=300 scripts/schemathesis.sh
#   scripts/schemathesis.sh install    # only make the venv (exit 0 when it is ready)
#
# `cargo test` runs it too (crates/gcx/tests/schemathesis.rs), so CI does.
#
# One worker: with two, the coverage phase sometimes stops with an internal error
# (CPython 3.11's `ast` is not thread-safe, and hypothesis parses its own lambdas while
# describing them: "AST constructor recursion depth mismatch").
#
# scripts/schemathesis.toml adds 413 to the statuses that refuse a request;
# scripts/schemathesis_hooks.py sends whole numbers as integers (the protocol refuses
# `2.0`, which JSON Schema counts an integer).
set -euo pipefail
cd "$(dirname "$0")/.."

ST_VERSION="${ST_VERSION:-4.32.5}"
ST_MAX_TIME="${ST_MAX_TIME:-120}"
VENV=target/schemathesis-venv
KEY="schemathesis-key-0123456789abcdef"

if [ ! -x "$VENV/bin/schemathesis" ] || ! "$VENV/bin/schemathesis" --version | grep -q "$ST_VERSION"; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet "schemathesis==$ST_VERSION"
fi
if [ "${1:-}" = install ]; then
  exit 0
fi

# The binary under test: $GCX when given (the `schemathesis` integration test passes its
# own), else a fresh debug build.
if [ -z "${GCX:-}" ]; then
  cargo build --quiet -p gcx --bin gcx
  GCX=target/debug/gcx
fi
WORK="$(mktemp -d)"
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

wait_for_file() {
  for _ in $(seq 1 100); do [ -s "$1" ] && return 0; sleep 0.1; done
  echo "schemathesis.sh: $1 did not appear (see $WORK/*.log)" >&2
  cat "$WORK"/*.log >&2 || true
  exit 1
}

"$GCX" sandbox --port 0 --ready-file "$WORK/sandbox.json" >"$WORK/sandbox.log" 2>&1 &
PIDS+=($!)
wait_for_file "$WORK/sandbox.json"
BASE_URL="$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["base_url"])' "$WORK/sandbox.json")"

cat >"$WORK/gcx.toml" <<TOML
[genesys]
base_url = "$BASE_URL"
client_id = "gcx-demo"
client_secret = "gcx-demo-secret"
[crm]
url = "$BASE_URL/crm/webhook"
[store]
data_dir = "$WORK/data"
[serve]
bind = "127.0.0.1:0"
api_keys = ["$KEY"]
rate_limit_per_key = 0
# schemathesis sends many requests without a key on purpose (ignored_auth); each must
# be answered 401, not throttled to 429.
auth_failures_per_minute = 0
TOML

"$GCX" serve --config "$WORK/gcx.toml" --ready-file "$WORK/serve.json" >"$WORK/serve.log" 2>&1 &
PIDS+=($!)
wait_for_file "$WORK/serve.json"
URL="$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["url"])' "$WORK/serve.json")"

echo "schemathesis $ST_VERSION against $URL (budget ${ST_MAX_TIME}s)"
SCHEMATHESIS_HOOKS="$PWD/scripts/schemathesis_hooks.py" \
  "$VENV/bin/schemathesis" --config-file scripts/schemathesis.toml run "$URL/openapi.json" \
  --header "Authorization: Bearer $KEY" \
  --checks all \
  --phases "${ST_PHASES:-examples,coverage,fuzzing,stateful}" \
  --max-time "$ST_MAX_TIME" \
  --workers 1 \
  --suppress-health-check all
