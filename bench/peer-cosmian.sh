#!/usr/bin/env bash
# The request path against a peer: Sesame beside Cosmian KMS 5.28.0 (a Rust KMS on actix-web, crates.io
# `cosmian_kms_server`, non-FIPS build), both on loopback, measured with wrk in one run, row after row:
#
#   peer GET /version          vs  Sesame GET /healthz                 (the bare request path)
#   peer JOSE / KMIP encrypt   vs  Sesame stack encrypt, 1 KiB          (AES-256-GCM under a key the server holds)
#   peer JOSE / KMIP decrypt   vs  Sesame stack decrypt, 1 KiB
#   probe GET /healthz, probe POST /echo 1 KiB   (bench/echo-probe: Sesame's HTTP stack with no work in the handler —
#                                                the ceiling of any 1 KiB JSON call, as a share of a bare GET)
#
# Usage: bench/peer-cosmian.sh [seconds] [connections] [sqlite|postgres]     (defaults: 10 32 sqlite)
# Env: ROUNDS [1] (repeat every row; each round in the same order), THREADS [2] (wrk threads),
#      SESAME_BIN (a prebuilt sesame; default: cargo build --release into $CARGO_TARGET_DIR or target/),
#      PEERS [~/.cache/sesame-peers] (where the peer is built and runs: outside the repository, never committed).
# The store applies to Sesame (postgres: a fresh database on postgres://postgres@127.0.0.1:5432, dropped after);
# the peer always uses its SQLite store. Neither server has secrets worth keeping: the peer runs without
# authentication on 127.0.0.1, Sesame with a throwaway admin token in a temporary data folder.
# Columns: req/s, wrk's p50/p99, non-2xx answers, and the server's own CPU time per request (µs, user + system,
# from /proc: the most machine-independent figure on a shared box). Needs: wrk, curl, jq, python3, cargo, and for
# the peer's build pkg-config, perl, make and OpenSSL 3 headers (Debian: libssl-dev).
set -euo pipefail
cd "$(dirname "$0")/.."
secs="${1:-10}"
conns="${2:-32}"
store="${3:-sqlite}"
threads="${THREADS:-2}"
rounds="${ROUNDS:-1}"
case "$store" in sqlite | postgres) ;; *) echo "store must be sqlite or postgres" >&2; exit 2 ;; esac
for tool in wrk curl jq python3 cargo; do
  command -v "$tool" >/dev/null || { echo "$tool is missing (Debian: apt-get install -y wrk curl jq python3)" >&2; exit 2; }
done

peer_version=5.28.0
peers="${PEERS:-$HOME/.cache/sesame-peers}"
peer_root="$peers/cosmian"                 # cargo install --root: the binary lands in bin/
peer_src="$peers/cosmian-src"              # the unpacked, patched crate
peer_bin="$peer_root/bin/cosmian_kms"

# ---------------------------------------------------------------------------------------------------------------
# Building the peer (once; later runs reuse the binary).
build_peer() {
  mkdir -p "$peers"
  export CARGO_TARGET_DIR="$peers/cosmian-target"
  # The crate's default features make the FIPS build, which loads OpenSSL's "fips" provider at start; Debian ships
  # none, so the server would not start. The `non-fips` feature of 5.28.0 as published also names a
  # dev-dependency (`cosmian_kms_client_utils/non-fips`), so `cargo install --features non-fips` is refused. That
  # refused install still leaves the .crate in cargo's registry cache: unpack it, drop the dev-dependency from the
  # feature (it only serves the crate's own tests) and install from the patched copy, with the crate's Cargo.lock.
  cargo install cosmian_kms_server --version "$peer_version" --locked --features non-fips --root "$peer_root" \
    >/dev/null 2>&1 || true
  local crate
  crate="$(ls "${CARGO_HOME:-$HOME/.cargo}"/registry/cache/*/cosmian_kms_server-$peer_version.crate | head -1)"
  rm -rf "$peer_src" && mkdir -p "$peer_src" && tar xzf "$crate" -C "$peer_src"
  python3 - "$peer_src/cosmian_kms_server-$peer_version/Cargo.toml" <<'PY'
import sys
path = sys.argv[1]
text = open(path).read()
published = 'non-fips = [\n    "cosmian_kms_client_utils/non-fips",\n    "cosmian_kms_server_database/non-fips",\n]'
assert published in text, "the peer's manifest is not laid out as expected"
open(path, "w").write(text.replace(published, 'non-fips = [\n    "cosmian_kms_server_database/non-fips",\n]'))
PY
  # The default release profile (opt-level 3, no LTO), like Sesame's own release build.
  (cd "$peer_src/cosmian_kms_server-$peer_version" &&
    nice -n 10 cargo install --path . --locked --features non-fips --root "$peer_root")
  unset CARGO_TARGET_DIR
}
[ -x "$peer_bin" ] || build_peer

