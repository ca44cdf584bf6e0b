-- wrk script: POST /analyze-request as many different users, then print the figures as one JSON line.
-- USERS (environment) is how many people the load stands for; each request comes from one of them.
local users = tonumber(os.getenv("USERS") or "50")
local token = os.getenv("SERVICE_TOKEN") or ""
local counter = 0

function init(args)
  math.randomseed(os.time() + tonumber(tostring({}):sub(8), 16) % 100000)
  counter = math.random(users)
end

function request()
  counter = counter % users + 1
  local body = '{"channel":"direct","username":"bench-' .. counter ..
    '","request":"Нужен срез авторизаций кошельков за март по дням в разрезе эквайеров"}'
  return wrk.format("POST", nil, {["Content-Type"] = "application/json", ["X-Service-Token"] = token}, body)
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRK_RESULT {"requests":%d,"duration_us":%d,"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d,' ..
    '"p50_us":%d,"p90_us":%d,"p99_us":%d,"max_us":%d}\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max))
end
