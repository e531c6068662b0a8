#!/usr/bin/env bash
# Soak and fleet-scale benchmark (docs/benchmarks.md, "Fleet"): one relay
# (defaults: durable acks, Parquet to a local directory), AGENTS
# load-generator nodes, each with its own certificate and connection, for
# SECS seconds at RATE points/s in all. Samples the relay every SAMPLE
# seconds (RSS, connections, handshakes in progress) and prints:
#
# - the load generator's summary (points sent, acked, unacked; connection
#   errors; ack latency; ack gaps of nodes that reconnected);
# - RSS after the first WARMUP seconds: range and least-squares slope in MiB
#   per hour, and RSS per connection over the idle relay's;
# - the relay's CPU seconds per million points acked, and both processes'
#   share of a core;
# - the points stored: rows and distinct (node, metric, labels, time) keys in
#   the relay's Parquet objects, against the points acked;
# - with RESTART_AT=s: the relay is killed (SIGKILL) s seconds in and started
#   again at once; then the seconds until every agent is connected again and
#   the peak of handshakes in progress while they came back.
#
#   BIN_DIR=target/release bash infra/fleet/soak.sh                # 1000 agents, 600 s
#   CPUS=0 SECS=1800 bash infra/fleet/soak.sh                       # both on one core
#   AGENTS=10000 RATE=50000 SECS=300 RESTART_AT=150 bash infra/fleet/soak.sh
#   RELAY_CPUS=0 LOAD_CPUS=1 ...                                    # one core each
#   ENDPOINTS=256 ...     # the nodes share 256 UDP endpoints (default: one each);
#                         # at 10,000 nodes, 64 or fewer stall the generator's
#                         # busiest endpoints (docs/benchmarks.md, F4)
#   HANDSHAKES=64 ...     # the relay's server.max_handshakes_in_progress (default: the relay's)
#
# Writes into DEV_DIR (default .dev/soak; the development PKI in DEV_DIR/certs).
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
bin="${BIN_DIR:-$root/target/release}"
agents=${AGENTS:-1000}
secs=${SECS:-600}
rate=${RATE:-20000}
series=${SERIES:-20}
sample=${SAMPLE:-10}
warmup=${WARMUP:-60}
restart_at=${RESTART_AT:-}
dev="${DEV_DIR:-$root/.dev/soak}"
relay_pin=() load_pin=()
[[ -n ${RELAY_CPUS:-${CPUS:-}} ]] && relay_pin=(taskset -c "${RELAY_CPUS:-$CPUS}")
[[ -n ${LOAD_CPUS:-${CPUS:-}} ]] && load_pin=(taskset -c "${LOAD_CPUS:-$CPUS}")
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
rm -rf "$dev"
mkdir -p "$dev"
cat >"$dev/relay.yaml" <<CONF
server:
  listen_addr: "127.0.0.1:5301"
  max_connections: $((agents + agents / 10 + 100))
${HANDSHAKES:+  max_handshakes_in_progress: $HANDSHAKES
}limits:
  max_cardinality: $((agents * series * 2))
security:
  dev_certs_dir: "$dev/certs"
parquet:
  output_dir: "$dev/objects"
observability:
  metrics_port: 9301
  metrics_bind: 127.0.0.1
CONF

relay=
cpu_before=0 # CPU seconds of relays already stopped
start_relay() {
    "${relay_pin[@]}" "$bin/telemetry-relay" "$dev/relay.yaml" >>"$dev/relay.log" 2>&1 &
    relay=$!
    for _ in $(seq 300); do
        curl -fsS -o /dev/null 127.0.0.1:9301/readyz 2>/dev/null && return
        sleep 0.1
    done
    echo "soak: the relay did not become ready; see $dev/relay.log" >&2
    exit 1
}
relay_cpu() { # user + system seconds of the running relay
    awk -v hz="$(getconf CLK_TCK)" '{printf "%.2f", ($14 + $15) / hz}' "/proc/$relay/stat"
}
scrape() { curl -fsS -m 2 127.0.0.1:9301/metrics 2>/dev/null || true; }
metric() { # metric NAME SCRAPE: NAME's value (labels included) in SCRAPE, or empty
    awk -v n="horizon_relay_$1" '$1 == n {print $2}' <<<"$2"
}
rcvbuf_errors() { # the host's UDP datagrams dropped at full receive buffers
    awk '/^Udp:/ {n++; if (n == 1) for (i = 1; i <= NF; i++) col[$i] = i; else print $col["RcvbufErrors"]}' /proc/net/snmp
}
trap 'kill $relay 2>/dev/null; wait 2>/dev/null || true' EXIT INT TERM
start_relay
idle_rss=$(awk '/^VmRSS:/{printf "%.1f", $2/1024}' "/proc/$relay/status")

