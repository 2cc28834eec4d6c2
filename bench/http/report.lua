-- wrk script: print one JSON line with the figures bench/http/run.sh records.
-- latency percentiles in microseconds; non2xx = wrk's "Non-2xx or 3xx responses".
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '{"requests":%d,"duration_us":%d,"rps":%.1f,"non2xx":%d,"err_connect":%d,"err_read":%d,"err_write":%d,"err_timeout":%d,"socket_errors":%d,"p50_us":%d,"p90_us":%d,"p99_us":%d,"max_us":%d}\n',
    summary.requests, summary.duration, summary.requests / (summary.duration / 1e6), e.status,
    e.connect, e.read, e.write, e.timeout, e.connect + e.read + e.write + e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max))
end
