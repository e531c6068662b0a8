#!/usr/bin/env bash
# Rollup benchmarks (docs/benchmarks.md, "Rollups").
#
#   bash compactor/bench/rollups.sh BIN_DIR EXAMPLES_DIR WORK_DIR [month|cpu|all]
#
# BIN_DIR holds the telemetry-compactor under test; EXAMPLES_DIR holds
# synthetic_fleet.
#
# month: a synthetic month (30 days, 2 nodes x 8 GPUs of dcgm-exporter every
#        second, 40 node_exporter series per node every 10 s), compacted with
#        its rollups; then the three capacity questions asked of the points,
#        the minute rollups and the 1-hour rollups (rollup_queries.py).
# cpu:   one hour of the same fleet compacted under callgrind (instructions,
#        exact), and the rollup builder's inclusive share of them. (A build from
#        before rollups cannot read these objects: they are raw schema version
#        2, which it quarantines; so the share is measured inside one build.)
set -euo pipefail
BIN=$1/telemetry-compactor
GEN=$2/synthetic_fleet
W=$3
WHAT=${4:-all}
HERE=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$W/tmp"

cpu_of() { # cpu_of TIMEFILE: user + system seconds
  python3 -c "import sys; w,u,s,m=open(sys.argv[1]).read().split()[-4:]; print(f'{float(u)+float(s):.2f} s CPU, wall {float(w):.2f} s, peak RSS {int(m)//1024} MiB')" "$1"
}

if [[ $WHAT == month || $WHAT == all ]]; then
  rm -rf "$W/month"
  "$GEN" --dir "$W/month" --from 2026-09-01T00 --hours 720 --nodes 2
  /usr/bin/time -f "%e %U %S %M" -o "$W/time.txt" "$BIN" --store-url "$W/month" \
    --from 2026-09-01T00 --to 2026-09-30T23 --work-dir "$W/tmp" --json > "$W/month.json"
  echo "compacting the month with rollups: $(cpu_of "$W/time.txt")"
  python3 - "$W/month.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
units = [u for u in r["units"] if u["outcome"] == "compacted"]
print(f"{len(units)} hours, {sum(u['rows_out'] for u in units):,} rows, "
      f"{sum(u['bytes'] for u in units):,} B of points, {sum(u['rollup_bytes'] for u in units):,} B of unit rollups; "
      f"days built: {sum(1 for d in r.get('days', []) if d['outcome'] == 'built')}")
PY
  python3 "$HERE/rollup_queries.py" "$W/month"
fi

if [[ $WHAT == cpu || $WHAT == all ]]; then
  rm -rf "$W/day" "$W/run"
  "$GEN" --dir "$W/day" --from 2026-09-01T00 --hours 24 --nodes 2
  cp -r "$W/day" "$W/run"
  valgrind --tool=callgrind --callgrind-out-file="$W/callgrind.out" "$BIN" --store-url "$W/run" \
    --hour 2026-09-01T10 --work-dir "$W/tmp" > /dev/null 2> "$W/callgrind.log"
  echo "one hour under callgrind: $(grep -o 'Collected : [0-9]*' "$W/callgrind.log" | awk '{print $3}') instructions"
  callgrind_annotate --inclusive=yes "$W/callgrind.out" | grep -E 'rollup::build::Builder::push \[' | head -1
fi
