-- wrk script for Star Map benchmarks: the path comes from WRK_PATH ("{id}" becomes a
-- random star id s1..sSTARS), the method from WRK_METHOD; with WRK_KEYED=1 every POST
-- carries a fresh Idempotency-Key (as the page sends); done() prints one JSON line
-- (prefixed "JSON") that ops/bench/bench.py reads.
local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  ok, bad, not_modified = 0, 0, 0
  path = os.getenv("WRK_PATH") or "/"
  method = os.getenv("WRK_METHOD") or "GET"
  stars = tonumber(os.getenv("STARS") or "1000")
  keyed = os.getenv("WRK_KEYED") == "1"
  -- WRK_HEADER="Name: value": one more header on every GET (say, If-None-Match)
  extra = {}
  local header = os.getenv("WRK_HEADER") or ""
  local name, value = header:match("^([^:]+):%s*(.*)$")
  if name then extra[name] = value end
  math.randomseed(os.time() + (tonumber(tostring({}):sub(8)) or 0))
end

function request()
  local p = path:gsub("{id}", "s" .. math.random(1, stars))
  if method == "POST" then  -- writes are JSON, as the API requires (an empty object: a plain like)
    local headers = { ["Content-Type"] = "application/json" }
    if keyed then
      headers["Idempotency-Key"] = string.format("%08x-%08x-%08x-%08x", math.random(0, 0x7fffffff),
        math.random(0, 0x7fffffff), math.random(0, 0x7fffffff), math.random(0, 0x7fffffff))
    end
    return wrk.format(method, p, headers, "{}")
  end
  return wrk.format(method, p, extra)
end

function response(status, headers, body)
  if status >= 200 and status < 300 then ok = ok + 1 else bad = bad + 1 end
  if status == 304 then not_modified = not_modified + 1 end
end

function done(summary, latency, requests)
  local ok_total, bad_total, nm_total = 0, 0, 0
  for _, t in ipairs(threads) do
    ok_total = ok_total + t:get("ok")
    bad_total = bad_total + t:get("bad")
    nm_total = nm_total + t:get("not_modified")
  end
  local e = summary.errors
  io.write(string.format(
    'JSON{"requests":%d,"seconds":%.3f,"ok":%d,"non_2xx":%d,"not_modified":%d,"socket_errors":%d,' ..
    '"p50_ms":%.3f,"p90_ms":%.3f,"p99_ms":%.3f,"mean_ms":%.3f}\n',
    summary.requests, summary.duration / 1e6, ok_total, bad_total, nm_total,
    e.connect + e.read + e.write + e.timeout,
    latency:percentile(50) / 1000, latency:percentile(90) / 1000, latency:percentile(99) / 1000,
    latency.mean / 1000))
end
