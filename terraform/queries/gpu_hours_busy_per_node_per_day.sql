-- GPU-hours busy per node and day over the last 90 days, from the 1-hour
-- rollups (closed days only: the current day is not in rollups_1h).
-- A GPU-hour counts its mean utilisation ("sum" / "count" of the hour's
-- samples) divided by 100: a GPU at 50% for an hour is half a GPU-hour
-- busy, and an hour with samples counts whole. Both sources: dcgm-exporter's
-- DCGM_FI_DEV_GPU_UTIL and the agent's NVML gpu_utilization_percent, per
-- GPU by its `gpu` label (index on the node; UUID where it is missing); a
-- GPU-hour reported by both counts once, by dcgm-exporter's field (the
-- least metric name). The dt predicate prunes the projected partitions.
SELECT node, dt,
       count(DISTINCT gpu) AS gpus,
       count(*) AS gpu_hours,
       sum(mean_utilization) / 100 AS gpu_hours_busy
FROM (
  SELECT node, dt,
         coalesce(element_at(labels, 'gpu'), element_at(labels, 'UUID')) AS gpu,
         interval_start,
         min_by("sum" / "count", metric) AS mean_utilization
  FROM rollups_1h
  WHERE dt >= date_format(current_date - interval '90' day, '%Y-%m-%d')
    AND metric IN ('DCGM_FI_DEV_GPU_UTIL', 'gpu_utilization_percent')
  GROUP BY node, dt, coalesce(element_at(labels, 'gpu'), element_at(labels, 'UUID')), interval_start
) AS per_gpu_hour
GROUP BY node, dt
ORDER BY node, dt
