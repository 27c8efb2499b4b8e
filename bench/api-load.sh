#!/usr/bin/env bash
# Load benchmark of the stack secrets API against a running release server on loopback, beside /healthz in the
# same run (the ceiling). Usage: bench/api-load.sh [seconds] [connections]
# Needs: wrk (Debian package), python3. Builds target/release/sesame if missing; SESAME_BIN=PATH runs another binary
# (e.g. an older build, to compare two versions back to back).
set -euo pipefail
cd "$(dirname "$0")/.."
secs="${1:-10}"
conns="${2:-32}"
threads=2
bin="${SESAME_BIN:-target/release/sesame}"
[ -x "$bin" ] || cargo build --release --locked --bin sesame
work="$(mktemp -d)"
trap 'kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; rm -rf "$work"' EXIT
port=18080
SESAME_LOG=warn "$bin" serve --listen 127.0.0.1:$port --data-dir "$work/data" --org bench >"$work/serve.log" 2>&1 &
pid=$!
for _ in $(seq 1 100); do curl -fs "http://127.0.0.1:$port/readyz" >/dev/null 2>&1 && break; sleep 0.1; done
export SESAME_TOKEN="$(cat "$work/data/admin.token")"
base="http://127.0.0.1:$port"
stack="$base/api/stacks/bench/app/prod"

python3 - "$work" <<'PY'
import base64, json, os, sys
work = sys.argv[1]
one_kib = base64.b64encode(os.urandom(1024)).decode()
json.dump({"plaintext": one_kib}, open(f"{work}/encrypt.json", "w"))
json.dump({"plaintexts": [base64.b64encode(os.urandom(64)).decode() for _ in range(1000)]}, open(f"{work}/batch.json", "w"))
PY
# One real ciphertext for the decrypt run (this also makes the stack's DEK and warms the cache).
curl -fs -H "Authorization: token $SESAME_TOKEN" -d @"$work/encrypt.json" "$stack/encrypt" \
  | python3 -c 'import json,sys; print(json.dumps({"ciphertext": json.load(sys.stdin)["ciphertext"]}))' >"$work/decrypt.json"

metric() { curl -fs "$base/metrics" | awk -v m="$1" '$1==m {print $2}'; }
unwraps_before="$(metric sesame_kms_unwrap_total)"

run() {
  local name="$1" url="$2" body="${3:-}"
  echo "== $name"
  if [ -n "$body" ]; then
    BODY_FILE="$body" wrk -t$threads -c"$conns" -d"${secs}s" --latency -s bench/wrk/post.lua "$url" | grep -E "Requests/sec|Latency|99%|errors|Non-2xx"
  else
    wrk -t$threads -c"$conns" -d"${secs}s" --latency "$url" | grep -E "Requests/sec|Latency|99%|Non-2xx"
  fi
}
run "/healthz (ceiling)" "$base/healthz"
run "encrypt 1 KiB" "$stack/encrypt" "$work/encrypt.json"
run "decrypt 1 KiB" "$stack/decrypt" "$work/decrypt.json"
run "batch-encrypt 1000 x 64 B" "$stack/batch-encrypt" "$work/batch.json"
run "/healthz (ceiling, again)" "$base/healthz"
unwraps_after="$(metric sesame_kms_unwrap_total)"
echo "== KMS unwrap calls during the load runs: $((unwraps_after - unwraps_before))"
lines="$(curl -fs -H "Authorization: token $SESAME_TOKEN" "$base/api/sesame/v1/orgs/bench/audit" | wc -l)"
echo "== lines in the org's audit export after the runs (records, checkpoints, head): $lines"
