#!/usr/bin/env bash
# Fuzzes the producer and admin APIs against their own OpenAPI document (schemathesis): every
# operation, with each API's token, on a fresh SQLite hub on a free loopback port. The document
# states every rule the server enforces (src/http/openapi.rs, `say_which`), so every check
# passes; a failure is a rule missing from the document or a server that breaks one.
# EXAMPLES per operation (default 50). Needs python3 with pip (schemathesis is installed when
# missing).
set -euo pipefail
cd "$(dirname "$0")/.."
examples="${1:-50}"
command -v schemathesis >/dev/null 2>&1 || python3 -m pip install -q schemathesis
cargo build -q
dir="$(mktemp -d)"
port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
HERALD_DATABASE_URL="sqlite://$dir/hub.db" HERALD_LISTEN="127.0.0.1:$port" \
  HERALD_PRODUCER_TOKEN=fuzz-producer HERALD_ADMIN_TOKEN=fuzz-admin \
  HERALD_ALLOW_PRIVATE_ADDRESSES=true HERALD_RATE_LIMIT=off RUST_LOG=warn \
  ./target/debug/herald serve >"$dir/hub.log" 2>&1 &
hub=$!
trap 'kill "$hub" 2>/dev/null; rm -rf "$dir"' EXIT
for _ in $(seq 1 100); do
  curl -fs "http://127.0.0.1:$port/health" >/dev/null 2>&1 && break
  sleep 0.1
done
status=0
for api in producer:fuzz-producer admin:fuzz-admin; do
  echo "== the ${api%%:*} API =="
  schemathesis run "http://127.0.0.1:$port/api/v1/openapi.json" \
    -H "Authorization: Bearer ${api#*:}" --include-tag "${api%%:*}" \
    --max-examples "$examples" || status=1
done
exit "$status"
