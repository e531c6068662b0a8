#!/usr/bin/env bash
# Rollup benchmarks (docs/benchmarks.md, "Rollups").
#
#   bash compactor/bench/rollups.sh BIN_DIR EXAMPLES_DIR WORK_DIR [month|day|cpu|all]
#
# BIN_DIR holds the telemetry-compactor under test; EXAMPLES_DIR holds
# synthetic_fleet.
#
# month: a synthetic month (30 days, 2 nodes x 8 GPUs of dcgm-exporter every
#        second, 40 node_exporter series per node every 10 s), compacted with
#        its rollups; then the three capacity questions asked of the points,
#        the minute rollups and the 1-hour rollups (rollup_queries.py).
# day:   a day of 200 nodes (1,600 GPUs, 14,400 series; 60 raw objects an
#        hour, about two relay flushes each), compacted by two runs of 12
#        hours side by side, then the same three questions.
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

if [[ $WHAT == day || $WHAT == all ]]; then
  rm -rf "$W/day200" "$W/tmp-a" "$W/tmp-b"
  mkdir -p "$W/tmp-a" "$W/tmp-b"
  "$GEN" --dir "$W/day200" --from 2026-09-02T00 --hours 24 --nodes 200 --objects 60
  /usr/bin/time -f "%e %U %S %M" -o "$W/time-a.txt" "$BIN" --store-url "$W/day200" \
    --from 2026-09-02T00 --to 2026-09-02T11 --work-dir "$W/tmp-a" > /dev/null &
  /usr/bin/time -f "%e %U %S %M" -o "$W/time-b.txt" "$BIN" --store-url "$W/day200" \
    --from 2026-09-02T12 --to 2026-09-02T23 --work-dir "$W/tmp-b" > /dev/null
  wait
  # The run that ended first may have made the day from its half: make it
  # again from all 24 hours (a no-op when the later run already did).
  "$BIN" rollup --store-url "$W/day200" --from 2026-09-02T00 --to 2026-09-02T23 --work-dir "$W/tmp-a" > /dev/null
  echo "hours 00-11: $(cpu_of "$W/time-a.txt"); hours 12-23: $(cpu_of "$W/time-b.txt")"
  python3 "$HERE/rollup_queries.py" "$W/day200"
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
