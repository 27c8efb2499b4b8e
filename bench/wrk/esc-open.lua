-- wrk script: ESC open + read pairs against one environment. Needs $SESAME_TOKEN and $ENV_PATH
-- (e.g. /api/esc/environments/bench/bench/app). Optional $MODE: "pair" (default), "open" (POST open only) or
-- "read" (GET open/{id} only, cycling through $SESSION_IDS, a comma-separated list of session ids made beforehand)
-- or "eso" (External Secrets Operator's pattern: like "pair", but each session is read for one value,
-- `GET …/open//{id}?property=$PROPERTY`, the double slash as the SDK sends it).
--
-- In "pair" mode each wrk thread keeps a queue of fresh session ids: a request is a GET of the oldest unread id when
-- there is one, otherwise a POST open; each POST answer's id is pushed. So every session is opened once and read
-- once (GETs never outnumber POSTs; at most the ids still queued at the end go unread). wrk's Lua state is per thread
-- and does not say which connection an answer came on, so wrk's latency figures are over both kinds together; the
-- "open" and "read" modes give each kind's own latency.
--
-- Any non-2xx answer is counted; the first one per thread is kept (request line, status, body) and printed by done().

local env_path = assert(os.getenv("ENV_PATH"), "ENV_PATH")
local mode = os.getenv("MODE") or "pair"
local token = "token " .. assert(os.getenv("SESAME_TOKEN"), "SESAME_TOKEN")
local open_path = env_path .. "/open?duration=" .. (os.getenv("DURATION") or "1h")
local property = os.getenv("PROPERTY") or "ref01"
local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

-- Per-thread state (each wrk thread runs its own copy of this script).
opens, reads, bad, bad_ids = 0, 0, 0, 0
first_error = ""
local queue, head, tail = {}, 1, 0
local ids, next_id = {}, 1
local last_kind = {}  -- kinds of requests in flight, only used to name a failing request

function init(args)
  if mode == "read" then
    for id in string.gmatch(assert(os.getenv("SESSION_IDS"), "SESSION_IDS"), "[^,]+") do
      table.insert(ids, id)
    end
    assert(#ids > 0, "SESSION_IDS is empty")
  end
end

local function get_req(id)
  local path = env_path .. "/open/" .. id
  if mode == "eso" then
    path = env_path .. "/open//" .. id .. "?property=" .. property
  end
  last_kind[#last_kind + 1] = "GET " .. path
  return wrk.format("GET", path, { ["Authorization"] = token })
end

local function post_req()
  last_kind[#last_kind + 1] = "POST " .. open_path
  return wrk.format("POST", open_path, { ["Authorization"] = token, ["Content-Length"] = "0" })
end

function request()
  if mode == "open" then
    return post_req()
  elseif mode == "read" then
    local id = ids[next_id]
    next_id = next_id % #ids + 1
    return get_req(id)
  end
  if head <= tail then
    local id = queue[head]
    queue[head] = nil
    head = head + 1
    return get_req(id)
  end
  return post_req()
end

function response(status, headers, body)
  -- The answers tell the kinds apart: an open answers {"id":…}, a read {"properties":…}.
  local id = body and body:match('^%s*{%s*"id"%s*:%s*"([^"]+)"')
  if status >= 200 and status < 300 then
    if id then
      opens = opens + 1
      if mode == "pair" or mode == "eso" then
        tail = tail + 1
        queue[tail] = id
      end
    elseif body and body:find('"properties"', 1, true) then
      reads = reads + 1
    elseif mode == "eso" and body and body:find('"value"', 1, true) then
      reads = reads + 1
    else
      bad_ids = bad_ids + 1
      if first_error == "" then
        first_error = "unrecognised 2xx answer " .. status .. ": " .. string.sub(body or "", 1, 400)
      end
    end
  else
    bad = bad + 1
    if first_error == "" then
      -- Which request failed is not known exactly (see above); name the most recent ones sent on this thread.
      first_error = string.format("status %d to one of [%s]: %s", status,
        table.concat(last_kind, " | ", math.max(1, #last_kind - 1)), string.sub(body or "", 1, 800))
    end
  end
  if #last_kind > 64 then last_kind = {} end
end

done = function(summary, latency, requests)
  local o, r, b, u = 0, 0, 0, 0
  local errs = {}
  for _, t in ipairs(threads) do
    o = o + t:get("opens")
    r = r + t:get("reads")
    b = b + t:get("bad")
    u = u + t:get("bad_ids")
    local e = t:get("first_error")
    if e ~= "" then table.insert(errs, e) end
  end
  local secs = summary.duration / 1e6
  io.write(string.format("mode %s: %d requests in %.2f s = %.1f req/s; opens %d (%.1f/s), reads %d (%.1f/s), pairs %.1f/s\n",
    mode, summary.requests, secs, summary.requests / secs, o, o / secs, r, r / secs, math.min(o, r) / secs))
  io.write(string.format("latency (all requests): p50 %.2f ms, p90 %.2f ms, p99 %.2f ms, max %.2f ms\n",
    latency:percentile(50) / 1000, latency:percentile(90) / 1000, latency:percentile(99) / 1000, latency.max / 1000))
  io.write(string.format("errors: connect %d, read %d, write %d, status %d, timeout %d; non-2xx answers %d, unrecognised 2xx %d\n",
    summary.errors.connect, summary.errors.read, summary.errors.write, summary.errors.status,
    summary.errors.timeout, b, u))
  for _, e in ipairs(errs) do io.write("first error on a thread: " .. e .. "\n") end
  -- One machine-readable line for the driver script.
  io.write(string.format("RESULT mode=%s requests=%d secs=%.3f opens=%d reads=%d bad=%d p50_ms=%.3f p99_ms=%.3f errors=%d\n",
    mode, summary.requests, secs, o, r, b + u, latency:percentile(50) / 1000, latency:percentile(99) / 1000,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.status + summary.errors.timeout))
end
