#!/usr/bin/env bash
# Rollup benchmarks (docs/benchmarks.md, "Rollups").
#
#   bash compactor/bench/rollups.sh BIN_DIR BEFORE_BIN EXAMPLES_DIR WORK_DIR [month|cpu|all]
#
# BIN_DIR holds the telemetry-compactor under test; BEFORE_BIN is a
# telemetry-compactor built before rollups (the CPU comparison); EXAMPLES_DIR
# holds synthetic_fleet.
#
# month: a synthetic month (30 days, 2 nodes x 8 GPUs of dcgm-exporter every
#        second, 40 node_exporter series per node every 10 s), compacted with
#        its rollups; then the three capacity questions asked of the points,
#        the minute rollups and the 1-hour rollups (rollup_queries.py).
# cpu:   one day of the same fleet compacted by both builds, three times each
#        in turn on fresh copies (CPU seconds, user + system), and one hour of
#        it under callgrind (instructions, exact).
set -euo pipefail
BIN=$1/telemetry-compactor
BEFORE=$2
GEN=$3/synthetic_fleet
W=$4
WHAT=${5:-all}
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
  rm -rf "$W/day"
  "$GEN" --dir "$W/day" --from 2026-09-01T00 --hours 24 --nodes 2
  for i in 1 2 3; do
    for build in before after; do
      b=$BIN; [[ $build == before ]] && b=$BEFORE
      rm -rf "$W/run" && cp -r "$W/day" "$W/run"
      /usr/bin/time -f "%e %U %S %M" -o "$W/time.txt" "$b" --store-url "$W/run" \
        --from 2026-09-01T00 --to 2026-09-01T23 --work-dir "$W/tmp" --json > /dev/null
      echo "day, run $i, $build rollups: $(cpu_of "$W/time.txt")"
    done
  done
  for build in before after; do
    b=$BIN; [[ $build == before ]] && b=$BEFORE
    rm -rf "$W/run" && cp -r "$W/day" "$W/run"
    valgrind --tool=callgrind --callgrind-out-file="$W/callgrind.$build" "$b" --store-url "$W/run" \
      --hour 2026-09-01T10 --work-dir "$W/tmp" > /dev/null 2> "$W/callgrind.$build.log"
    echo "one hour under callgrind, $build rollups: $(grep -o 'Collected : [0-9]*' "$W/callgrind.$build.log" | awk '{print $3}') instructions"
  done
fi
