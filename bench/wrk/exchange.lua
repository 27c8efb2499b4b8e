-- wrk script: POSTs the form body in $BODY_FILE (an RFC 8693 token exchange, as the Pulumi CLI sends it) with no
-- Authorization header, and counts answers that are not 200.
local f = assert(io.open(os.getenv("BODY_FILE"), "rb"))
wrk.method = "POST"
wrk.body = f:read("*a")
f:close()
wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"

done = function(summary, latency, requests)
  io.write(string.format("errors: connect %d, read %d, write %d, status %d, timeout %d\n",
    summary.errors.connect, summary.errors.read, summary.errors.write, summary.errors.status,
    summary.errors.timeout))
  io.write(string.format("RESULT p50_ms=%.2f p99_ms=%.2f\n", latency:percentile(50) / 1000,
    latency:percentile(99) / 1000))
end
