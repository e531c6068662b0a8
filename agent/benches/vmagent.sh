#!/usr/bin/env bash
# telemetry-agent beside vmagent (Debian's victoria-metrics package) on the
# same exporters, each sending to its own receiver: our relay, and
# victoria-metrics. Exporters: a dcgm-exporter exposition of 8 GPUs x 60
# fields with dcgm-exporter's six labels, values changing at every scrape,
# scraped every second; Debian's node_exporter every 10 s. After a warm-up,
# both agents' CPU over STEADY seconds; then both receivers are stopped for
# OUTAGE seconds and restarted. Reports, per agent: CPU (% of one core),
# peak RSS, disk per buffered point during the outage, the first delivery
# and the whole backlog delivered after the receivers' return.
#
#   cargo build --release -p horizon-agent -p horizon-relay --bins
#   bash agent/benches/vmagent.sh [STEADY] [OUTAGE]     (defaults 60 180)
set -euo pipefail
steady=${1:-60}
outage=${2:-180}
root=$(cd "$(dirname "$0")/../.." && pwd)
bin=${TARGET_DIR:-$root/target}/release
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
dcgm=$(port); node=$(port); quic=$(port); relay_m=$(port); agent_m=$(port); vm=$(port); vma=$(port)

# dcgm-exporter: 8 x 60 fields, six labels, new values at every scrape.
cat > "$work/dcgm.py" <<'PY'
import http.server, random, sys
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        out = []
        for f in range(60):
            name = f"DCGM_FI_DEV_FIELD_{f:02d}"
            out.append(f"# HELP {name} Field {f}.\n# TYPE {name} gauge\n")
            for g in range(8):
                v = random.randint(0, 100) if f % 3 else round(random.uniform(50, 700), 3)
                out.append(f'{name}{{gpu="{g}",UUID="GPU-604ac76c-d9cf-fef3-62e9-d92044ab6e5{g}",device="nvidia{g}",modelName="NVIDIA H100 80GB HBM3",Hostname="gpu-node-1",DCGM_FI_DRIVER_VERSION="550.54.15"}} {v}\n')
        body = "".join(out).encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; version=0.0.4")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a):
        pass
http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
PY
python3 "$work/dcgm.py" "$dcgm" & pids+=($!)
prometheus-node-exporter --web.listen-address="127.0.0.1:$node" >/dev/null 2>&1 & pids+=($!)

start_relay() {
  (cd "$work" && exec "$bin/telemetry-relay" relay.yaml >>relay.log 2>&1) & relay=$!; pids+=($relay)
}
start_vm() {
  victoria-metrics -storageDataPath="$work/vm" -httpListenAddr="127.0.0.1:$vm" -loggerLevel=ERROR >>"$work/vm.log" 2>&1 & vmpid=$!; pids+=($vmpid)
}
cat > "$work/relay.yaml" <<YAML
server: {listen_addr: "127.0.0.1:$quic"}
observability: {metrics_port: $relay_m, metrics_bind: 127.0.0.1, log_level: warn}
YAML
start_relay
start_vm
sleep 2
cat > "$work/agent.yaml" <<YAML
relay: {addr: "127.0.0.1:$quic", server_name: localhost}
spool: {dir: spool}
gpu: {enabled: false}
scrape:
  targets:
    - {url: "http://127.0.0.1:$dcgm/metrics", name: dcgm, interval_secs: 1}
    - {url: "http://127.0.0.1:$node/metrics", name: node, interval_secs: 10}
observability: {metrics_addr: "127.0.0.1:$agent_m", log_level: warn}
YAML
cat > "$work/scrape.yml" <<YAML
scrape_configs:
  - {job_name: dcgm, scrape_interval: 1s, static_configs: [{targets: ["127.0.0.1:$dcgm"]}]}
  - {job_name: node, scrape_interval: 10s, static_configs: [{targets: ["127.0.0.1:$node"]}]}
