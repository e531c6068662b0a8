#!/usr/bin/env bash
# Catch-up of a spooled backlog: HOURS of an 8-GPU node (dcgm-exporter
# 8 x 60 fields every second, node_exporter every 10 s) written into a spool
# by the spool_backlog example, then an agent started on it against a relay
# on this machine that has room, while it keeps scraping a dcgm-exporter
# exposition every second. Reports when the backlog is delivered (the
# agent's backlog_oldest_age_seconds below 30 s, so only fresh points wait)
# and the agent's peak RSS.
#
#   cargo build --release -p horizon-agent -p horizon-relay --examples --bins
#   bash agent/benches/catch-up.sh [HOURS]      (default 24)
set -euo pipefail
hours=${1:-24}
root=$(cd "$(dirname "$0")/../.." && pwd)
bin=${TARGET_DIR:-$root/target}/release
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

"$bin/examples/spool_backlog" "$work/spool" "$hours" 8
du -sh "$work/spool"

mkdir -p "$work/dcgm"
python3 - "$work/dcgm/metrics" <<'PY'
import sys
out = []
for f in range(60):
    name = f"DCGM_FI_DEV_FIELD_{f:02d}"
    out.append(f"# HELP {name} Field {f}.\n# TYPE {name} gauge\n")
    for g in range(8):
        out.append(f'{name}{{gpu="{g}",UUID="GPU-604ac76c-d9cf-fef3-62e9-d92044ab6e5{g}",device="nvidia{g}",modelName="NVIDIA H100 80GB HBM3",Hostname="gpu-node-1",DCGM_FI_DRIVER_VERSION="550.54.15"}} {f * 10 + g}.5\n')
open(sys.argv[1], "w").write("".join(out))
PY
dcgm_port=$(port); quic_port=$(port); relay_metrics=$(port); agent_metrics=$(port)
(cd "$work/dcgm" && exec python3 -m http.server "$dcgm_port" --bind 127.0.0.1 >/dev/null 2>&1) & pids+=($!)
cat > "$work/relay.yaml" <<YAML
server: {listen_addr: "127.0.0.1:$quic_port"}
observability: {metrics_port: $relay_metrics, metrics_bind: 127.0.0.1, log_level: warn}
YAML
(cd "$work" && exec "$bin/telemetry-relay" relay.yaml >relay.log 2>&1) & pids+=($!)
sleep 2
cat > "$work/agent.yaml" <<YAML
relay: {addr: "127.0.0.1:$quic_port", server_name: localhost}
spool: {dir: spool}
scrape:
  targets:
    - {url: "http://127.0.0.1:$dcgm_port/metrics", name: dcgm, interval_secs: 1}
observability: {metrics_addr: "127.0.0.1:$agent_metrics", log_level: warn}
YAML
start=$(date +%s.%N)
(cd "$work" && exec "$bin/telemetry-agent" agent.yaml >agent.log 2>&1) & agent=$!; pids+=($agent)
metric() { curl -s "http://127.0.0.1:$agent_metrics/metrics" | awk -v m="$1" '$1 == m {print $2}'; }
first=""
while sleep 1; do
  age=$(metric horizon_agent_backlog_oldest_age_seconds); age=${age:-1e9}
  points=$(metric horizon_agent_backlog_points)
  acked=$(metric horizon_agent_points_acked_total)
  now=$(date +%s.%N)
  printf '%6.1f s  backlog %s points, oldest %.0f s, acked %s\n' "$(echo "$now - $start" | bc)" "${points:-?}" "$age" "${acked:-?}"
  if [ -n "${acked:-}" ] && [ "$(echo "$age < 30" | bc)" = 1 ]; then
    secs=$(echo "$now - $start" | bc)
    echo "backlog delivered in $secs s ($acked points acked, $(echo "$acked / $secs" | bc) points/s)"
    break
  fi
done
echo "agent RSS peak: $(awk '/VmHWM/ {print $2}' "/proc/$agent/status") KiB"
echo "agent log:"; tail -5 "$work/agent.log"
