-- wrk script of the capacity pass of `make bench` (benchmarks/capacity.py writes the plan).
--
-- BENCH_WRK_PLAN names a Lua file returning
--   { run = "<unique per round>", mode = "reserve" | "browse", tokens = { "<jwt>", ... },
--     targets = { { "<event id>", "<ticket type id>" }, ... }, browse = { "<event id>", ... } }
-- "reserve": every request reserves one seat of a random target, as the next prepared user
-- (tokens rotate), with an Idempotency-Key never used before.
-- "browse": seven requests per cycle, as the Locust Browse scenario: the event list twice, an
-- event's detail and ticket types twice, a reservation on one of the targets once.
-- When wrk finishes, one line `BENCH_JSON {...}` gives the answers counted by status, the
-- duration, wrk's socket errors and latency percentiles (microseconds).

local plan = dofile(os.getenv("BENCH_WRK_PLAN"))
local threads = {}

function setup(thread)
  thread:set("id", #threads + 1)
  threads[#threads + 1] = thread
end

function init(args)
  n = 0
  statuses = {}
  bodies = {}
  for i, target in ipairs(plan.targets) do
    bodies[i] = '{"ticket_type_id":"' .. target[2] .. '","quantity":1}'
  end
  math.randomseed(id * 1000003 + os.time())
end

local function reserve()
  local i = math.random(#plan.targets)
  local token = plan.tokens[(n + 31 * id) % #plan.tokens + 1]
  return wrk.format("POST", "/api/v1/events/" .. plan.targets[i][1] .. "/registrations", {
    ["Authorization"] = "Bearer " .. token,
    ["Idempotency-Key"] = plan.run .. "-" .. id .. "-" .. n,
    ["Content-Type"] = "application/json",
  }, bodies[i])
end

local function browse()
  local step = n % 7
  if step == 0 or step == 3 then
    return wrk.format("GET", "/api/v1/events?limit=20")
  end
  if step == 6 then
    return reserve()
  end
  local event = plan.browse[math.random(#plan.browse)]
  if step == 1 or step == 4 then
    return wrk.format("GET", "/api/v1/events/" .. event)
  end
  return wrk.format("GET", "/api/v1/events/" .. event .. "/ticket-types")
end

function request()
  n = n + 1
  if plan.mode == "browse" then
    return browse()
  end
  return reserve()
end

function response(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
end

function done(summary, latency, requests)
  local total = {}
  for _, thread in ipairs(threads) do
    for status, count in pairs(thread:get("statuses")) do
      total[status] = (total[status] or 0) + count
    end
  end
  local parts = {}
  for status, count in pairs(total) do
    parts[#parts + 1] = string.format('"%d":%d', status, count)
  end
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"duration_us":%d,"requests":%d,"connect_errors":%d,"read_errors":%d,' ..
    '"write_errors":%d,"timeouts":%d,"p50_us":%d,"p99_us":%d,"statuses":{%s}}\n',
    summary.duration, summary.requests, e.connect, e.read, e.write, e.timeout,
    latency:percentile(50), latency:percentile(99), table.concat(parts, ",")))
end
