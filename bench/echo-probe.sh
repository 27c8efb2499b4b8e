# Sourced by the load scripts: builds and starts bench/echo-probe (a bare axum server: `GET /healthz`, and `/echo`
# answering a JSON field of the request with the same text) on a free loopback port. Its rows give the ceiling of
# a JSON call of a given size on the HTTP stack Sesame uses, next to that stack's bare GET, in the same run.
# Needs: free_port and wait_for from the sourcing script; sets probe (its URL) and probe_pid.
probe_target="${PEERS:-$HOME/.cache/sesame-peers}/echo-probe-target"
CARGO_TARGET_DIR="$probe_target" nice -n 10 cargo build --release --locked --quiet \
  --manifest-path bench/echo-probe/Cargo.toml
probe_port="$(free_port)"
probe="http://127.0.0.1:$probe_port"
"$probe_target/release/echo-probe" "$probe_port" >"$work/probe.log" 2>&1 &
probe_pid=$!
wait_for "$probe/healthz" "$work/probe.log"
