#!/usr/bin/env bash
# Open latency of an environment that calls fn::open::aws-login (OIDC → STS AssumeRoleWithWebIdentity) against a
# moto server on loopback, beside the same environment with static values in its place, at 1 and 16 connections;
# and the number of STS calls per open, counted on the wire. Usage:
#   bench/esc-provider-load.sh [seconds] [sqlite|postgres]
# Builds the release binary with the aws feature (CARGO_TARGET_DIR honoured); SESAME_BIN=path runs another binary
# instead (e.g. a debug build: say so when quoting its numbers). Needs: wrk (Debian package), curl, python3,
# moto_server (SESAME_TEST_MOTO_SERVER or on PATH; pip install 'moto[server]'), psql for postgres.
#
# The server reaches moto the standard way (AWS_ENDPOINT_URL) through a small relay started here that counts the
# requests carrying Action=AssumeRoleWithWebIdentity; the count is divided by the successful opens wrk made of the
# aws-login environment (each open must make exactly one STS call: one aws-login block). Every open is a full
# evaluation (an environment that calls providers is never served from the evaluated-result cache; the static one is
# evaluated anew too, because each wrk request is a POST open that writes a session).
set -euo pipefail
cd "$(dirname "$0")/.."
secs="${1:-10}"
store="${2:-sqlite}"
case "$store" in sqlite | postgres) ;; *) echo "store must be sqlite or postgres" >&2; exit 2 ;; esac
command -v wrk >/dev/null || { echo "wrk is missing: apt-get install -y wrk" >&2; exit 2; }
moto_bin="${SESAME_TEST_MOTO_SERVER:-moto_server}"
command -v "$moto_bin" >/dev/null || { echo "moto_server is missing: pip install 'moto[server]'" >&2; exit 2; }
if [ -n "${SESAME_BIN:-}" ]; then
  bin="$SESAME_BIN"
  echo "binary: $bin (given: not necessarily a release build)"
else
  cargo build --release --locked --features aws
  bin="${CARGO_TARGET_DIR:-target}/release/sesame"
  echo "binary: $bin (release, --features aws)"
fi

work="$(mktemp -d)"
pids=()
db=""
pg="postgres://postgres@127.0.0.1:5432"
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
  if [ -n "$db" ]; then psql -q "$pg/postgres" -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" || true; fi
  rm -rf "$work"
}
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() {
  for _ in $(seq 1 300); do python3 -c "import socket,sys; socket.create_connection(('127.0.0.1',$1),1)" 2>/dev/null && return 0; sleep 0.1; done
  echo "nothing listens on $1" >&2; return 1
}

moto_port="$(free_port)"
"$moto_bin" -H 127.0.0.1 -p "$moto_port" >"$work/moto.log" 2>&1 &
pids+=($!)
wait_port "$moto_port"

# The counting relay: loopback only, one thread per direction per connection; the count of STS web-identity
# requests is written to $work/sts after each one.
relay_port="$(free_port)"
python3 - "$relay_port" "$moto_port" "$work/sts" <<'PY' &
import socket, sys, threading
listen, upstream, out = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
lock, count = threading.Lock(), [0]
open(out, "w").write("0\n")
needle = b"Action=AssumeRoleWithWebIdentity"
def pump(src, dst, counting):
    tail = b""
    try:
        while True:
            data = src.recv(65536)
            if not data:
                break
            if counting:
                seen = tail + data
                n = seen.count(needle)
                if n:
                    with lock:
                        count[0] += n
                        open(out, "w").write(f"{count[0]}\n")
                tail = seen[-(len(needle) - 1):]  # shorter than the needle: nothing counted twice
            dst.sendall(data)
    except OSError:
        pass
    finally:
        try:
            dst.shutdown(socket.SHUT_WR)
        except OSError:
            pass
srv = socket.socket()
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("127.0.0.1", listen))
srv.listen(256)
while True:
    c, _ = srv.accept()
    u = socket.create_connection(("127.0.0.1", upstream))
    threading.Thread(target=pump, args=(c, u, True), daemon=True).start()
    threading.Thread(target=pump, args=(u, c, False), daemon=True).start()
PY
pids+=($!)
wait_port "$relay_port"
sts() { cat "$work/sts"; }

port="$(free_port)"
args=(serve --listen "127.0.0.1:$port" --data-dir "$work/data" --org bench --egress-allow 127.0.0.1/32)
if [ "$store" = postgres ]; then
  db="sesame_bench_prov_$$"
  psql -q "$pg/postgres" -c "CREATE DATABASE $db"
  args+=(--database-url "$pg/$db")
fi
AWS_ENDPOINT_URL="http://127.0.0.1:$relay_port" AWS_REGION=us-east-1 SESAME_LOG=warn "$bin" "${args[@]}" \
  >"$work/serve.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 300); do curl -fs "http://127.0.0.1:$port/readyz" >/dev/null 2>&1 && break; sleep 0.1; done
curl -fs "http://127.0.0.1:$port/readyz" >/dev/null || { cat "$work/serve.log" >&2; exit 1; }
export SESAME_TOKEN="$(cat "$work/data/admin.token")"
base="http://127.0.0.1:$port"
envs="$base/api/esc/environments/bench"

