#!/usr/bin/env bash
# Load benchmark of token exchange (issue 14): `POST /api/oauth/token` with the Pulumi CLI's form body, trading a
# CI job's OIDC token for an organization token, against a release server on loopback, beside /healthz in the same
# run. Usage:
#   bench/oidc-exchange-load.sh [seconds] [connections] [sqlite|postgres]
# The CI platform is played by a static discovery + JWKS server on 127.0.0.1 (python3 -m http.server; the server
# runs with --egress-allow 127.0.0.1/32), so keys are fetched once over HTTP and then served from the key cache
# (warm). Every exchange verifies the RS256 token, matches the policy, mints and stores a new token and audits it.
# Runs: /healthz, exchange at the given connections, exchange at 1 connection (latency), /healthz again.
# Needs: wrk, curl, python3 with PyJWT and cryptography (PYTHON=…, default the CI venv's), psql for postgres.
set -euo pipefail
cd "$(dirname "$0")/.."
secs="${1:-10}"
conns="${2:-64}"
store="${3:-sqlite}"
threads=2
[ "$conns" -ge 2 ] || threads=1
case "$store" in sqlite | postgres) ;; *) echo "store must be sqlite or postgres" >&2; exit 2 ;; esac
command -v wrk >/dev/null || { echo "wrk is missing: apt-get install -y wrk" >&2; exit 2; }
py="${PYTHON:-$HOME/.cache/sesame-ci-venv/bin/python}"
"$py" -c 'import jwt, cryptography' || { echo "$py lacks PyJWT/cryptography (PYTHON=…)" >&2; exit 2; }
cargo build --release --locked
bin="${CARGO_TARGET_DIR:-target}/release/sesame"

work="$(mktemp -d)"
pid=""
kpid=""
db=""
pg="postgres://postgres@127.0.0.1:5432"
cleanup() {
  for p in "$pid" "$kpid"; do
    if [ -n "$p" ]; then kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; fi
  done
  if [ -n "$db" ]; then psql -q "$pg/postgres" -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" || true; fi
  rm -rf "$work"
}
trap cleanup EXIT
freeport() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
port="$(freeport)"
kport="$(freeport)"
issuer="http://127.0.0.1:$kport"

# The CI platform: a key, its JWKS and discovery as static files, and one token valid for an hour.
mkdir -p "$work/keys/.well-known"
"$py" - "$work" "$issuer" <<'PY'
import json, sys, time, jwt
from cryptography.hazmat.primitives.asymmetric import rsa
work, issuer = sys.argv[1], sys.argv[2]
key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))
jwk.update({"kid": "bench-1", "alg": "RS256", "use": "sig"})
json.dump({"keys": [jwk]}, open(f"{work}/keys/jwks", "w"))
json.dump({"issuer": issuer, "jwks_uri": f"{issuer}/jwks"}, open(f"{work}/keys/.well-known/openid-configuration", "w"))
now = int(time.time())
claims = {"iss": issuer, "aud": "urn:pulumi:org:bench", "sub": "repo:bench/app:ref:refs/heads/main",
          "iat": now, "nbf": now, "exp": now + 3600, "repository": "bench/app"}
open(f"{work}/subject", "w").write(jwt.encode(claims, key, algorithm="RS256", headers={"kid": "bench-1"}))
PY
(cd "$work/keys" && exec python3 -m http.server "$kport" --bind 127.0.0.1 >/dev/null 2>"$work/keys.log") &
kpid=$!

args=(serve --listen "127.0.0.1:$port" --data-dir "$work/data" --org bench --egress-allow 127.0.0.1/32)
if [ "$store" = postgres ]; then
  db="sesame_bench_exchange_$$"
  psql -q "$pg/postgres" -c "CREATE DATABASE $db"
  args+=(--database-url "$pg/$db")
