-- The peak temperature (degrees C) of each GPU per day over the last 90
-- days, from the 1-hour rollups: the greatest "max" of the day's hours.
-- Both sources: dcgm-exporter's DCGM_FI_DEV_GPU_TEMP and the agent's NVML
-- gpu_temperature_celsius, per GPU by its `gpu` label (UUID where it is
-- missing). The dt predicate prunes the projected partitions.
SELECT node,
       coalesce(element_at(labels, 'gpu'), element_at(labels, 'UUID')) AS gpu,
       dt,
       max("max") AS peak_celsius
FROM rollups_1h
WHERE dt >= date_format(current_date - interval '90' day, '%Y-%m-%d')
  AND metric IN ('DCGM_FI_DEV_GPU_TEMP', 'gpu_temperature_celsius')
GROUP BY node, coalesce(element_at(labels, 'gpu'), element_at(labels, 'UUID')), dt
ORDER BY node, gpu, dt