YAML
(cd "$work" && exec "$bin/telemetry-agent" agent.yaml >agent.log 2>&1) & agent=$!; pids+=($agent)
vmagent -promscrape.config="$work/scrape.yml" -remoteWrite.url="http://127.0.0.1:$vm/api/v1/write" \
  -remoteWrite.tmpDataPath="$work/vmagent-data" -httpListenAddr="127.0.0.1:$vma" -loggerLevel=ERROR \
  >"$work/vmagent.log" 2>&1 & vmagent=$!; pids+=($vmagent)

ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
hwm() { awk '/VmHWM/ {printf "%.1f", $2 / 1024}' "/proc/$1/status"; }
ours() { curl -s "http://127.0.0.1:$agent_m/metrics" | awk -v m="$1" '$1 == m {print $2}'; }
theirs() { curl -s "http://127.0.0.1:$vma/metrics" | awk -v m="$1" 'index($1, m) == 1 {s += $2} END {print s + 0}'; }
disk() { du -sb "$1" 2>/dev/null | awk '{print $1}'; }
hz=$(getconf CLK_TCK)

sleep 30
a0=$(ticks "$agent"); v0=$(ticks "$vmagent"); sleep "$steady"
a1=$(ticks "$agent"); v1=$(ticks "$vmagent")
echo "steady CPU (% of one core): telemetry-agent $(echo "scale=2; 100 * ($a1 - $a0) / $hz / $steady" | bc), vmagent $(echo "scale=2; 100 * ($v1 - $v0) / $hz / $steady" | bc)"

# The outage: both receivers stopped.
kill "$relay" "$vmpid"; wait "$relay" "$vmpid" 2>/dev/null || true
sleep 5
ours_disk0=$(disk "$work/spool"); vm_disk0=$(disk "$work/vmagent-data")
ours_pts0=$(ours horizon_agent_backlog_points); vm_pts0=$(theirs vm_promscrape_scraped_samples_sum)
sleep "$outage"
ours_disk1=$(disk "$work/spool"); vm_disk1=$(disk "$work/vmagent-data")
ours_pts1=$(ours horizon_agent_backlog_points); vm_pts1=$(theirs vm_promscrape_scraped_samples_sum)
echo "disk per buffered point: telemetry-agent $(echo "scale=1; ($ours_disk1 - $ours_disk0) / ($ours_pts1 - $ours_pts0)" | bc) B ($((ours_pts1 - ours_pts0)) points), vmagent $(echo "scale=1; ($vm_disk1 - $vm_disk0) / ($vm_pts1 - $vm_pts0)" | bc) B ($((vm_pts1 - vm_pts0)) samples scraped)"

# The receivers return.
acked0=$(ours horizon_agent_points_acked_total)
back=$(date +%s.%N)
start_relay
start_vm
first_ours=""; first_vm=""; done_ours=""; done_vm=""
vm_sent0=$(theirs vmagent_remotewrite_block_size_rows_sum)
while sleep 0.5; do
  now=$(date +%s.%N); t=$(echo "$now - $back" | bc)
  acked=$(ours horizon_agent_points_acked_total); backlog=$(ours horizon_agent_backlog_points)
  sent=$(theirs vmagent_remotewrite_block_size_rows_sum); pending=$(theirs vmagent_remotewrite_pending_data_bytes)
  [[ -z $first_ours && ${acked%.*} -gt ${acked0%.*} ]] && first_ours=$t
  [[ -z $first_vm && ${sent%.*} -gt ${vm_sent0%.*} ]] && first_vm=$t
  [[ -n $first_ours && -z $done_ours && ${backlog%.*} -le 960 ]] && done_ours=$t
  [[ -n $first_vm && -z $done_vm && ${pending%.*} -le 65536 ]] && done_vm=$t
  [[ -n $done_ours && -n $done_vm ]] && break
  (( $(echo "$t > 300" | bc) )) && break
done
echo "first delivery after the receivers' return: telemetry-agent ${first_ours:-none} s, vmagent ${first_vm:-none} s"
echo "backlog delivered: telemetry-agent ${done_ours:-not within 300} s, vmagent ${done_vm:-not within 300} s"
echo "peak RSS (MiB): telemetry-agent $(hwm "$agent"), vmagent $(hwm "$vmagent")"
