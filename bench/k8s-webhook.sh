#!/usr/bin/env bash
# Load benchmark of the injector: `sesame k8s webhook` on loopback over TLS, AdmissionReview fixture bodies posted by
# wrk to /mutate (a pod that is injected, and the same pod already injected, which is answered without a patch),
# beside /healthz in the same run (the ceiling). Prints decisions per second and the latency distribution (p99).
# Then times `sesame agent --once` from start to files written against a local server (SQLite), 20 runs.
# Usage: bench/k8s-webhook.sh [seconds] [connections]
# Needs: wrk (Debian package), openssl, python3, curl. Builds target/release/sesame if missing; SESAME_BIN=PATH runs
# another binary.
set -euo pipefail
cd "$(dirname "$0")/.."
secs="${1:-10}"
conns="${2:-32}"
threads=2
bin="${SESAME_BIN:-target/release/sesame}"
[ -x "$bin" ] || cargo build --release --locked --bin sesame
work="$(mktemp -d)"
pids=()
trap 'for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done; rm -rf "$work"' EXIT

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 1 -subj /CN=localhost \
  -addext subjectAltName=DNS:localhost,IP:127.0.0.1 -keyout "$work/tls.key" -out "$work/tls.crt" 2>/dev/null
port=18443
SESAME_LOG=warn "$bin" k8s webhook --listen 127.0.0.1:$port --tls-cert "$work/tls.crt" --tls-key "$work/tls.key" \
  --server-url https://sesame.example >"$work/webhook.log" 2>&1 &
pids+=($!)
base="https://127.0.0.1:$port"
for _ in $(seq 1 100); do curl -fsk "$base/healthz" >/dev/null 2>&1 && break; sleep 0.1; done

fixture=tests/fixtures/k8s/pod-review.json
# The same pod after injection: re-invocation, answered without a patch.
python3 - "$fixture" "$work/injected.json" <<'PY'
import json, sys
review = json.load(open(sys.argv[1]))
review["request"]["object"]["metadata"]["annotations"]["sesame.dev/inject-status"] = "injected"
json.dump(review, open(sys.argv[2], "w"))
PY
curl -fsk -H 'Content-Type: application/json' --data-binary @"$fixture" "$base/mutate" | grep -q '"patchType":"JSONPatch"'

run() {
  local name="$1" url="$2" body="${3:-}"
  echo "== $name"
  if [ -n "$body" ]; then
    SESAME_TOKEN=unused BODY_FILE="$body" wrk -t$threads -c"$conns" -d"${secs}s" --latency -s bench/wrk/post.lua "$url" \
      | grep -E "Requests/sec|Latency|99%|errors|Non-2xx"
  else
    wrk -t$threads -c"$conns" -d"${secs}s" --latency "$url" | grep -E "Requests/sec|Latency|99%|Non-2xx"
  fi
}
run "/healthz (ceiling)" "$base/healthz"
run "mutate: inject a pod" "$base/mutate" "$fixture"
run "mutate: re-invocation (no patch)" "$base/mutate" "$work/injected.json"
run "/healthz (ceiling, again)" "$base/healthz"

# The agent: start to files written, against a local server, with a Sesame token file.
sport=18080
SESAME_LOG=warn "$bin" serve --listen 127.0.0.1:$sport --data-dir "$work/data" --org bench >"$work/serve.log" 2>&1 &
pids+=($!)
sbase="http://127.0.0.1:$sport"
for _ in $(seq 1 100); do curl -fs "$sbase/readyz" >/dev/null 2>&1 && break; sleep 0.1; done
token="$(cat "$work/data/admin.token")"
curl -fs -H "Authorization: token $token" -H 'Content-Type: application/json' \
  -d '{"project":"app","name":"prod"}' "$sbase/api/esc/environments/bench" >/dev/null
printf 'values:\n  environmentVariables:\n    DB_USER: app\n    DB_PASS:\n      fn::secret: s3cret\n  files:\n    CONFIG: "{}"\n' \
  | curl -fs -X PATCH -H "Authorization: token $token" -H 'Content-Type: application/x-yaml' --data-binary @- \
    "$sbase/api/esc/environments/bench/app/prod" >/dev/null
echo "$token" >"$work/token"
echo "== sesame agent --once, start to files written (ms, 20 runs)"
for i in $(seq 1 20); do
  start=$(date +%s%N)
  "$bin" agent --url "$sbase" --env bench/app/prod --out "$work/out$i" --once --token-file "$work/token" 2>/dev/null
  end=$(date +%s%N)
  echo $(( (end - start) / 1000000 ))
done | sort -n | awk '{a[NR]=$1} END {printf "min %d  median %d  max %d\n", a[1], a[int((NR+1)/2)], a[NR]}'
