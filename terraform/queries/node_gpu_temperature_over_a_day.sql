-- One node's GPU temperatures over a day, per GPU, from dcgm-exporter's
-- DCGM_FI_DEV_GPU_TEMP (degrees C). Row groups are sorted by metric and
-- node, so the metric and node filters skip most of each file.
SELECT "time", labels['gpu'] AS gpu, value AS celsius
FROM compacted
WHERE dt = '2026-11-23'
  AND metric = 'DCGM_FI_DEV_GPU_TEMP'
  AND node = 'gpu-node-0042'
ORDER BY "time", gpu
