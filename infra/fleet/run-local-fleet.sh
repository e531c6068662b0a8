#!/usr/bin/env bash
# Starts a local relay fleet on loopback: N relays (default 3) behind nginx's
# UDP load balancer on 127.0.0.1:5001, writing Parquet to an S3 API (moto,
# bucket "telemetry") and points to InfluxDB 1.x (database "telemetry").
# Everything runs in .dev/fleet/ and stops on Ctrl-C.
#
#   bash infra/fleet/run-local-fleet.sh [N]
#   cargo run --release --bin telemetry-loadgen -- --addr 127.0.0.1:5001   # in another terminal
#   curl -s 127.0.0.1:9101/metrics                   # relay 1 (9102, 9103, ...)
#   kill -9 "$(cat .dev/fleet/relay-2.pid)"          # agents move to the others
#
# Needs what `bash infra/dev/install-test-deps.sh` installs. BIN_DIR picks
# the binaries (default target/release, built if missing); BACKPRESSURE, if
# set, is the relays' limits.backpressure_threshold; FLUSH_ROWS, BATCHERS and
# MAX_PUTS, if set, their parquet.flush_rows, parquet.batchers and
# parquet.max_concurrent_puts. Each process's pid is
# in .dev/fleet/NAME.pid, and relay-N.yaml restarts relay N. DEV_DIR moves
# .dev (the run directory and the development PKI) elsewhere.
set -euo pipefail
n=${1:-3}
root=$(cd "$(dirname "$0")/../.." && pwd)
dev="${DEV_DIR:-$root/.dev}"
run="$dev/fleet"
bin="${BIN_DIR:-$root/target/release}"
rm -rf "$run"
mkdir -p "$run"
[ -x "$bin/telemetry-relay" ] || cargo build --release --bins --manifest-path "$root/Cargo.toml"

pids=()
cleanup() {
    kill "${pids[@]}" 2>/dev/null || true
    wait 2>/dev/null || true
}
trap cleanup EXIT INT TERM

wait_http() { # url what
    for _ in $(seq 100); do
        curl -fsS -o /dev/null "$1" 2>/dev/null && return 0
        sleep 0.1
    done
    echo "run-local-fleet: $2 did not come up (log in $run)" >&2
    exit 1
}

moto_server -H 127.0.0.1 -p 5555 >"$run/moto.log" 2>&1 &
pids+=($!)
echo $! >"$run/moto.pid"
wait_http http://127.0.0.1:5555/moto-api/ "moto_server"
curl -fsS -X PUT -o /dev/null http://127.0.0.1:5555/telemetry

cat >"$run/influxdb.conf" <<CONF
reporting-disabled = true
bind-address = "127.0.0.1:8088"
[meta]
  dir = "$run/influx/meta"
[data]
  dir = "$run/influx/data"
  wal-dir = "$run/influx/wal"
[monitor]
  store-enabled = false
[http]
  bind-address = "127.0.0.1:8086"
  log-enabled = false
CONF
influxd -config "$run/influxdb.conf" >"$run/influxd.log" 2>&1 &
pids+=($!)
echo $! >"$run/influxd.pid"
wait_http http://127.0.0.1:8086/ping "influxd"
curl -fsS -o /dev/null -XPOST http://127.0.0.1:8086/query --data-urlencode "q=CREATE DATABASE telemetry"

upstreams=""
for i in $(seq "$n"); do
    cat >"$run/relay-$i.yaml" <<CONF
server:
  listen_addr: "127.0.0.1:$((5100 + i))"
  relay_id: relay-$i
security:
  dev_certs_dir: "$dev/certs"
object_store:
  url: s3://telemetry/fleet
  endpoint: http://127.0.0.1:5555
  region: us-east-1
  path_style: true
  allow_http: true
  access_key_id: local
  secret_access_key: local
influxdb:
  url: http://127.0.0.1:8086
  api: v1
  database: telemetry
parquet:
  rotation_interval_secs: 1
  flush_rows: ${FLUSH_ROWS:-200000}
  batchers: ${BATCHERS:-0}
  max_concurrent_puts: ${MAX_PUTS:-4}
limits:
  backpressure_threshold: ${BACKPRESSURE:-5000}
observability:
  metrics_port: $((9100 + i))
  metrics_bind: 127.0.0.1
CONF
    "$bin/telemetry-relay" "$run/relay-$i.yaml" >"$run/relay-$i.log" 2>&1 &
    pids+=($!)
    echo $! >"$run/relay-$i.pid"
    # The first relay creates the development CA; the others share it.
    wait_http "http://127.0.0.1:$((9100 + i))/readyz" "relay $i"
    upstreams+="        server 127.0.0.1:$((5100 + i)) max_fails=1 fail_timeout=30s;"$'\n'
done

template=$(cat "$root/infra/fleet/nginx-udp.conf.template")
conf=${template//@MODULE@//usr/lib/nginx/modules/ngx_stream_module.so}
conf=${conf//@DIR@/$run}
conf=${conf//@LISTEN@/5001}
conf=${conf//@UPSTREAMS@/$upstreams}
printf '%s\n' "$conf" >"$run/nginx.conf"
nginx -p "$run" -c "$run/nginx.conf" -g 'daemon off;' >"$run/nginx.log" 2>&1 &
pids+=($!)

echo "fleet up: $n relays behind udp://127.0.0.1:5001 (metrics on 127.0.0.1:9101..$((9100 + n)))"
echo "S3 (moto) http://127.0.0.1:5555 bucket telemetry, prefix fleet/raw; InfluxDB 1.x http://127.0.0.1:8086 db telemetry"
echo "logs and pids in $run; Ctrl-C stops everything"
wait
