-- wrk script: POSTs the JSON body in $BODY_FILE with the token in $SESAME_TOKEN.
local f = assert(io.open(os.getenv("BODY_FILE"), "rb"))
wrk.method = "POST"
wrk.body = f:read("*a")
f:close()
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "token " .. os.getenv("SESAME_TOKEN")

-- Any non-2xx answer is counted by wrk as "Non-2xx or 3xx responses"; the report below makes errors obvious.
done = function(summary, latency, requests)
  io.write(string.format("errors: connect %d, read %d, write %d, status %d, timeout %d\n",
    summary.errors.connect, summary.errors.read, summary.errors.write, summary.errors.status,
    summary.errors.timeout))
end