call() {
  local method="$1" url="$2" status
  shift 2
  status="$(curl -sS -o "$work/answer" -w '%{http_code}' -X "$method" -H "Authorization: token $SESAME_TOKEN" "$@" "$url")"
  if [ "${status:0:1}" != 2 ]; then
    echo "FAILED: $method $url -> $status" >&2
    cat "$work/answer" >&2
    echo >&2
    exit 1
  fi
  cat "$work/answer"
}

# Two environments alike but for the aws-login block: 20 plain values and 5 secrets each.
python3 - "$work" <<'PY'
import sys
work = sys.argv[1]
common = "".join(f"  k{j:02d}: plain value number {j}\n" for j in range(20))
common += "".join(f"  s{j}:\n    fn::secret: secret-value-{j}-{'x' * 24}\n" for j in range(5))
login = ("  aws:\n    login:\n      fn::open::aws-login:\n        oidc:\n"
         "          roleArn: arn:aws:iam::123456789012:role/bench\n          sessionName: bench\n"
         "          duration: 1h\n")
static = ("  aws:\n    login:\n      accessKeyId: AKIAEXAMPLEEXAMPLE00\n"
          "      secretAccessKey:\n        fn::secret: static-secret-key-example-example-000000\n")
open(f"{work}/with.yaml", "w").write("values:\n" + login + common)
open(f"{work}/without.yaml", "w").write("values:\n" + static + common)
PY
for name in with without; do
  call POST "$envs" -H 'Content-Type: application/json' -d "{\"project\":\"bench\",\"name\":\"$name\"}" >/dev/null
  call PATCH "$envs/bench/$name" -H 'Content-Type: application/x-yaml' --data-binary @"$work/$name.yaml" >/dev/null
done

# One open by hand: the credentials are moto's, and one open made one STS call.
s0="$(sts)"
sts_start="$s0"
id="$(call POST "$envs/bench/with/open?duration=1h" | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')"
call GET "$envs/bench/with/open/$id" | python3 -c '
import json, sys
login = json.load(sys.stdin)["properties"]["aws"]["value"]["login"]
v = {k: w["value"] for k, w in login["value"].items()}
assert login.get("secret") is True, login
assert v["accessKeyId"].startswith("ASIA") and v["sessionToken"], v.keys()
print("aws-login open: moto credentials", v["accessKeyId"][:8] + "…")'
[ "$(( $(sts) - s0 ))" = 1 ] || { echo "one open made $(( $(sts) - s0 )) STS calls" >&2; exit 1; }

field() { tr ' ' '\n' <"$work/result" | awk -F= -v k="$1" '$1==k {print $2}'; }
declare -A p50 p99 rps
aws_opens=0
aws_sts=0
for conns in 1 16; do
  threads=2; [ "$conns" -ge 2 ] || threads=1
  for name in without with; do
    s0="$(sts)"
    echo "== $name aws-login, $conns connection(s), ${secs} s"
    ENV_PATH="/api/esc/environments/bench/bench/$name" MODE=open \
      wrk -t$threads -c"$conns" -d"${secs}s" --latency -s bench/wrk/esc-open.lua "$base" | tee "$work/wrk.out" \
      | grep -E "^mode|^latency|^errors|^first error" || true
    grep -E "^RESULT" "$work/wrk.out" >"$work/result"
    made="$(field opens)"; bad="$(field bad)"; errs="$(field errors)"
    [ "$bad" = 0 ] && [ "$errs" = 0 ] || echo "  errors: non-2xx $bad, socket $errs"
    sleep 0.5   # let the last STS requests' counts land
    calls=$(( $(sts) - s0 ))
    if [ "$name" = with ]; then
      aws_opens=$((aws_opens + made - bad)); aws_sts=$((aws_sts + calls))
    elif [ "$calls" != 0 ]; then
      echo "the environment without aws-login made $calls STS calls" >&2; exit 1
    fi
    p50[$name$conns]="$(field p50_ms)"; p99[$name$conns]="$(field p99_ms)"
    rps[$name$conns]="$(python3 -c "print(f'{$made / $(field secs):.1f}')")"
  done
done

echo
echo "== summary ($store, ${secs} s per run; binary $bin)"
for conns in 1 16; do
  for name in without with; do
    printf '%-22s %2s conn: p50 %8.2f ms, p99 %8.2f ms, %8s opens/s\n' "$name aws-login" "$conns" \
      "${p50[$name$conns]}" "${p99[$name$conns]}" "${rps[$name$conns]}"
  done
done
python3 -c "print(f'STS calls per open:    {$aws_sts / max($aws_opens, 1):.4f} ({$aws_sts} calls, $aws_opens opens wrk saw answered; requests cut off at the end of a run still call STS)')"
# The exact figure: STS requests on the wire over the aws-login calls the server made (its provider.open audit
# records, each an open's one aws-login block), over the whole run including the open by hand.
sleep 1
calls_audited="$(call GET "$base/api/sesame/v1/orgs/bench/audit" | grep -c 'provider=aws-login ' || true)"
sts_total=$(( $(sts) - sts_start ))
python3 -c "print(f'STS calls per aws-login call (server side): {$sts_total / max($calls_audited, 1):.4f} ({$sts_total} STS requests, $calls_audited provider.open records for aws-login)')"
