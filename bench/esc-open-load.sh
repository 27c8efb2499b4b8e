#!/usr/bin/env bash
# Load benchmark of ESC open + read (`POST …/open?duration=1h`, then `GET …/open/{id}`) against a release server on
# loopback, beside /healthz in the same run (the ceiling). Usage:
#   bench/esc-open-load.sh [seconds] [connections] [sqlite|postgres]
# Sets up 10 environments bench/base0..9 (10 plain values each, under a key named after the environment) and
# bench/app, which imports all 10 and has 100 values (80 literals, 20 interpolations of imported values such as
# ${base3.v1}) and 20 `fn::secret` values (sealed at rest). Then, for the given time each with 2 threads:
#   1. /healthz (ceiling)
#   2. open + read pairs (bench/wrk/esc-open.lua, MODE=pair): every session opened once and read once
#   3. open alone (MODE=open) and 4. read alone (MODE=read, 64 sessions opened beforehand): each kind's own latency
#   5. ESO's mix (MODE=eso): open, then read one `?property=` of it
#   6. the stack API: encrypt and decrypt of 1 KiB (bench/wrk/post.lua), every successful call audited
#   7. /healthz again
# Then, at one connection, a cold open (the first after a change: a PATCH of bench/app, then one open) 200 times:
# median and p99. On postgres, database transactions per open are read from pg_stat_database around an open-alone
# run (each statement outside a transaction is one; the audit writer's batch is one for many opens).
# With MEMORY_OPENS=N (e.g. 1000000), last: N opens of 24 h sessions (open-alone runs until N were made), then the
# server's resident size and the stored session rows and pin sets, before and after.
# KMS unwraps are read from /metrics around run 2. postgres: a fresh database on postgres://postgres@127.0.0.1:5432
# (made and dropped with psql). Needs: wrk (Debian package), curl, python3, psql for postgres.
set -euo pipefail
cd "$(dirname "$0")/.."
secs="${1:-10}"
conns="${2:-64}"
store="${3:-sqlite}"
threads=2
[ "$conns" -ge 2 ] || threads=1   # wrk needs connections >= threads
case "$store" in sqlite | postgres) ;; *) echo "store must be sqlite or postgres" >&2; exit 2 ;; esac
command -v wrk >/dev/null || { echo "wrk is missing: apt-get install -y wrk" >&2; exit 2; }
cargo build --release --locked
bin="${CARGO_TARGET_DIR:-target}/release/sesame"

work="$(mktemp -d)"
pid=""
db=""
pg="postgres://postgres@127.0.0.1:5432"
cleanup() {
  if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
  if [ -n "$db" ]; then psql -q "$pg/postgres" -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" || true; fi
  rm -rf "$work"
}
trap cleanup EXIT
port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
args=(serve --listen "127.0.0.1:$port" --data-dir "$work/data" --org bench)
if [ "$store" = postgres ]; then
  db="sesame_bench_open_$$"
  psql -q "$pg/postgres" -c "CREATE DATABASE $db"
  args+=(--database-url "$pg/$db")
fi
SESAME_LOG=warn "$bin" "${args[@]}" >"$work/serve.log" 2>&1 &
pid=$!
for _ in $(seq 1 300); do curl -fs "http://127.0.0.1:$port/readyz" >/dev/null 2>&1 && break; sleep 0.1; done
curl -fs "http://127.0.0.1:$port/readyz" >/dev/null || { cat "$work/serve.log" >&2; exit 1; }
export SESAME_TOKEN="$(cat "$work/data/admin.token")"
base="http://127.0.0.1:$port"
envs="$base/api/esc/environments/bench"
export ENV_PATH="/api/esc/environments/bench/bench/app"

# Any 4xx/5xx while setting up stops the script with the request and the answer.
call() {
  local method="$1" url="$2" out status
  shift 2
  out="$(curl -sS -o "$work/answer" -w '%{http_code}' -X "$method" -H "Authorization: token $SESAME_TOKEN" "$@" "$url")"
  status="$out"
  if [ "${status:0:1}" != 2 ]; then
    echo "FAILED: $method $url -> $status" >&2
    cat "$work/answer" >&2
    echo >&2
    exit 1
  fi
  cat "$work/answer"
}

