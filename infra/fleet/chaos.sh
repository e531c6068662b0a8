#!/usr/bin/env bash
# Chaos run on the local fleet: three relays behind nginx's UDP balancer,
# moto (S3 API), InfluxDB 1.x and the load generator, with a schedule of
# faults while the load runs:
#
#   1. SIGKILL relay 1, restart it 2 s later;
#   2. cut S3 off for CUT_SECS (moto stopped with SIGSTOP: requests hang,
#      as on a network partition), which also fills the sink queues
#      (BACKPRESSURE, default 300 batches, is the relays' queue bound). So
#      that a cut fills them within seconds, the relays run one micro-batcher
#      (BATCHERS, default 1) with one PUT in flight (MAX_PUTS, default 1) and
#      flushes of FLUSH_ROWS (default 5000) rows: with the defaults a relay
#      keeps taking points into flushes in flight and its batchers' buffers
#      (up to 200,000 rows each) for minutes before its queue fills;
#   3. stop InfluxDB for CUT_SECS (SIGSTOP);
#   4. SIGTERM relay 2 mid-stream (GoAway, drain), restart it once it exits.
#
# Then it stops the relays (SIGTERM: they flush), compacts every hour the
# run wrote, and prints an account: points acked durably against rows in
# the compacted dataset (must be equal), duplicates removed, InfluxDB
# written + dropped against accepted, sink-queue waits, relay RSS peaks.
# Exits non-zero when acked and compacted differ.
#
#   bash infra/fleet/chaos.sh                                  # full: 30 s cuts
#   CUT_SECS=5 GAP_SECS=3 NODES=10 RATE=3000 bash infra/fleet/chaos.sh   # short
#
# BIN_DIR picks the binaries (default target/release), DEV_DIR the working
# directory (default .dev: fleet/, chaos/ and the development PKI). Needs what
# `bash infra/dev/install-test-deps.sh` installs.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
bin="${BIN_DIR:-$root/target/release}"
cut=${CUT_SECS:-30}
gap=${GAP_SECS:-10}
nodes=${NODES:-30}
rate=${RATE:-10000}
export BIN_DIR="$bin" BACKPRESSURE="${BACKPRESSURE:-300}"
export FLUSH_ROWS="${FLUSH_ROWS:-5000}" BATCHERS="${BATCHERS:-1}" MAX_PUTS="${MAX_PUTS:-1}"
export DEV_DIR="${DEV_DIR:-$root/.dev}"
run="$DEV_DIR/fleet"
acct="$DEV_DIR/chaos"
rm -rf "$acct"
mkdir -p "$acct"
log() { echo "chaos: $(date -u +%H:%M:%S) $*"; }

bash "$root/infra/fleet/run-local-fleet.sh" 3 >"$acct/fleet.log" 2>&1 &
fleet=$!
sampler=
cleanup() {
    set +e
    [ -n "$sampler" ] && kill "$sampler" 2>/dev/null
    for f in "$run"/moto.pid "$run"/influxd.pid; do
        [ -f "$f" ] && kill -CONT "$(cat "$f")" 2>/dev/null
    done
    kill "$fleet" 2>/dev/null
    for i in 1 2 3; do
        [ -f "$run/relay-$i.pid" ] && kill "$(cat "$run/relay-$i.pid")" 2>/dev/null
    done
    wait 2>/dev/null || true
}
trap cleanup EXIT INT TERM
for _ in $(seq 600); do
    grep -q "fleet up" "$acct/fleet.log" 2>/dev/null && break
    sleep 0.1
done
grep -q "fleet up" "$acct/fleet.log" || { cat "$acct/fleet.log" >&2; exit 1; }

# Every second, each relay's metrics and peak RSS, per process lifetime.
sample() {
    while true; do
        for i in 1 2 3; do
            pid=$(cat "$run/relay-$i.pid" 2>/dev/null) || continue
            curl -fsS -m 1 "127.0.0.1:$((9100 + i))/metrics" >"$acct/m.tmp" 2>/dev/null &&
                mv "$acct/m.tmp" "$acct/metrics-relay-$i-$pid.txt"
            awk '/^VmHWM:/{print $2}' "/proc/$pid/status" 2>/dev/null >"$acct/hwm-relay-$i-$pid.txt" || true
        done
        sleep 1
    done
}
sample &
sampler=$!

