-- Each request takes the next line of a file: "METHOD PATH [TOKEN [BODY]]".
-- Usage: wrk -s lines.lua URL -- FILE
local lines, i = {}, 0

init = function(args)
  for line in io.lines(args[1]) do lines[#lines + 1] = line end
end

request = function()
  i = i + 1
  local method, path, token, body = lines[(i - 1) % #lines + 1]:match("^(%S+) (%S+) ?(%S*) ?(.*)$")
  local headers = {}
  if token ~= "" and token ~= "-" then headers["Authorization"] = "Bearer " .. token end
  if method == "POST" then
    headers["Content-Type"] = "application/json"
    headers["Idempotency-Key"] = "bench-" .. tostring(os.time()) .. "-" .. i
  end
  return wrk.format(method, path, headers, body ~= "" and body or nil)
end

-- Print one JSON line of figures when wrk is done.
done = function(summary, latency, requests)
  local seconds = summary.duration / 1e6
  io.write(string.format(
    '{"requests": %d, "rps": %.1f, "p50_ms": %.2f, "p95_ms": %.2f, "p99_ms": %.2f, ' ..
    '"non_2xx": %d, "socket_errors": %d}\n',
    summary.requests, summary.requests / seconds,
    latency:percentile(50) / 1000, latency:percentile(95) / 1000, latency:percentile(99) / 1000,
    summary.errors.status,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout))
end
