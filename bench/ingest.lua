-- wrk script of `cargo xtask bench ingest`: pre-signed, distinct Plane deliveries.
--
-- Usage: wrk -t T -c C -d D -s ingest.lua URL -- PREFIX
-- Thread i sends the lines of PREFIX-i.tsv in order, each line being
-- "delivery id <TAB> signature <TAB> event <TAB> body" (bodies are single-line JSON); the
-- requests are formatted once, before the clock starts. Without PREFIX every request is a
-- plain GET of URL (the /healthz floor). A thread that has sent all its lines starts over
-- (which would send duplicates) and says so in `wrapped`: the bench then fails the figure.
-- At the end, one line for the bench to read:
-- RESULT requests=N seconds=S p50_us=N p99_us=N max_us=N errors=N wrapped=N status_202=N ...

local threads = {}
local next_id = 0

function setup(thread)
   thread:set("id", next_id)
   next_id = next_id + 1
   table.insert(threads, thread)
end

function init(args)
   statuses = {}
   wrapped = 0
   local prefix = args[1]
   if prefix == nil then
      return
   end
   requests = {}
   local count = 0
   for line in io.lines(prefix .. "-" .. id .. ".tsv") do
      local delivery, signature, event, body = line:match("^([^\t]*)\t([^\t]*)\t([^\t]*)\t(.*)$")
      count = count + 1
      requests[count] = wrk.format("POST", nil, {
         ["Content-Type"] = "application/json",
         ["User-Agent"] = "Autopilot",
         ["X-Plane-Delivery"] = delivery,
         ["X-Plane-Event"] = event,
         ["X-Plane-Signature"] = signature,
      }, body)
   end
   next_request = 1
   request = function()
      local formatted = requests[next_request]
      next_request = next_request + 1
      if next_request > count then
         next_request = 1
         wrapped = wrapped + 1
      end
      return formatted
   end
end

function response(status, headers, body)
   local key = "status_" .. status
   statuses[key] = (statuses[key] or 0) + 1
end

function done(summary, latency, requests)
   local counts = {}
   local wraps = 0
   for _, thread in ipairs(threads) do
      wraps = wraps + thread:get("wrapped")
      for key, value in pairs(thread:get("statuses")) do
         counts[key] = (counts[key] or 0) + value
      end
   end
   local errors = summary.errors
   local line = string.format(
      "RESULT requests=%d seconds=%.6f p50_us=%d p99_us=%d max_us=%d errors=%d wrapped=%d",
      summary.requests, summary.duration / 1e6, latency:percentile(50), latency:percentile(99),
      latency.max, errors.connect + errors.read + errors.write + errors.timeout, wraps)
   for key, value in pairs(counts) do
      line = line .. string.format(" %s=%d", key, value)
   end
   io.write(line .. "\n")
end