restart_relay() { # i
    "$bin/telemetry-relay" "$run/relay-$1.yaml" >>"$run/relay-$1.log" 2>&1 &
    echo $! >"$run/relay-$1.pid"
    for _ in $(seq 100); do
        curl -fsS -o /dev/null "127.0.0.1:$((9100 + $1))/readyz" 2>/dev/null && return 0
        sleep 0.1
    done
    log "relay $1 did not come back"
    return 1
}

duration=$((gap + 2 + gap + cut + gap + cut + gap + 15 + gap))
start=$(date -u +%s)
log "load: $nodes nodes, $rate points/s, ${duration} s; faults every ${gap} s, cuts of ${cut} s"
"$bin/telemetry-loadgen" --addr 127.0.0.1:5001 --dev-certs "$DEV_DIR/certs" \
    --nodes "$nodes" --rate "$rate" --duration "$duration" --json >"$acct/loadgen.json" 2>"$acct/loadgen.log" &
load=$!

sleep "$gap"
log "SIGKILL relay 1"
kill -KILL "$(cat "$run/relay-1.pid")"
sleep 2
restart_relay 1 && log "relay 1 restarted"
sleep "$gap"
log "S3 cut off for ${cut} s"
kill -STOP "$(cat "$run/moto.pid")"
sleep "$cut"
kill -CONT "$(cat "$run/moto.pid")"
log "S3 back"
sleep "$gap"
log "InfluxDB stopped for ${cut} s"
kill -STOP "$(cat "$run/influxd.pid")"
sleep "$cut"
kill -CONT "$(cat "$run/influxd.pid")"
log "InfluxDB back"
sleep "$gap"
log "SIGTERM relay 2"
pid2=$(cat "$run/relay-2.pid")
kill -TERM "$pid2"
while kill -0 "$pid2" 2>/dev/null; do sleep 0.2; done
restart_relay 2 && log "relay 2 restarted"
wait "$load" || true
log "load done; stopping the relays (they flush)"
sleep 2
kill "$sampler" 2>/dev/null || true
sampler=
for i in 1 2 3; do
    pid=$(cat "$run/relay-$i.pid")
    curl -fsS -m 2 "127.0.0.1:$((9100 + i))/metrics" >"$acct/metrics-relay-$i-$pid.txt" 2>/dev/null || true
    kill -TERM "$pid"
done
for i in 1 2 3; do
    pid=$(cat "$run/relay-$i.pid")
    while kill -0 "$pid" 2>/dev/null; do sleep 0.2; done
done

end=$(date -u +%s)
from=$(date -u -d "@$start" +%Y-%m-%dT%H)
to=$(date -u -d "@$end" +%Y-%m-%dT%H)
log "compacting $from .. $to"
AWS_ACCESS_KEY_ID=local AWS_SECRET_ACCESS_KEY=local "$bin/telemetry-compactor" \
    --store-url s3://telemetry/fleet --s3-endpoint http://127.0.0.1:5555 --s3-region us-east-1 \
    --s3-path-style --s3-allow-http --from "$from" --to "$to" --json \
    >"$acct/compactor.json" 2>"$acct/compactor.log"

python3 - "$acct" <<'PY'
import glob, json, os, re, sys
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.fs as pafs

acct = sys.argv[1]
load = json.load(open(os.path.join(acct, "loadgen.json")))
comp = json.load(open(os.path.join(acct, "compactor.json")))

def metric(text, name):
    m = re.search(r"^" + re.escape(name) + r" ([0-9.e+-]+)$", text, re.M)
    return float(m.group(1)) if m else 0.0

sums = {}
names = ["horizon_relay_points_accepted_total", "horizon_relay_influxdb_written_points_total",
         "horizon_relay_influxdb_dropped_points_total", "horizon_relay_influxdb_rejected_points_total",
         'horizon_relay_throttled_batches_total{limit="sink_queue"}']
for path in glob.glob(os.path.join(acct, "metrics-relay-*.txt")):
    text = open(path).read()
    for n in names:
        sums[n] = sums.get(n, 0.0) + metric(text, n)
