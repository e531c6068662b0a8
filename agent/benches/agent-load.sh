#!/usr/bin/env bash
# The agent's CPU and memory at 8 GPUs x 60 DCGM fields every second plus
# node_exporter every 10 s, sending to a development relay on this machine.
#
#   cargo build --release -p horizon-agent -p horizon-relay
#   bash agent/benches/agent-load.sh [SECONDS]      (default 60)
#
# RELAY_BIN overrides the relay binary (only the agent is measured, so a
# debug relay does as well).
#
# Serves a dcgm-exporter exposition of that size (480 samples, the labels
# dcgm-exporter writes) with python3 -m http.server, runs Debian's
# prometheus-node-exporter, a relay and the agent on free ports in a
# temporary directory, then reports the agent's CPU seconds over the window
# (from /proc/PID/stat, after a 10 s warm-up) and its RSS (VmRSS at the end,
# VmHWM the peak). Needs python3 and prometheus-node-exporter.
set -euo pipefail
secs=${1:-60}
root=$(cd "$(dirname "$0")/../.." && pwd)
bin=${TARGET_DIR:-$root/target}/release
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

mkdir -p "$work/dcgm"
python3 - "$work/dcgm/metrics" <<'PY'
import sys
out = []
for f in range(60):
    name = f"DCGM_FI_DEV_FIELD_{f:02d}"
    out.append(f"# HELP {name} Field {f}.\n# TYPE {name} gauge\n")
    for g in range(8):
        out.append(f'{name}{{gpu="{g}",UUID="GPU-604ac76c-d9cf-fef3-62e9-d92044ab6e5{g}",pci_bus_id="00000000:0{g}:00.0",device="nvidia{g}",modelName="NVIDIA H100 80GB HBM3",Hostname="gpu-node-1"}} {f * 10 + g}.5\n')
open(sys.argv[1], "w").write("".join(out))
PY
dcgm_port=$(port); ne_port=$(port); quic_port=$(port); relay_metrics=$(port); agent_metrics=$(port)
(cd "$work/dcgm" && exec python3 -m http.server "$dcgm_port" --bind 127.0.0.1 >/dev/null 2>&1) & pids+=($!)
prometheus-node-exporter --web.listen-address="127.0.0.1:$ne_port" >/dev/null 2>&1 & pids+=($!)
cat > "$work/relay.yaml" <<YAML
server: {listen_addr: "127.0.0.1:$quic_port"}
observability: {metrics_port: $relay_metrics, metrics_bind: 127.0.0.1, log_level: warn}
YAML
(cd "$work" && exec "${RELAY_BIN:-$bin/telemetry-relay}" relay.yaml >relay.log 2>&1) & pids+=($!)
sleep 2
cat > "$work/agent.yaml" <<YAML
relay: {addr: "127.0.0.1:$quic_port", server_name: localhost}
spool: {dir: spool}
scrape:
  targets:
    - {url: "http://127.0.0.1:$dcgm_port/metrics", name: dcgm, interval_secs: 1}
    - {url: "http://127.0.0.1:$ne_port/metrics", name: node, interval_secs: 10}
observability: {metrics_addr: "127.0.0.1:$agent_metrics", log_level: warn}
YAML
(cd "$work" && exec "$bin/telemetry-agent" agent.yaml >agent.log 2>&1) & agent=$!; pids+=($agent)
sleep 10
ticks() { awk '{print $14 + $15}' "/proc/$agent/stat"; }
t0=$(ticks)
sleep "$secs"
t1=$(ticks)
hz=$(getconf CLK_TCK)
rss=$(awk '/VmRSS/ {print $2}' "/proc/$agent/status")
hwm=$(awk '/VmHWM/ {print $2}' "/proc/$agent/status")
m=$(curl -s "http://127.0.0.1:$agent_metrics/metrics")
collected=$(echo "$m" | awk '/^horizon_agent_points_collected_total/ {s += $2} END {print s}')
acked=$(echo "$m" | awk '/^horizon_agent_points_acked_total/ {print $2}')
python3 - "$t0" "$t1" "$hz" "$secs" "$rss" "$hwm" "$collected" "$acked" <<'PY'
import sys
t0, t1, hz, secs, rss, hwm, collected, acked = sys.argv[1:]
cpu = (int(t1) - int(t0)) / int(hz)
per_min = cpu * 60 / int(secs)
print(f"agent CPU: {cpu:.2f} s over {secs} s = {per_min:.2f} CPU s per minute ({100 * per_min / 60:.2f}% of one core)")
print(f"agent RSS: {int(rss) / 1024:.1f} MiB at the end, peak {int(hwm) / 1024:.1f} MiB")
print(f"points collected {collected}, acked {acked}")
PY
