-- Points and reporting nodes per metric and hour, for one day (UTC).
-- Partition projection turns the dt filter into the day's 24 prefixes.
SELECT dt, hour, metric, count(*) AS points, count(DISTINCT node) AS nodes
FROM compacted
WHERE dt = '2026-11-23'
GROUP BY dt, hour, metric
ORDER BY dt, hour, metric