fi
SESAME_LOG=warn "$bin" "${args[@]}" >"$work/serve.log" 2>&1 &
pid=$!
for _ in $(seq 1 300); do curl -fs "http://127.0.0.1:$port/readyz" >/dev/null 2>&1 && break; sleep 0.1; done
curl -fs "http://127.0.0.1:$port/readyz" >/dev/null || { cat "$work/serve.log" >&2; exit 1; }
token="$(cat "$work/data/admin.token")"
base="http://127.0.0.1:$port"
call() {
  local method="$1" url="$2" status
  shift 2
  status="$(curl -sS -o "$work/answer" -w '%{http_code}' -X "$method" -H "Authorization: token $token" "$@" "$url")"
  if [ "${status:0:1}" != 2 ]; then
    echo "FAILED: $method $url -> $status" >&2; cat "$work/answer" >&2; echo >&2; exit 1
  fi
  cat "$work/answer"
}
jget() { python3 -c "import json,sys; print(json.load(sys.stdin)$1)"; }
iid="$(call POST "$base/api/orgs/bench/oidc/issuers" -H 'Content-Type: application/json' \
  -d "{\"name\": \"ci\", \"url\": \"$issuer\"}" | jget '["id"]')"
polid="$(call GET "$base/api/orgs/bench/auth/policies/oidcissuers/$iid" | jget '["id"]')"
call PATCH "$base/api/orgs/bench/auth/policies/$polid" -H 'Content-Type: application/json' -d '{"policies": [
  {"decision": "allow", "tokenType": "organization", "authorizedPermissions": ["editor"],
   "rules": {"sub": "repo:bench/*:ref:refs/heads/main"}}]}' >/dev/null
python3 - "$work" <<'PY'
import sys, urllib.parse
work = sys.argv[1]
fields = [("audience", "urn:pulumi:org:bench"),
          ("grant_type", "urn:ietf:params:oauth:grant-type:token-exchange"),
          ("subject_token_type", "urn:ietf:params:oauth:token-type:id_token"),
          ("requested_token_type", "urn:pulumi:token-type:access_token:organization"),
          ("subject_token", open(f"{work}/subject").read()), ("scope", ""), ("expiration", "7200")]
open(f"{work}/form", "w").write(urllib.parse.urlencode(fields))
PY
# One exchange first: it fetches the keys (the cache is warm from here on) and shows the answer's shape.
status="$(curl -sS -o "$work/answer" -w '%{http_code}' -X POST -H 'Content-Type: application/x-www-form-urlencoded' \
  --data-binary @"$work/form" "$base/api/oauth/token")"
[ "$status" = 200 ] || { echo "first exchange: $status $(cat "$work/answer")" >&2; exit 1; }
python3 -c "import json,sys; a=json.load(open(sys.argv[1])); print('answer fields:', sorted(a))" "$work/answer"

run() {
  local name="$1" c="$2" t="$threads"
  shift 2
  [ "$c" -ge 2 ] || t=1
  echo "== $name"
  wrk -t"$t" -c"$c" -d"${secs}s" --latency "$@" | tee "$work/wrk.out" \
    | grep -E "Requests/sec|Latency  |50%|99%|Non-2xx|Socket errors|^errors|^RESULT"
  grep -E "Requests/sec" "$work/wrk.out" | awk '{print $2}' >"$work/rps"
}
echo "store: $store; wrk: $threads threads x $conns connections, ${secs} s per run"
run "/healthz (ceiling)" "$conns" "$base/healthz"
h1="$(cat "$work/rps")"
BODY_FILE="$work/form" run "token exchange (Pulumi CLI form, warm key cache)" "$conns" -s bench/wrk/exchange.lua "$base/api/oauth/token"
x="$(cat "$work/rps")"
BODY_FILE="$work/form" run "token exchange at 1 connection (latency)" 1 -s bench/wrk/exchange.lua "$base/api/oauth/token"
x1="$(cat "$work/rps")"
run "/healthz (ceiling, again)" "$conns" "$base/healthz"
h2="$(cat "$work/rps")"
python3 - "$h1" "$h2" "$x" "$x1" <<'PY'
import sys
h1, h2, x, x1 = map(float, sys.argv[1:])
h = (h1 + h2) / 2
print(f"SUMMARY healthz {h:.0f} req/s (runs {h1:.0f}, {h2:.0f}); exchange {x:.0f} req/s = {100 * x / h:.1f}% of "
      f"healthz; exchange at 1 connection {x1:.0f} req/s")
PY
echo "JWKS fetches during the whole script: $(grep -c 'GET /jwks' "$work/keys.log" || true) (1 expected: the key cache is warm)"