python3 - "$work" <<'PY'
import sys
work = sys.argv[1]
for i in range(10):
    with open(f"{work}/base{i}.yaml", "w") as f:
        f.write(f"values:\n  base{i}:\n")
        for j in range(10):
            f.write(f"    v{j}: base{i}-value-{j}\n")
with open(f"{work}/app.yaml", "w") as f:
    f.write("imports:\n" + "".join(f"  - bench/base{i}\n" for i in range(10)))
    f.write("values:\n")
    for j in range(80):
        f.write(f"  k{j:02d}: plain value number {j}\n")
    for j in range(20):
        a, b = j % 10, (j * 3) % 10
        if j % 2:
            f.write(f"  ref{j:02d}: ${{base{a}.v{b}}}\n")
        else:
            f.write(f"  ref{j:02d}: prefix-${{base{a}.v{b}}}-${{base{b}.v{a}}}-suffix\n")
    for j in range(20):
        f.write(f"  secret{j:02d}:\n    fn::secret: secret-value-{j:02d}-{'x' * 24}\n")
PY
for i in $(seq 0 9) app; do
  name="$i"; [ "$i" = app ] || name="base$i"
  call POST "$envs" -H 'Content-Type: application/json' -d "{\"project\":\"bench\",\"name\":\"$name\"}" >/dev/null
  call PATCH "$envs/bench/$name" -H 'Content-Type: application/x-yaml' --data-binary @"$work/$name.yaml" >/dev/null
done

# One open + read by hand: checks the values (interpolations, secrets) and warms the DEK cache.
id="$(call POST "$envs/bench/app/open?duration=1h" | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')"
call GET "$envs/bench/app/open/$id" >"$work/opened.json"
python3 - "$work/opened.json" <<'PY'
import json, sys
props = json.load(open(sys.argv[1]))["properties"]
def plain(v):
    # ESC's wire form: {"value": …, "secret"?: true, "trace": …}; objects nest the same way.
    x = v.get("value")
    return {k: plain(w) for k, w in x.items()} if isinstance(x, dict) else x
vals = {k: plain(v) for k, v in props.items()}
assert vals["ref01"] == "base1-value-3", vals["ref01"]
assert vals["ref00"] == "prefix-base0-value-0-base0-value-0-suffix", vals["ref00"]
assert vals["ref04"] == "prefix-base4-value-2-base2-value-4-suffix", vals["ref04"]
assert vals["secret07"].startswith("secret-value-07-"), vals["secret07"]
assert props["secret07"].get("secret") is True, props["secret07"]
assert vals["base9"]["v9"] == "base9-value-9"
leaves = lambda x: sum(leaves(w) for w in x.values()) if isinstance(x, dict) else 1
print(f"bench/app opens to {len(vals)} top-level keys, {leaves(vals)} values "
      f"({sum(1 for v in props.values() if v.get('secret'))} secret); {len(open(sys.argv[1]).read())} bytes")
PY
sessions=""
for _ in $(seq 1 64); do
  sid="$(call POST "$envs/bench/app/open?duration=1h" | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')"
  sessions="${sessions:+$sessions,}$sid"
done

metric() { curl -fs "$base/metrics" | awk -v m="$1" '$1==m {print $2}'; }
run() {
  local name="$1"
  shift
  echo "== $name"
  wrk -t$threads -c"$conns" -d"${secs}s" --latency "$@" | tee "$work/wrk.out" \
    | grep -E "Requests/sec|Latency  |50%|99%|Non-2xx|Socket errors|^mode|^latency|^errors|^first error"
  grep -E "Requests/sec" "$work/wrk.out" | awk '{print $2}' >"$work/rps"
  grep -E "^RESULT" "$work/wrk.out" >"$work/result" || true
}
field() { tr ' ' '\n' <"$work/result" | awk -F= -v k="$1" '$1==k {print $2}'; }

