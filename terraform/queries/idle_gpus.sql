-- Idle GPUs: per day over the last 90 days, the GPUs whose utilisation
-- stayed under 5% all day, that is whose every sample that day was below
-- 5 (the day's greatest "max" < 5; a mean under 5% is not enough: one busy
-- minute makes a GPU not idle). hours_reported says how many of the day's
-- hours had samples (24 for a GPU seen all day); mean_utilization is the
-- day's mean. Both sources: dcgm-exporter's DCGM_FI_DEV_GPU_UTIL and the
-- agent's NVML gpu_utilization_percent, per GPU by its `gpu` label (UUID
-- where it is missing), from the 1-hour rollups (closed days).
SELECT node,
       coalesce(element_at(labels, 'gpu'), element_at(labels, 'UUID')) AS gpu,
       dt,
       count(DISTINCT interval_start) AS hours_reported,
       max("max") AS peak_utilization,
       sum("sum") / sum("count") AS mean_utilization
FROM rollups_1h
WHERE dt >= date_format(current_date - interval '90' day, '%Y-%m-%d')
  AND metric IN ('DCGM_FI_DEV_GPU_UTIL', 'gpu_utilization_percent')
GROUP BY node, coalesce(element_at(labels, 'gpu'), element_at(labels, 'UUID')), dt
HAVING max("max") < 5
ORDER BY dt, node, gpu
