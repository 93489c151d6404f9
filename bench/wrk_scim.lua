-- wrk script of bench_core.py. Driven by environment variables:
--   BENCH_MODE   "paths": GET a random line of BENCH_PATHS (one request path per line)
--                "post":  POST a new realistic User to BENCH_POST_PATH, unique userName each
--   BENCH_AUTH   value of the Authorization header ("" for none)
--   BENCH_RUN    a run tag that makes POSTed userNames unique across runs
--   BENCH_OUT    file that done() writes one JSON object to

local mode = os.getenv("BENCH_MODE") or "paths"
local auth = os.getenv("BENCH_AUTH") or ""
if auth ~= "" then wrk.headers["Authorization"] = auth end
wrk.headers["Accept"] = "application/scim+json"

local paths = {}
if mode == "paths" then
  for line in io.lines(os.getenv("BENCH_PATHS")) do
    if line ~= "" then paths[#paths + 1] = line end
  end
end

local threads = {}
local counter = 0

function setup(thread)
  counter = counter + 1
  thread:set("tid", counter)
  table.insert(threads, thread)
end

function init(args)
  math.randomseed(os.time() * 1000 + tid * 7919)
  statuses = {}
  created = {}
  sent = 0
end

if mode == "paths" then
  function request()
    return wrk.format("GET", paths[math.random(#paths)])
  end
else
  local run = os.getenv("BENCH_RUN") or "run"
  local post_path = os.getenv("BENCH_POST_PATH") or "/scim/v2/Users"
  local post_headers = {}
  for name, value in pairs(wrk.headers) do post_headers[name] = value end
  post_headers["Content-Type"] = "application/scim+json"
  local template = [[{"schemas":["urn:ietf:params:scim:schemas:core:2.0:User",]]
    .. [["urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"],]]
    .. [["userName":"%s","externalId":"%s",]]
    .. [["name":{"givenName":"Bench%d","familyName":"Writer%d","formatted":"Bench%d Writer%d"},]]
    .. [["displayName":"Bench%d Writer%d",]]
    .. [["emails":[{"value":"%s","type":"work","primary":true}],]]
    .. [["phoneNumbers":[{"value":"+1 555 %03d %04d","type":"work"}],]]
    .. [["active":true,]]
    .. [["urn:ietf:params:scim:schemas:extension:enterprise:2.0:User":]]
    .. [[{"department":"Dept %d","employeeNumber":"%d"}}]]

  function request()
    sent = sent + 1
    local n = tid * 10000000 + sent
    local name = string.format("bench-%s-%d-%d@example.com", run, tid, sent)
    local body = string.format(template, name, string.format("ext-%s-%d", run, n),
      n, n, n, n, n, n, name, sent % 1000, sent % 10000, sent % 50, n)
    return wrk.format("POST", post_path, post_headers, body)
  end

  function response(status, headers, body)
    statuses[status] = (statuses[status] or 0) + 1
    if status == 201 then
      local id = body:match('"id":"([^"]+)"')
      if id then created[#created + 1] = id end
    end
  end
end

function done(summary, latency, requests)
  local ids, status_parts = {}, {}
  local status_total = {}
  for _, thread in ipairs(threads) do
    local c = thread:get("created")
    if type(c) == "table" then
      for _, id in ipairs(c) do ids[#ids + 1] = '"' .. id .. '"' end
    end
    local s = thread:get("statuses")
    if type(s) == "table" then
      for code, n in pairs(s) do status_total[code] = (status_total[code] or 0) + n end
    end
  end
  for code, n in pairs(status_total) do
    status_parts[#status_parts + 1] = string.format('"%d":%d', code, n)
  end
  local e = summary.errors
  local out = io.open(os.getenv("BENCH_OUT"), "w")
  out:write(string.format(
    '{"requests":%d,"duration_us":%d,"bytes":%d,'
      .. '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},'
      .. '"latency_us":{"min":%d,"mean":%.1f,"max":%d,"p50":%d,"p90":%d,"p99":%d,"p999":%d},'
      .. '"statuses":{%s},"created":[%s]}\n',
    summary.requests, summary.duration, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency.min, latency.mean, latency.max,
    latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency:percentile(99.9), table.concat(status_parts, ","), table.concat(ids, ",")))
  out:close()
end