echo "store: $store; wrk: $threads threads x $conns connections, ${secs} s per run"
run "/healthz (ceiling)" "$base/healthz"
h1="$(cat "$work/rps")"
unwraps_before="$(metric sesame_kms_unwrap_total)"
misses_before="$(metric sesame_dek_cache_misses_total)"
MODE=pair run "open + read pairs" -s bench/wrk/esc-open.lua "$base"
unwraps_after="$(metric sesame_kms_unwrap_total)"
misses_after="$(metric sesame_dek_cache_misses_total)"
pair_rps="$(cat "$work/rps")"
pair_opens="$(field opens)"
pair_reads="$(field reads)"
pair_secs="$(field secs)"
pair_p50="$(field p50_ms)"
pair_p99="$(field p99_ms)"
pair_bad="$(field bad)"
pair_errs="$(field errors)"
MODE=open run "open alone" -s bench/wrk/esc-open.lua "$base"
open_line="$(cat "$work/result")"
SESSION_IDS="$sessions" MODE=read run "read alone (64 sessions, round robin)" -s bench/wrk/esc-open.lua "$base"
read_line="$(cat "$work/result")"
MODE=eso run "ESO mix: open, then ?property=ref01" -s bench/wrk/esc-open.lua "$base"
eso_line="$(cat "$work/result")"

stack="$base/api/stacks/bench/app/prod"
python3 -c 'import base64,json,sys; json.dump({"plaintext": base64.b64encode(bytes(range(256))*4).decode()}, open(sys.argv[1], "w"))' "$work/encrypt.json"
call POST "$stack/encrypt" -H 'Content-Type: application/json' --data-binary @"$work/encrypt.json" \
  | python3 -c 'import json,sys; print(json.dumps({"ciphertext": json.load(sys.stdin)["ciphertext"]}))' >"$work/decrypt.json"
BODY_FILE="$work/encrypt.json" run "stack encrypt 1 KiB" -s bench/wrk/post.lua "$stack/encrypt"
enc_rps="$(cat "$work/rps")"
BODY_FILE="$work/decrypt.json" run "stack decrypt 1 KiB" -s bench/wrk/post.lua "$stack/decrypt"
dec_rps="$(cat "$work/rps")"
run "/healthz (ceiling, again)" "$base/healthz"
h2="$(cat "$work/rps")"
unwraps_total="$(metric sesame_kms_unwrap_total)"

# Database transactions per open (postgres): an open-alone run between two reads of the counters.
xacts_per_open="n/a (sqlite)"
if [ "$store" = postgres ]; then
  xacts() { psql -qtA "$pg/postgres" -c "SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = '$db'"; }
  sleep 1; x0="$(xacts)"
  MODE=open run "open alone (counting transactions)" -s bench/wrk/esc-open.lua "$base"
  n_opens="$(field opens)"
  sleep 1; x1="$(xacts)"
  xacts_per_open="$(python3 -c "print(f'{($x1 - $x0) / max($n_opens, 1):.3f} ({$x1 - $x0} transactions, $n_opens opens)')")"
fi

# A cold open, one connection: each open follows a change to bench/app, so nothing it evaluates is cached.
cold="$(python3 - "$port" "$SESAME_TOKEN" "$work/app.yaml" <<'PY'
import http.client, statistics, sys, time
port, token, app = int(sys.argv[1]), sys.argv[2], open(sys.argv[3]).read()
c = http.client.HTTPConnection("127.0.0.1", port)
h = {"Authorization": f"token {token}"}
path = "/api/esc/environments/bench/bench/app"
times = []
for i in range(200):
    c.request("PATCH", path, body=app + f"  cold: {i}\n", headers={**h, "Content-Type": "application/x-yaml"})
    r = c.getresponse(); r.read(); assert r.status == 200, r.status
    t = time.perf_counter()
    c.request("POST", path + "/open?duration=1h", headers={**h, "Content-Length": "0"})
    r = c.getresponse(); r.read(); assert r.status == 200, r.status
    times.append((time.perf_counter() - t) * 1000)
times.sort()
print(f"median {statistics.median(times):.2f} ms, p99 {times[int(len(times) * 0.99) - 1]:.2f} ms over {len(times)}")
PY
)"