"${load_pin[@]}" /usr/bin/time -f "%U %S" -o "$dev/loadgen.cpu" "$bin/telemetry-loadgen" --addr 127.0.0.1:5301 --dev-certs "$dev/certs" \
    --nodes "$agents" --series "$series" --rate "$rate" --duration "$secs" --json \
    --endpoints "${ENDPOINTS:-0}" \
    >"$dev/loadgen.json" 2>"$dev/loadgen.log" &
load=$!
start=$(date +%s.%N)
restarted=
rcvbuf_before=$(rcvbuf_errors)
echo "t_s,rss_mib,connections,handshakes,accepted,evicted,timed_out,retries,udp_drops,quic,host_udp_drops" >"$dev/samples.csv"
while kill -0 "$load" 2>/dev/null; do
    t=$(python3 -c "import sys; print(f'{float(sys.argv[1]) - float(sys.argv[2]):.1f}')" "$(date +%s.%N)" "$start")
    if [[ -n $restart_at && -z $restarted ]] && python3 -c "import sys; sys.exit(float(sys.argv[1]) < float(sys.argv[2]))" "$t" "$restart_at"; then
        cpu_before=$(relay_cpu)
        kill -KILL "$relay"
        wait "$relay" 2>/dev/null || true
        restarted=$t
        echo "restart,$t" >>"$dev/samples.csv"
        start_relay
        continue
    fi
    rss=$(awk '/^VmRSS:/{printf "%.1f", $2/1024}' "/proc/$relay/status")
    m=$(scrape)
    echo "$t,$rss,$(metric connections_active "$m"),$(metric handshakes_in_progress "$m"),$(metric connections_accepted_total "$m"),$(metric 'handshakes_refused_total{reason="evicted"}' "$m"),$(metric handshakes_timed_out_total "$m"),$(metric handshake_retries_total "$m"),$(metric udp_receive_drops_total "$m"),$(metric quic_connections "$m"),$(($(rcvbuf_errors) - rcvbuf_before))" >>"$dev/samples.csv"
    sleep "$sample"
done
wait "$load" || true
rcvbuf=$(($(rcvbuf_errors) - rcvbuf_before))
cpu=$(python3 -c "import sys; print(float(sys.argv[1]) + float(sys.argv[2]))" "$cpu_before" "$(relay_cpu)")
scrape >"$dev/metrics-end.txt" # the relay's last scrape, for what the summary leaves out
# A planned stop: the relay flushes what it holds before it exits.
kill -TERM "$relay"
wait "$relay" 2>/dev/null || true

python3 - "$dev" "$agents" "$warmup" "$idle_rss" "$cpu" "${restart_at:-}" "$rcvbuf" <<'PY'
import csv, glob, json, sys
dev, agents, warmup, idle, cpu, restart_at, rcvbuf = sys.argv[1:8]
agents, warmup, idle, cpu = int(agents), float(warmup), float(idle), float(cpu)
r = json.load(open(f"{dev}/loadgen.json"))
lat, f = r["ack_latency_ms"], r["failover"]
print(f"points: {r['points_sent']:,} sent, {r['points_acked']:,} acked, {r['points_unacked']:,} unacked, "
      f"rejected {r['points_rejected']}; {r['points_per_sec']:,.0f}/s over {r['elapsed_secs']:.0f} s")
print(f"connections: {agents:,} agents; {r['connection_errors']:,} connection errors, of which "
      f"{r['connections_lost']:,} connections lost ({r['connections_lost_to_silence']:,} to a relay taken for silent) and {r['connection_errors'] - r['connections_lost']:,} failed attempts "
      f"({r['connections_unconfirmed']:,} of them handshakes the relay never confirmed); "
      f"{r['nodes_with_connection_errors']:,} agents had an error ({100 * r['nodes_with_connection_errors'] / agents:.2f} %), "
      f"{r['nodes_that_lost_a_connection']:,} lost a connection ({100 * r['nodes_that_lost_a_connection'] / agents:.2f} %); "
      f"{r['nodes_failed']} nodes never connected, {r['resends']:,} batches resent")
