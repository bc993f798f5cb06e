#!/usr/bin/env bash
# Fuzz `gcx serve` from its own OpenAPI document with schemathesis (PyPI) and fail on any
# 5xx. Starts a sandbox and a `gcx serve` in front of it on free ports, installs
# schemathesis into a venv under target/ on first use, and stops both at the end.
#
#   scripts/schemathesis.sh            # default budget: 60 s of fuzzing
#   ST_MAX_TIME=300 scripts/schemathesis.sh
#   scripts/schemathesis.sh install    # only make the venv (exit 0 when it is ready)
#
# `cargo test` runs it too (crates/gcx/tests/schemathesis.rs, 30 s budget), so CI does.
#
# The `coverage` phase is left out by default: with schemathesis 4.32.5 on Python 3.11 it
# stops with an internal error (hypothesis cannot describe one of its own lambdas) before
# sending anything; ST_PHASES=examples,coverage,fuzzing,stateful turns it back on.
set -euo pipefail
cd "$(dirname "$0")/.."

ST_VERSION="${ST_VERSION:-4.32.5}"
ST_MAX_TIME="${ST_MAX_TIME:-60}"
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
TOML

"$GCX" serve --config "$WORK/gcx.toml" --ready-file "$WORK/serve.json" >"$WORK/serve.log" 2>&1 &
PIDS+=($!)
wait_for_file "$WORK/serve.json"
URL="$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["url"])' "$WORK/serve.json")"

echo "schemathesis $ST_VERSION against $URL (budget ${ST_MAX_TIME}s)"
"$VENV/bin/schemathesis" run "$URL/openapi.json" \
  --header "Authorization: Bearer $KEY" \
  --checks not_a_server_error \
  --phases "${ST_PHASES:-examples,fuzzing,stateful}" \
  --max-time "$ST_MAX_TIME" \
  --workers 2 \
  --suppress-health-check all
