#!/usr/bin/env bash
# Soak benchmark: one relay (defaults: durable acks to a local directory),
# AGENTS load-generator nodes connected for SECS seconds at RATE points/s in
# all; the relay's RSS is sampled every 10 s. Prints the samples and the
# slope of a least-squares line through those after the first minute
# (warm-up), in MiB per hour.
#
#   BIN_DIR=target/debug bash infra/fleet/soak.sh              # 1000 agents, 600 s
#   AGENTS=100 SECS=120 bash infra/fleet/soak.sh
#
# Writes into DEV_DIR (default .dev/soak; the development PKI in DEV_DIR/certs).
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
bin="${BIN_DIR:-$root/target/release}"
agents=${AGENTS:-1000}
secs=${SECS:-600}
rate=${RATE:-20000}
dev="${DEV_DIR:-$root/.dev/soak}"
rm -rf "$dev"
mkdir -p "$dev"
cat >"$dev/relay.yaml" <<CONF
server:
  listen_addr: "127.0.0.1:5301"
  max_connections: $((agents + 100))
security:
  dev_certs_dir: "$dev/certs"
parquet:
  output_dir: "$dev/objects"
observability:
  metrics_port: 9301
  metrics_bind: 127.0.0.1
CONF
"$bin/telemetry-relay" "$dev/relay.yaml" >"$dev/relay.log" 2>&1 &
relay=$!
trap 'kill $relay 2>/dev/null; wait 2>/dev/null || true' EXIT INT TERM
for _ in $(seq 100); do
    curl -fsS -o /dev/null 127.0.0.1:9301/readyz 2>/dev/null && break
    sleep 0.1
done
"$bin/telemetry-loadgen" --addr 127.0.0.1:5301 --dev-certs "$dev/certs" --nodes "$agents" \
    --series 20 --rate "$rate" --duration "$secs" >"$dev/loadgen.txt" 2>"$dev/loadgen.log" &
load=$!
start=$(date +%s)
echo "t_s,rss_mib,connections" >"$dev/rss.csv"
while kill -0 "$load" 2>/dev/null; do
    t=$(($(date +%s) - start))
    rss=$(awk '/^VmRSS:/{printf "%.1f", $2/1024}' "/proc/$relay/status")
    conns=$(curl -fsS -m 2 127.0.0.1:9301/metrics | awk '/^horizon_relay_connections_active /{print $2}')
    echo "$t,$rss,${conns:-0}" >>"$dev/rss.csv"
    sleep 10
done
wait "$load" || true
cat "$dev/loadgen.txt"
python3 - "$dev/rss.csv" <<'PY'
import csv, sys
rows = [(float(r["t_s"]), float(r["rss_mib"]), float(r["connections"])) for r in csv.DictReader(open(sys.argv[1]))]
print("samples (s, RSS MiB, connections):", " ".join(f"{t:.0f}:{m:.0f}:{c:.0f}" for t, m, c in rows))
steady = [(t, m) for t, m, _ in rows if t >= 60]
if len(steady) >= 3:
    n = len(steady)
    mt = sum(t for t, _ in steady) / n
    mm = sum(m for _, m in steady) / n
    slope = sum((t - mt) * (m - mm) for t, m in steady) / sum((t - mt) ** 2 for t, _ in steady)
    print(f"after the first minute: {n} samples, RSS {min(m for _, m in steady):.1f} to {max(m for _, m in steady):.1f} MiB, "
          f"slope {slope * 3600:.1f} MiB per hour")
PY