print(f"ack latency ms: p50 {lat['p50']:.0f}, p99 {lat['p99']:.0f}, p99.9 {lat['p999']:.0f}, max {lat['max']:.0f}")
print(f"ack gaps ms: {f['nodes_moved']} nodes reconnected, their longest gap p50 {f['moved_gap_ms']['p50']:.0f} "
      f"p99 {f['moved_gap_ms']['p99']:.0f} max {f['moved_gap_ms']['max']:.0f}; the others' p50 "
      f"{f['stayed_gap_ms']['p50']:.0f} max {f['stayed_gap_ms']['max']:.0f}")

rows, restart = [], None
for line in open(f"{dev}/samples.csv").read().splitlines()[1:]:
    p = line.split(",")
    if p[0] == "restart":
        restart = float(p[1])
        continue
    rows.append((float(p[0]), float(p[1]), float(p[2] or 0), float(p[3] or 0), restart is not None))
# The relay's counters, at the last sample of each relay process (a restart
# starts them again).
segments, seg = [], []
for line in open(f"{dev}/samples.csv").read().splitlines()[1:]:
    p = line.split(",")
    if p[0] == "restart":
        segments.append(seg)
        seg = []
    elif len(p) >= 10 and p[4]:
        seg.append(p)
segments.append(seg)
for i, seg in enumerate(s for s in segments if s):
    last = seg[-1]
    n = lambda k: int(float(last[k] or 0))
    print(f"relay {'after the restart' if i else 'before any restart'}: {n(4):,} connections accepted; "
          f"handshakes evicted {n(5):,}, timed out {n(6):,}; Retries {n(7):,}; its socket dropped {n(8):,} datagrams")
print(f"host: {int(rcvbuf):,} UDP datagrams dropped at full receive buffers (RcvbufErrors) over the run")
print("samples (s:RSS MiB:connections):", " ".join(f"{t:.0f}:{m:.0f}:{c:.0f}" for t, m, c, _, _ in rows))
# After the warm-up and before a restart, while every agent is connected
# (the load generator's last seconds close its connections).
steady = [(t, m, c) for t, m, c, _, after in rows if t >= warmup and (restart is None or t < restart)]
steady = [(t, m, c) for t, m, c in steady if c >= 0.99 * max((c for _, _, c in steady), default=0)]
if len(steady) >= 3:
    n = len(steady)
    mt = sum(t for t, _, _ in steady) / n
    mm = sum(m for _, m, _ in steady) / n
    slope = sum((t - mt) * (m - mm) for t, m, _ in steady) / sum((t - mt) ** 2 for t, _, _ in steady)
    t_last, m_last, c_last = steady[-1]
    print(f"RSS after {warmup:.0f} s: {n} samples, {min(m for _, m, _ in steady):.1f} to {max(m for _, m, _ in steady):.1f} MiB, "
          f"slope {slope * 3600:+.1f} MiB per hour; idle relay {idle:.1f} MiB, "
          f"{(m_last - idle) * 1024 / max(c_last, 1):.1f} KiB per connection at {c_last:.0f} connections")
if restart is not None:
    back = [t for t, _, c, _, after in rows if after and c >= agents]
    peak = max((h for _, _, _, h, after in rows if after), default=0)
    when = f"{back[0] - restart:.1f} s after the kill (sampled every {rows[1][0] - rows[0][0]:.0f} s)" if back else "never during the run"
    print(f"restart at {restart:.0f} s: all {agents:,} connected again {when}; handshakes in progress peaked at {peak:.0f}")
acked = r["points_acked"]
print(f"relay CPU: {cpu:.1f} s, {cpu / max(acked, 1) * 1e6:.2f} s per million points acked, "
      f"{100 * cpu / r['elapsed_secs']:.0f} % of a core over the run")
try:
    user, system = (float(x) for x in open(f"{dev}/loadgen.cpu").read().split()[-2:])
    print(f"load generator CPU: {user + system:.1f} s, {100 * (user + system) / r['elapsed_secs']:.0f} % of a core")
except (OSError, ValueError):
    pass
try:
    import duckdb
    files = glob.glob(f"{dev}/objects/**/*.parquet", recursive=True)
    total, distinct = duckdb.sql(
        f"SELECT count(*), count(DISTINCT (node, metric, labels, time)) FROM read_parquet({files!r})"
    ).fetchall()[0] if files else (0, 0)
    verdict = "every acked point stored" if distinct >= acked and distinct <= r["points_sent"] else "MISMATCH"
    print(f"stored: {len(files):,} objects, {total:,} rows, {distinct:,} distinct points; {verdict}")
except ImportError:
    print("stored: not checked (python3 -m pip install duckdb)")
PY
