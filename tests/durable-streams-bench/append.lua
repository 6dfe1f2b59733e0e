-- wrk script for scripts/durable-streams-bench.sh: every request POSTs the same 64-byte
-- text/plain body to /v1/stream/{STEM}{n}, where n is the thread's number modulo
-- STREAMS (run with as many threads as connections: STREAMS=1 puts every connection
-- on one stream, STREAMS=16 with -t16 -c16 gives each connection a stream of its own).
-- The request is static per thread (no request() function), so wrk builds it once.
-- done() prints one JSON line, prefixed "RESULT ", for the report.
--
--   wrk -t16 -c16 -d10s -s append.lua http://127.0.0.1:PORT -- STEM STREAMS

local counter = 0

function setup(thread)
  thread:set("number", counter)
  counter = counter + 1
end

function init(args)
  local stem = args[1] or "bench"
  local streams = tonumber(args[2] or "1")
  wrk.method = "POST"
  wrk.path = "/v1/stream/" .. stem .. (number % streams)
  wrk.headers["Content-Type"] = "text/plain"
  wrk.body = string.rep("0123456789abcdef", 4) -- 64 bytes
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'RESULT {"requests":%d,"duration_us":%d,"bytes":%d,"non_2xx":%d,"connect_errors":%d,' ..
    '"read_errors":%d,"write_errors":%d,"timeouts":%d,"latency_p50_us":%d,' ..
    '"latency_p99_us":%d,"latency_max_us":%d}\n',
    summary.requests, summary.duration, summary.bytes, e.status, e.connect, e.read,
    e.write, e.timeout, latency:percentile(50), latency:percentile(99), latency.max))
end
