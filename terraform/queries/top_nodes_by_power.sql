-- The ten nodes that drew the most GPU power over a day: the mean of each
-- GPU's DCGM_FI_DEV_POWER_USAGE (W), summed over the node's GPUs.
SELECT node, round(sum(gpu_watts), 1) AS node_watts, count(*) AS gpus
FROM (
  SELECT node, labels['gpu'] AS gpu, avg(value) AS gpu_watts
  FROM compacted
  WHERE dt = '2026-11-23'
    AND metric = 'DCGM_FI_DEV_POWER_USAGE'
  GROUP BY node, labels['gpu']
) AS per_gpu
GROUP BY node
ORDER BY node_watts DESC, node
LIMIT 10
