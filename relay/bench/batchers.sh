#!/usr/bin/env bash
# Stored points/s and durable ack latency of one relay with the Parquet sink
# on a local directory, pinned to some cores, fed by telemetry-loadgen (which
# is not pinned: it shares the machine's cores with the relay).
#
#   relay/bench/batchers.sh RELAY_BIN CPUS NODES SERIES RATE SECS [EXTRA_YAML]
#
# e.g. relay/bench/batchers.sh target/release/telemetry-relay 0 100 1000 3000000 12
#      relay/bench/batchers.sh target/release/telemetry-relay 0,1 100 100 50000 20
#      relay/bench/batchers.sh target/release/telemetry-relay 0,1 100 1000 3000000 12 \
#          '  debug_put_latency_ms: 50'
#
# EXTRA_YAML goes under `parquet:`. Prints one line: the stored points/s over
# the sending window from its 2nd second to its end (points_written_total
# scraped from the relay), the relay's CPU seconds per stored point over the
# whole run, the load generator's acked points and ack latency, and the load
# average. Needs LOADGEN (default target/release/telemetry-loadgen).
set -euo pipefail
relay_bin=$1 cpus=$2 nodes=$3 series=$4 rate=$5 secs=$6 extra=${7:-}
loadgen=${LOADGEN:-target/release/telemetry-loadgen}
work=$(mktemp -d /tmp/batchers-bench.XXXXXX)
port=$((20000 + RANDOM % 10000)) mport=$((30000 + RANDOM % 10000))
cat > "$work/relay.yaml" <<YAML
server:
  listen_addr: "127.0.0.1:$port"
security:
  dev_certs_dir: "$work/certs"
observability:
  metrics_port: $mport
  log_level: warn
parquet:
  output_dir: "$work/objects"
$extra
YAML
taskset -c "$cpus" "$relay_bin" "$work/relay.yaml" > "$work/relay.log" 2>&1 &
relay=$!
trap 'kill $relay 2>/dev/null || true; wait $relay 2>/dev/null || true; rm -rf "$work"' EXIT
for _ in $(seq 100); do
  curl -sf "localhost:$mport/readyz" > /dev/null && break
  sleep 0.1
done
written() { curl -s "localhost:$mport/metrics" | awk '/^horizon_relay_points_written_total /{print $2}'; }
ticks() { awk '{print $14 + $15}' "/proc/$relay/stat"; }
cpu0=$(ticks)
"$loadgen" --addr "127.0.0.1:$port" --dev-certs "$work/certs" --nodes "$nodes" --series "$series" \
  --rate "$rate" --duration "$secs" --json > "$work/loadgen.json" &
gen=$!
sleep 2
w0=$(written); t0=$(date +%s.%N)
sleep $((secs - 2))
w1=$(written); t1=$(date +%s.%N)
wait $gen
sleep 1
w2=$(written); cpu1=$(ticks)
hz=$(getconf CLK_TCK)
python3 - "$work/loadgen.json" "$w0" "$w1" "$t0" "$t1" "$w2" "$cpu0" "$cpu1" "$hz" "$(cut -d' ' -f1-3 /proc/loadavg)" "$cpus" <<'PY'
import json, sys
g = json.load(open(sys.argv[1]))
w0, w1, t0, t1, w2, c0, c1, hz = map(float, sys.argv[2:10])
lat = g["ack_latency_ms"]
print(f"cpus={sys.argv[11]} stored/s={(w1 - w0) / (t1 - t0):,.0f} stored={w2:,.0f} "
      f"cpu_us_per_point={(c1 - c0) / hz / max(w2, 1) * 1e6:.2f} acked={g['points_acked']:,} "
      f"unacked={g['points_unacked']} ack_p50={lat['p50']:.0f}ms ack_p99={lat['p99']:.0f}ms "
      f"load={sys.argv[10]}")
PY