memory=""
if [ -n "${MEMORY_OPENS:-}" ]; then
  rss() { awk '/VmRSS/ {print $2}' "/proc/$pid/status"; }
  rows() {
    if [ "$store" = postgres ]; then
      psql -qtA "$pg/$db" -c "SELECT (SELECT count(*) FROM open_sessions) || ' session rows, ' || (SELECT count(*) FROM open_pins) || ' pin sets'"
    else
      python3 -c "import sqlite3,sys; c=sqlite3.connect(sys.argv[1]); print(c.execute('SELECT count(*) FROM open_sessions').fetchone()[0], 'session rows,', c.execute('SELECT count(*) FROM open_pins').fetchone()[0], 'pin sets')" "$work/data/sesame.db"
    fi
  }
  rss0="$(rss)"; rows0="$(rows)"; made=0
  while [ "$made" -lt "$MEMORY_OPENS" ]; do
    DURATION=24h MODE=open run "open alone, 24 h sessions ($made of $MEMORY_OPENS made)" -s bench/wrk/esc-open.lua "$base" >/dev/null
    made=$((made + $(field opens)))
  done
  memory="$made opens of 24 h: RSS ${rss0} kB -> $(rss) kB; store: ${rows0} -> $(rows)"
fi

echo
echo "== summary ($store, ${secs} s per run, $conns connections)"
python3 - "$h1" "$h2" "$pair_rps" "$pair_opens" "$pair_reads" "$pair_secs" "$pair_p50" "$pair_p99" \
  "$((unwraps_after - unwraps_before))" "$((misses_after - misses_before))" "$pair_bad" "$pair_errs" \
  "$open_line" "$read_line" "$((unwraps_total - unwraps_before))" "$eso_line" "$enc_rps" "$dec_rps" \
  "$xacts_per_open" "$cold" "$store" "$memory" <<'PY'
import sys
(h1, h2, rps, opens, reads, secs, p50, p99, unwraps, misses, bad, errs, open_line, read_line,
 unwraps_total, eso_line, enc_rps, dec_rps, xacts_per_open, cold, store, memory) = sys.argv[1:]
h1, h2, rps, secs, p50, p99 = map(float, (h1, h2, rps, secs, p50, p99))
opens, reads, unwraps, misses, bad, errs = map(int, (opens, reads, unwraps, misses, bad, errs))
ceiling = (h1 + h2) / 2
kv = lambda line: dict(x.split("=", 1) for x in line.split()[1:])
o, r, e = kv(open_line), kv(read_line), kv(eso_line)
goal = 0.15 if store == "sqlite" else 0.10
ok = lambda c: "ok" if c else "MISSED"
print(f"healthz req/s:            {h1:,.0f} before, {h2:,.0f} after (mean {ceiling:,.0f})")
print(f"open+read req/s:          {rps:,.0f} ({opens:,} opens + {reads:,} reads in {secs:.1f} s = "
      f"{min(opens, reads) / secs:,.0f} pairs/s)")
print(f"ratio to healthz:         {100 * rps / ceiling:.1f}% (goal >= {100 * goal:.0f}%: {ok(rps / ceiling >= goal)})")
print(f"latency, both kinds:      p50 {p50:.2f} ms, p99 {p99:.2f} ms (goal p99 < 20 ms: {ok(p99 < 20)})")
for name, d in (("open alone", o), ("read alone", r), ("ESO mix", e)):
    rate = int(d['requests']) / float(d['secs'])
    print(f"{name + ':':<26}{rate:,.0f} req/s ({100 * rate / ceiling:.1f}% of healthz), "
          f"p50 {float(d['p50_ms']):.2f} ms, p99 {float(d['p99_ms']):.2f} ms")
for name, v in (("stack encrypt 1 KiB", float(enc_rps)), ("stack decrypt 1 KiB", float(dec_rps))):
    print(f"{name + ':':<26}{v:,.0f} req/s = {100 * v / ceiling:.1f}% of healthz (goal >= 70%: {ok(v / ceiling >= 0.7)})")
print(f"cold open (1 connection): {cold}")
print(f"db transactions per open: {xacts_per_open}")
if memory:
    print(f"memory:                   {memory}")
print(f"KMS unwraps (pair run):   {unwraps} = {unwraps / max(opens, 1):.4f} per open "
      f"(goal 0: {ok(unwraps == 0)}); DEK cache misses {misses}; unwraps over all open/read runs {unwraps_total}")
print(f"errors (pair run):        non-2xx {bad}, socket {errs}")
for name, d in (("open alone", o), ("read alone", r), ("ESO mix", e)):
    if int(d["bad"]) or int(d["errors"]):
        print(f"errors ({name}):  non-2xx {d['bad']}, socket {d['errors']}")
PY