if [ -n "${SESAME_BIN:-}" ]; then
  bin="$SESAME_BIN"
else
  nice -n 10 cargo build --release --locked --bin sesame
  bin="${CARGO_TARGET_DIR:-target}/release/sesame"
fi

# ---------------------------------------------------------------------------------------------------------------
# Both servers, on free loopback ports.
work="$(mktemp -d)"
peer_pid=""
probe_pid=""
pid=""
db=""
pg="postgres://postgres@127.0.0.1:5432"
cleanup() {
  for p in "$pid" "$peer_pid" "$probe_pid"; do
    if [ -n "$p" ]; then kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; fi
  done
  if [ -n "$db" ]; then psql -q "$pg/postgres" -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" || true; fi
  rm -rf "$work"
}
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_for() {  # url, log
  for _ in $(seq 1 300); do curl -fs "$1" >/dev/null 2>&1 && return 0; sleep 0.1; done
  cat "$2" >&2
  echo "did not come up: $1" >&2
  exit 1
}

peer_port="$(free_port)"
peer="http://127.0.0.1:$peer_port"
# No JWT, client certificate or API token configured: the peer has authentication off (user "admin"). Its log
# level is warn because at info it writes a line per request.
mkdir -p "$work/peer"
KMS_RUST_LOG=warn "$peer_bin" --hostname 127.0.0.1 --port "$peer_port" \
  --database-type sqlite --sqlite-path "$work/peer/sqlite" \
  --root-data-path "$work/peer/data" --tmp-path "$work/peer/tmp" >"$work/peer.log" 2>&1 &
peer_pid=$!
wait_for "$peer/version" "$work/peer.log"

port="$(free_port)"
base="http://127.0.0.1:$port"
args=(serve --listen "127.0.0.1:$port" --data-dir "$work/data" --org bench)
if [ "$store" = postgres ]; then
  db="sesame_bench_peer_$$"
  psql -q "$pg/postgres" -c "CREATE DATABASE $db"
  args+=(--database-url "$pg/$db")
fi
SESAME_LOG=warn "$bin" "${args[@]}" >"$work/serve.log" 2>&1 &
pid=$!
wait_for "$base/readyz" "$work/serve.log"
export SESAME_TOKEN="$(cat "$work/data/admin.token")"
stack="$base/api/stacks/bench/app/prod"
source bench/echo-probe.sh

# ---------------------------------------------------------------------------------------------------------------
# Request bodies. The same 1 KiB plaintext for both servers.
head -c 1024 /dev/urandom >"$work/pt.bin"
hex() { od -An -tx1 -v "$1" | tr -d ' \n' | tr 'a-f' 'A-F'; }
b64url() { base64 -w0 "$1" | tr '+/' '-_' | tr -d '='; }
kmip() { curl -fsS -H 'Content-Type: application/json' --data-binary "@$1" "$peer/kmip/2_1"; }

# The peer: an AES-256 key made with KMIP 2.1 Create (JSON TTLV), then activated (a key made without an
# activation date starts PreActive, and Encrypt needs it Active).
kid="$(jq -cn '{tag:"Create",type:"Structure",value:[
    {tag:"ObjectType",type:"Enumeration",value:"SymmetricKey"},
    {tag:"Attributes",type:"Structure",value:[
      {tag:"CryptographicAlgorithm",type:"Enumeration",value:"AES"},
      {tag:"CryptographicLength",type:"Integer",value:256},
      {tag:"CryptographicUsageMask",type:"Integer",value:2108},
      {tag:"KeyFormatType",type:"Enumeration",value:"TransparentSymmetricKey"},
      {tag:"ObjectType",type:"Enumeration",value:"SymmetricKey"}]}]}' >"$work/create.json" &&
  kmip "$work/create.json" | jq -r '.value[] | select(.tag=="UniqueIdentifier") | .value')"
jq -cn --arg uid "$kid" '{tag:"Activate",type:"Structure",value:[{tag:"UniqueIdentifier",type:"TextString",value:$uid}]}' \
  >"$work/activate.json"