peaks = {}
for path in glob.glob(os.path.join(acct, "hwm-relay-*.txt")):
    relay = re.search(r"hwm-(relay-\d+)-", path).group(1)
    try:
        kib = int(open(path).read().strip() or 0)
    except ValueError:
        kib = 0
    peaks[relay] = max(peaks.get(relay, 0), kib)

fs = pafs.S3FileSystem(access_key="local", secret_key="local", endpoint_override="127.0.0.1:5555",
                       scheme="http", region="us-east-1")
sel = pafs.FileSelector("telemetry/fleet/compacted", recursive=True, allow_not_found=True)
files = [i.path for i in fs.get_file_info(sel)
         if i.path.endswith(".parquet") and not any(p.startswith(("_", "."))
                                                     for p in i.path.split("/compacted/", 1)[1].split("/"))]
rows = keys = 0
if files:
    t = ds.dataset(files, filesystem=fs, format="parquet").to_table(columns=["node", "series_id", "time"])
    rows = t.num_rows
    # Files differ in their dictionaries of node names: compare as strings.
    t = pa.table({"node": pc.cast(t["node"], pa.string()), "series_id": t["series_id"], "time": t["time"]})
    keys = t.group_by(["node", "series_id", "time"]).aggregate([]).num_rows

rows_in = rows_out = failed = 0
def walk(v):
    global rows_in, rows_out, failed
    if isinstance(v, dict):
        if "rows_in" in v and "rows_out" in v:
            rows_in += v["rows_in"]
            rows_out += v["rows_out"]
        if v.get("outcome") == "failed" or v.get("status") == "failed":
            failed += 1
        for x in v.values():
            walk(x)
    elif isinstance(v, list):
        for x in v:
            walk(x)
walk(comp)

import urllib.parse, urllib.request
in_influx = 0
try:
    q = urllib.parse.urlencode({"db": "telemetry", "q": "SELECT count(value) FROM /.*/"})
    res = json.load(urllib.request.urlopen("http://127.0.0.1:8086/query?" + q, timeout=30))
    for series in res["results"][0].get("series", []):
        in_influx += int(series["values"][0][1])
except Exception as e:  # the account still prints
    print(f"  (InfluxDB count failed: {e})")

acked = load["points_acked"]
accepted = sums["horizon_relay_points_accepted_total"]
written = sums["horizon_relay_influxdb_written_points_total"]
dropped = sums["horizon_relay_influxdb_dropped_points_total"]
print()
print("chaos account")
print(f"  points sent by the load generator     {load['points_sent']}")
print(f"  points acked (durable)                {acked}")
print(f"  points unacked at the end             {load['points_unacked']}")
print(f"  rows in the compacted dataset         {rows} ({keys} distinct keys, {len(files)} files)")
print(f"  duplicates removed by compaction      {rows_in - rows_out} (units failed: {failed})")
print(f"  relay accepted (every copy)           {accepted:.0f}")
print(f"  InfluxDB written + dropped (copies)   {written:.0f} + {dropped:.0f} = {written + dropped:.0f}")
print(f"  points in InfluxDB                    {in_influx}")
print(f"  batches that waited for a full queue  {sums[names[4]]:.0f}")
print(f"  batches resent after reconnects       {load['resends']}")
print(f"  relay RSS peaks                       " + ", ".join(f"{k} {v / 1024:.0f} MiB" for k, v in sorted(peaks.items())))
print("  (relay counts add up every relay lifetime, a SIGKILLed one's from its last scrape, up to 1 s"
      " old; every copy of a resent batch counts; InfluxDB keeps one point per series and time)")
# Every point is unique, so the dataset must hold each once (rows == keys),
# every acked point (rows >= acked), and nothing that was never sent; points
# sent and never acked may or may not have been stored.
ok = rows == keys and acked <= rows <= load["points_sent"] and failed == 0
print("  every acked point stored once:", "yes" if ok else "NO",
      "(exactly the acked ones)" if rows == acked else f"(plus {rows - acked} sent, stored, never acked)")
sys.exit(0 if ok else 1)
PY
