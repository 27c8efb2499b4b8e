#!/usr/bin/env bash
# Instructions per request (user space), counted by valgrind's callgrind: repeatable for the same binary and inputs
# whatever else the machine is doing, unlike req/s on a shared box. Sesame (SQLite, a fresh data folder) runs under
# callgrind; one keep-alive client sends 200 warm-up requests, the counters are zeroed, then N requests are sent and
# the counters dumped: GET /healthz, then stack encrypt and decrypt of 1 KiB.
# Usage: bench/request-instructions.sh [N] [binary]     (defaults: 1000, target/release/sesame)
# Needs: valgrind, curl, python3. Kernel time (the TCP path, scheduling) is not counted; the CPU's own SHA
# extensions are hidden from valgrind, so SHA-256 counts higher here than it costs on the machine.
set -euo pipefail
cd "$(dirname "$0")/.."
n="${1:-1000}"
bin="${2:-target/release/sesame}"
[ -x "$bin" ] || cargo build --release --locked --bin sesame
for tool in valgrind callgrind_control curl python3; do
  command -v "$tool" >/dev/null || { echo "$tool is missing (Debian: apt-get install -y valgrind curl python3)" >&2; exit 2; }
done
work="$(mktemp -d)"
port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
SESAME_LOG=warn valgrind --tool=callgrind --callgrind-out-file="$work/cg.%p.out" \
  "$bin" serve --listen "127.0.0.1:$port" --data-dir "$work/data" --org bench >"$work/serve.log" 2>&1 &
pid=$!
trap 'kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; rm -rf "$work"' EXIT
for _ in $(seq 1 600); do curl -fs "http://127.0.0.1:$port/readyz" >/dev/null 2>&1 && break; sleep 0.2; done
python3 - "$port" "$(cat "$work/data/admin.token")" "$n" "$work" "$pid" <<'PY'
import base64, glob, http.client, json, os, subprocess, sys
port, token, n, work, pid = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5]
body = json.dumps({"plaintext": base64.b64encode(os.urandom(1024)).decode()})
conn = http.client.HTTPConnection("127.0.0.1", port)

def call(method, path, data=None, headers={}):
    conn.request(method, path, data, headers)
    r = conn.getresponse()
    answer = r.read()
    assert r.status == 200, (path, r.status)
    return answer

auth = {"Authorization": "token " + token, "Content-Type": "application/json"}
sealed = json.loads(call("POST", "/api/stacks/bench/app/prod/encrypt", body, auth))["ciphertext"]
sealed_body = json.dumps({"ciphertext": sealed})

rows = {
    "GET /healthz": lambda: call("GET", "/healthz"),
    "stack encrypt 1 KiB": lambda: call("POST", "/api/stacks/bench/app/prod/encrypt", body, auth),
    "stack decrypt 1 KiB": lambda: call("POST", "/api/stacks/bench/app/prod/decrypt", sealed_body, auth),
}
for name, f in rows.items():
    for _ in range(200):
        f()
    subprocess.run(["callgrind_control", "--zero", pid], check=True, capture_output=True)
    for _ in range(n):
        f()
    subprocess.run(["callgrind_control", "--dump", pid], check=True, capture_output=True)
    newest = max(glob.glob(work + "/cg.*.out.*"), key=os.path.getmtime)
    total = next(int(l.split()[1]) for l in open(newest) if l.startswith(("summary:", "totals:")))
    print(f"{name:<22} {total / n:>10,.0f} instructions per request ({n} requests)")
PY