kmip "$work/activate.json" >/dev/null
# KMIP Encrypt with AES-GCM (the server picks the nonce); the Decrypt request is built from its answer (data,
# nonce and tag).
gcm='{"tag":"CryptographicParameters","type":"Structure","value":[
  {"tag":"BlockCipherMode","type":"Enumeration","value":"GCM"},
  {"tag":"CryptographicAlgorithm","type":"Enumeration","value":"AES"}]}'
jq -cn --arg uid "$kid" --arg data "$(hex "$work/pt.bin")" --argjson cp "$gcm" \
  '{tag:"Encrypt",type:"Structure",value:[{tag:"UniqueIdentifier",type:"TextString",value:$uid}, $cp,
    {tag:"Data",type:"ByteString",value:$data}]}' >"$work/kmip_enc.json"
kmip "$work/kmip_enc.json" |
  jq -c --arg uid "$kid" --argjson cp "$gcm" '{tag:"Decrypt",type:"Structure",value:([
      {tag:"UniqueIdentifier",type:"TextString",value:$uid}, $cp] +
      [.value[] | select(.tag=="Data" or .tag=="IVCounterNonce" or .tag=="AuthenticatedEncryptionTag")])}' \
    >"$work/kmip_dec.json"
[ "$(kmip "$work/kmip_dec.json" | jq -r '.value[] | select(.tag=="Data") | .value')" = "$(hex "$work/pt.bin")" ] ||
  { echo "the peer's KMIP round trip does not give the plaintext back" >&2; exit 1; }
# The same key through the peer's JOSE API (/v1/crypto: JWE flattened JSON, alg dir, A256GCM); the encrypt answer
# is the decrypt request.
jq -cn --arg kid "$kid" --arg data "$(b64url "$work/pt.bin")" '{kid:$kid,alg:"dir",enc:"A256GCM",data:$data}' \
  >"$work/jose_enc.json"
curl -fsS -H 'Content-Type: application/json' --data-binary "@$work/jose_enc.json" "$peer/v1/crypto/encrypt" \
  >"$work/jose_dec.json"
[ "$(curl -fsS -H 'Content-Type: application/json' --data-binary "@$work/jose_dec.json" "$peer/v1/crypto/decrypt" |
  jq -r .data)" = "$(b64url "$work/pt.bin")" ] ||
  { echo "the peer's JOSE round trip does not give the plaintext back" >&2; exit 1; }

# Sesame: the stack API's JSON (standard base64); the first encrypt also makes the stack's DEK.
jq -cn --arg p "$(base64 -w0 "$work/pt.bin")" '{plaintext:$p}' >"$work/enc.json"
curl -fsS -H "Authorization: token $SESAME_TOKEN" --data-binary "@$work/enc.json" "$stack/encrypt" |
  jq -c '{ciphertext}' >"$work/dec.json"
[ "$(curl -fsS -H "Authorization: token $SESAME_TOKEN" --data-binary "@$work/dec.json" "$stack/decrypt" |
  jq -r .plaintext)" = "$(base64 -w0 "$work/pt.bin")" ] ||
  { echo "Sesame's stack round trip does not give the plaintext back" >&2; exit 1; }

# ---------------------------------------------------------------------------------------------------------------
# The runs. The peer's POSTs carry no Authorization header (its auth is off); Sesame's carry the admin token.
cat >"$work/peer_post.lua" <<'LUA'
local f = assert(io.open(os.getenv("BODY_FILE"), "rb"))
wrk.method = "POST"
wrk.body = f:read("*a")
f:close()
wrk.headers["Content-Type"] = "application/json"
LUA
ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }   # the process's user + system time, in clock ticks
hz="$(getconf CLK_TCK)"
to_ms() {  # wrk's "812.00us" / "1.31ms" / "1.02s" -> milliseconds
  awk -v v="$1" 'BEGIN { n = v + 0; if (v ~ /us$/) n /= 1000; else if (v ~ /ms$/) n *= 1; else if (v ~ /s$/) n *= 1000;
    printf "%.2f", n }'
}
declare -A rps
: >"$work/rows"
run() {  # name, server pid, url, [body file, lua]
  local name="$1" spid="$2" url="$3" body="${4:-}" lua="${5:-}" opts=() out t0 t1
  [ -n "$body" ] && opts=(-s "$lua")
  BODY_FILE="$body" wrk -t"$threads" -c"$conns" -d2s "${opts[@]}" "$url" >/dev/null   # warm-up, not counted
  t0="$(ticks "$spid")"
  out="$(BODY_FILE="$body" wrk -t"$threads" -c"$conns" -d"${secs}s" --latency "${opts[@]}" "$url")"
  t1="$(ticks "$spid")"
  local r p50 p99 bad us total
  r="$(awk '/^Requests\/sec/ {print $2}' <<<"$out")"
  p50="$(to_ms "$(awk '$1 == "50%" {print $2}' <<<"$out")")"
  p99="$(to_ms "$(awk '$1 == "99%" {print $2}' <<<"$out")")"
  bad="$(awk '/Non-2xx/ {print $NF}' <<<"$out")"
  total="$(awk '/requests in/ {print $1}' <<<"$out")"
  us="$(awk -v a="$t0" -v b="$t1" -v hz="$hz" -v n="$total" 'BEGIN { printf "%.1f", (b - a) / hz * 1e6 / n }')"
  printf '%-28s %10s req/s   p50 %7s ms   p99 %7s ms   non-2xx %-5s server CPU %6s µs/req\n' \
    "$name" "$r" "$p50" "$p99" "${bad:-0}" "$us" | tee -a "$work/rows"
  rps[$name]="$(awk -v a="${rps[$name]:-0}" -v b="$r" 'BEGIN { print a + b }')"
}

