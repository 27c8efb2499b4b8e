#!/usr/bin/env bash
# Cold start to first unwrap: the time from spawning `sesame serve` on an existing data folder to the first
# successful /decrypt (store opened, every KEK checked, the stack's DEK read and unwrapped: nothing cached).
# Usage: bench/cold-start.sh [runs] [stacks]
# Makes a fresh instance with `stacks` stacks (one DEK each) first, then starts it `runs` times (SIGTERM between).
# Needs: python3. Builds target/release/sesame if missing.
set -euo pipefail
cd "$(dirname "$0")/.."
runs="${1:-10}"
stacks="${2:-1000}"
bin="${CARGO_TARGET_DIR:-target}/release/sesame"
[ -x "$bin" ] || cargo build --release --locked --bin sesame
exec python3 - "$bin" "$runs" "$stacks" <<'PY'
import base64, http.client, json, os, shutil, signal, socket, statistics, subprocess, sys, tempfile, time

bin, runs, stacks = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
work = tempfile.mkdtemp()
data = os.path.join(work, "data")
with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]

def serve():
    return subprocess.Popen([bin, "serve", "--listen", f"127.0.0.1:{port}", "--data-dir", data],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env={**os.environ, "SESAME_LOG": "warn"})

def request(conn, method, path, body=None, token=None):
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"token {token}"
    conn.request(method, path, body=json.dumps(body) if body is not None else None, headers=headers)
    r = conn.getresponse()
    return r.status, r.read()

def stop(p):
    p.send_signal(signal.SIGTERM)
    p.wait()

try:
    p = serve()
    while True:
        assert p.poll() is None, "sesame serve exited"
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port)
            if request(conn, "GET", "/healthz")[0] == 200:
                break
        except OSError:
            time.sleep(0.01)
    token = open(os.path.join(data, "admin.token")).read().strip()
    secret = base64.b64encode(b"cold-start").decode()
    cts = []
    for i in range(stacks):
        st, body = request(conn, "POST", f"/api/stacks/default/cold/s{i}/encrypt", {"plaintext": secret}, token)
        assert st == 200, body
        cts.append(json.loads(body)["ciphertext"])
    stop(p)
    print(f"instance with {stacks} stacks (DEKs); {runs} cold starts, each decrypting a different stack's secret")
    times = []
    for r in range(runs):
        i = (r * 7919) % stacks
        t0 = time.perf_counter()
        p = serve()
        while True:
            assert p.poll() is None, "sesame serve exited"
            try:
                conn = http.client.HTTPConnection("127.0.0.1", port)
                st, body = request(conn, "POST", f"/api/stacks/default/cold/s{i}/decrypt", {"ciphertext": cts[i]}, token)
                if st == 200:
                    assert json.loads(body)["plaintext"] == secret
                    break
            except OSError:
                pass
            time.sleep(0.001)
        times.append((time.perf_counter() - t0) * 1000)
        conn.close()
        stop(p)
    print("runs (ms): " + ", ".join(f"{t:.1f}" for t in times))
    print(f"spawn -> first successful /decrypt: median {statistics.median(times):.1f} ms, "
          f"min {min(times):.1f} ms, max {max(times):.1f} ms")
finally:
    shutil.rmtree(work, ignore_errors=True)
PY
