#!/usr/bin/env bash
# Failover benchmark on the local fleet: three relays behind nginx's UDP
# balancer, the load generator streaming through it, and the busiest relay
# killed with SIGKILL (or stopped with SIGTERM, a planned scale-in) mid-run.
# Prints the load generator's report: its "ack gaps" line gives, per node
# that moved, the time from its last ack on the dead relay to its first ack
# on a live one (p50, p99, max).
#
#   bash infra/fleet/failover-bench.sh [KILL|TERM] [loadgen flags...]
#   BIN_DIR=target/debug bash infra/fleet/failover-bench.sh KILL --nodes 30 --rate 10000 --duration 30
#
# AT (seconds into the run, default 8) is when the relay goes. Needs what
# `bash infra/dev/install-test-deps.sh` installs.
set -euo pipefail
signal=${1:-KILL}
shift || true
root=$(cd "$(dirname "$0")/../.." && pwd)
bin="${BIN_DIR:-$root/target/release}"
export BIN_DIR="$bin"
at=${AT:-8}
run="$root/.dev/fleet"
mkdir -p "$root/.dev"

bash "$root/infra/fleet/run-local-fleet.sh" 3 >"$root/.dev/fleet-bench.log" 2>&1 &
fleet=$!
trap 'kill $fleet 2>/dev/null; wait $fleet 2>/dev/null || true' EXIT INT TERM
for _ in $(seq 300); do
    grep -q "fleet up" "$root/.dev/fleet-bench.log" 2>/dev/null && break
    sleep 0.1
done
grep -q "fleet up" "$root/.dev/fleet-bench.log" || { cat "$root/.dev/fleet-bench.log" >&2; exit 1; }
sleep 1

"$bin/telemetry-loadgen" --addr 127.0.0.1:5001 --dev-certs "$root/.dev/certs" "$@" &
load=$!
sleep "$at"
busiest=1
most=-1
for i in 1 2 3; do
    n=$(curl -fsS "127.0.0.1:$((9100 + i))/metrics" | awk '/^horizon_relay_connections_active /{print $2}')
    echo "relay-$i: ${n:-0} agents"
    if [ "${n%.*}" -gt "$most" ]; then most=${n%.*}; busiest=$i; fi
done
echo "SIG$signal relay-$busiest ($most agents) at ${at} s"
kill "-$signal" "$(cat "$run/relay-$busiest.pid")"
wait "$load"