echo "# $(date -u +%FT%TZ)  wrk -t$threads -c$conns -d${secs}s, $(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg)," \
  "Sesame store: $store, peer: Cosmian KMS $peer_version (non-FIPS)"
for round in $(seq 1 "$rounds"); do
  [ "$rounds" -gt 1 ] && echo "## round $round"
  run "peer GET /version" "$peer_pid" "$peer/version"
  run "sesame GET /healthz" "$pid" "$base/healthz"
  run "peer JOSE encrypt 1 KiB" "$peer_pid" "$peer/v1/crypto/encrypt" "$work/jose_enc.json" "$work/peer_post.lua"
  run "peer KMIP encrypt 1 KiB" "$peer_pid" "$peer/kmip/2_1" "$work/kmip_enc.json" "$work/peer_post.lua"
  run "sesame encrypt 1 KiB" "$pid" "$stack/encrypt" "$work/enc.json" bench/wrk/post.lua
  run "peer JOSE decrypt 1 KiB" "$peer_pid" "$peer/v1/crypto/decrypt" "$work/jose_dec.json" "$work/peer_post.lua"
  run "peer KMIP decrypt 1 KiB" "$peer_pid" "$peer/kmip/2_1" "$work/kmip_dec.json" "$work/peer_post.lua"
  run "sesame decrypt 1 KiB" "$pid" "$stack/decrypt" "$work/dec.json" bench/wrk/post.lua
  run "probe GET /healthz" "$probe_pid" "$probe/healthz"
  run "probe echo 1 KiB" "$probe_pid" "$probe/echo" "$work/enc.json" "$work/peer_post.lua"
done

ratio() { awk -v a="${rps[$1]}" -v b="${rps[$2]}" 'BEGIN { printf "%.2f", a / b }'; }
best() { awk -v a="${rps[$1]}" -v b="${rps[$2]}" 'BEGIN { print (a > b) ? a : b }'; }
echo "## ratios (req/s, summed over rounds)"
printf '%-52s %6s   (goal >= 1)\n' "sesame /healthz / peer /version" "$(ratio "sesame GET /healthz" "peer GET /version")"
for op in encrypt decrypt; do
  peer_best="$(best "peer JOSE $op 1 KiB" "peer KMIP $op 1 KiB")"
  printf '%-52s %6s   (goal >= 1.5)\n' "sesame $op / the peer's faster $op (JOSE or KMIP)" \
    "$(awk -v a="${rps[sesame $op 1 KiB]}" -v b="$peer_best" 'BEGIN { printf "%.2f", a / b }')"
done
for op in encrypt decrypt; do
  printf '%-52s %6s   (goal >= 0.70)\n' "sesame $op / sesame /healthz" "$(ratio "sesame $op 1 KiB" "sesame GET /healthz")"
done
printf '%-52s %6s   (the ceiling of a 1 KiB JSON call on this stack)\n' "probe echo 1 KiB / probe GET /healthz" \
  "$(ratio "probe echo 1 KiB" "probe GET /healthz")"
for op in encrypt decrypt; do
  printf '%-52s %6s\n' "sesame $op / probe echo 1 KiB" "$(ratio "sesame $op 1 KiB" "probe echo 1 KiB")"
done
audit_lines="$(curl -fs -H "Authorization: token $SESAME_TOKEN" "$base/api/sesame/v1/orgs/bench/audit" | wc -l)"
echo "lines in Sesame's org audit export after the runs (tallied stack calls, checkpoints, head): $audit_lines"
