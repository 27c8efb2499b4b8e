#!/usr/bin/env bash
# KEK migration speed toward AWS KMS as moto emulates it: local://default -> awskms://… for each concurrency given.
# Usage: bench/migrate-moto.sh [deks] [concurrency ...]        (default: 2000 DEKs at concurrency 1 and 16)
# Each run: a fresh instance with `deks` stacks (one DEK each), `kek add awskms://alias/…` against moto, then the
# migration (`--migration-concurrency N`, batches of 256), timed from its start to `done` by polling every 20 ms.
# Needs: python3, moto_server (SESAME_TEST_MOTO_SERVER or on PATH). Builds target/release/sesame with `aws`.
set -euo pipefail
cd "$(dirname "$0")/.."
deks="${1:-2000}"
shift || true
[ $# -gt 0 ] || set -- 1 16
cargo build --release --locked --features aws --bin sesame
bin="${CARGO_TARGET_DIR:-target}/release/sesame"
moto="${SESAME_TEST_MOTO_SERVER:-moto_server}"
exec python3 - "$bin" "$moto" "$deks" "$@" <<'PY'
import base64, http.client, json, os, shutil, signal, socket, subprocess, sys, tempfile, time

bin, moto, deks, concurrencies = sys.argv[1], sys.argv[2], int(sys.argv[3]), [int(c) for c in sys.argv[4:]]

def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]

def request(conn, method, path, body=None, token=None):
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"token {token}"
    conn.request(method, path, body=json.dumps(body) if body is not None else None, headers=headers)
    r = conn.getresponse()
    raw = r.read()
    try:
        return r.status, json.loads(raw)
    except ValueError:
        return r.status, raw

work = tempfile.mkdtemp()
moto_port = free_port()
moto_p = subprocess.Popen([moto, "-H", "127.0.0.1", "-p", str(moto_port)],
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
env = {**os.environ, "SESAME_LOG": "warn", "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}
try:
    while True:
        try:
            socket.create_connection(("127.0.0.1", moto_port)).close()
            break
        except OSError:
            time.sleep(0.1)
    for c in concurrencies:
        data, port = os.path.join(work, f"data-c{c}"), free_port()
        p = subprocess.Popen([bin, "serve", "--listen", f"127.0.0.1:{port}", "--data-dir", data,
                              "--migration-concurrency", str(c)],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
        try:
            while True:
                assert p.poll() is None, "sesame serve exited"
                try:
                    conn = http.client.HTTPConnection("127.0.0.1", port)
                    if request(conn, "GET", "/healthz")[0] == 200:
                        break
                except OSError:
                    time.sleep(0.02)
            token = open(os.path.join(data, "admin.token")).read().strip()
            for i in range(deks):
                st, body = request(conn, "POST", f"/api/stacks/default/mig/s{i}/encrypt", {"plaintext": "eA=="}, token)
                assert st == 200, body
            uri = f"awskms://alias/sesame-bench-c{c}?region=eu-west-1&endpoint=http://127.0.0.1:{moto_port}"
            st, body = request(conn, "POST", "/api/sesame/v1/keks", {"uri": uri}, token)
            assert st == 201, body
            t0 = time.perf_counter()
            st, job = request(conn, "POST", "/api/sesame/v1/kek-migrations",
                              {"from": "local://default", "to": uri}, token)
            assert st == 202, job
            while True:
                st, m = request(conn, "GET", f"/api/sesame/v1/kek-migrations/{job['id']}", token=token)
                if m["state"] != "running":
                    break
                time.sleep(0.02)
            took = time.perf_counter() - t0
            assert m["state"] == "done" and m["migrated"] == m["total"], m
            t1 = time.perf_counter()
            st, v = request(conn, "POST", f"/api/sesame/v1/kek-migrations/{job['id']}/verify", {}, token)
            assert st == 200 and v["failed"] == 0, v
            vtook = time.perf_counter() - t1
            print(f"concurrency {c:>2}: {m['total']} DEKs migrated in {took:.2f} s = {m['total'] / took:,.0f} DEKs/s "
                  f"(2 KMS calls each); verify {v['checked'] / vtook:,.0f} DEKs/s (1 KMS call each, 16 in flight)")
        finally:
            p.send_signal(signal.SIGTERM)
            p.wait()
finally:
    moto_p.terminate()
    moto_p.wait()
    shutil.rmtree(work, ignore_errors=True)
PY
