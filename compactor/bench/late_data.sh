#!/usr/bin/env bash
# Late-data benchmarks of the compactor (docs/benchmarks.md, "Late data").
#
#   bash compactor/bench/late_data.sh BIN_DIR EXAMPLES_DIR WORK_DIR [hour|replay|failover|all]
#
# (replay: SKIP_ON_TIME=1 reuses the data and on-time runs of an earlier run
# in WORK_DIR; LAYOUTS="per-hour" runs only that replay layout.)
#
# BIN_DIR holds telemetry-compactor (the build under test); EXAMPLES_DIR holds
# synthetic_hour and late_data (the data generators, any build). Each case
# starts from a copy of a compacted snapshot and prints one line: wall and CPU
# seconds (user + system, from /usr/bin/time), bytes the run uploaded, bytes
# it read from the store, and what the report says. Builds that predate the
# bytes_read counter get it computed from what they do: every raw object and
# every file of the previous generation is read in full.
set -euo pipefail
BIN=$1/telemetry-compactor
GEN=$2
W=$3
WHAT=${4:-all}
mkdir -p "$W/tmp"

# run LABEL STORE ARGS...: one compactor run, one line of figures.
run() {
  local label=$1 store=$2
  shift 2
  local prev
  prev=$(python3 -c "import glob,json,sys; print(sum(f['bytes'] for m in glob.glob(sys.argv[1]+'/compacted/_manifests/**/g*.json', recursive=True) for f in json.load(open(m))['files']))" "$store")
  /usr/bin/time -f "%e %U %S %M" -o "$W/time.txt" "$BIN" --store-url "$store" --work-dir "$W/tmp" \
    --sort-memory 128MiB --json "$@" > "$W/report.json"
  python3 - "$label" "$W/time.txt" "$W/report.json" "$prev" <<'PY'
import json, sys
label, tfile, rfile, prev = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
wall, user, sys_, rss = open(tfile).read().split()[-4:]
units = [u for u in json.load(open(rfile))["units"] if u["outcome"] == "compacted"]
wrote = sum(u["bytes"] for u in units)
if not units:
    read = 0
elif all("bytes_read" in u for u in units):
    read = sum(u["bytes_read"] for u in units)
else:  # older builds: every raw object and every previous file, whole
    read = sum(u["raw_bytes"] for u in units) + prev
rows = sum(u["rows_out"] for u in units)
kinds = sorted({u.get("kind", "full") for u in units})
rewritten = sum(u.get("files_rewritten", 0) for u in units)
print(f"{label:<28} wall {float(wall):7.2f} s  cpu {float(user)+float(sys_):7.2f} s  "
      f"wrote {wrote/2**20:8.2f} MiB  read {read/2**20:8.2f} MiB  units {len(units)}  "
      f"rows {rows}  kind {','.join(kinds)}  files rewritten {rewritten}  rss {int(rss)//1024} MiB")
PY
}

fresh() { rm -rf "$2"; cp -a "$1" "$2"; }

if [[ $WHAT == hour || $WHAT == all ]]; then
  H=2025-06-01T10
  rm -rf "$W/hour-src" && "$GEN/synthetic_hour" --dir "$W/hour-src" --hour $H \
    --nodes 300 --series 100 --step-secs 10 --objects 120 --relays 4
  fresh "$W/hour-src" "$W/hour-base"
  run "first compaction" "$W/hour-base" --hour $H
  for c in "1 new" "1 resend" "10800 new" "108000 new" "1080000 new"; do
    set -- $c
    fresh "$W/hour-base" "$W/case"
    "$GEN/late_data" late --dir "$W/case" --hour $H --rows "$1" --kind "$2" > /dev/null
    run "late: $1 $2 row(s)" "$W/case" --hour $H
  done
fi

if [[ $WHAT == replay || $WHAT == all ]]; then
  R="--from 2025-06-01T00 --to 2025-06-01T23"
  if [[ -z ${SKIP_ON_TIME:-} ]]; then
    rm -rf "$W/fleet" "$W/rest" "$W/replay-grouped" "$W/replay-per-hour"
    "$GEN/late_data" replay --dir "$W/fleet" --nodes 1000 --layout on-time
    "$GEN/late_data" replay --dir "$W/rest" --nodes 900 --layout on-time
    "$GEN/late_data" replay --dir "$W/replay-grouped" --first-node 900 --nodes 1000 --layout grouped
    "$GEN/late_data" replay --dir "$W/replay-per-hour" --first-node 900 --nodes 1000 --layout per-hour
    run "on time: 1000 nodes, 24 h" "$W/fleet" $R
    run "on time: 900 nodes, 24 h" "$W/rest" $R
  fi
  for layout in ${LAYOUTS:-grouped per-hour}; do
    fresh "$W/rest" "$W/case"
    # Renamed: the generator names objects like the on-time data's, and a
    # relay never reuses a name the manifests list as folded.
    (cd "$W/replay-$layout/raw" && find . -name '*.parquet') | while read -r f; do
      mkdir -p "$W/case/raw/$(dirname "$f")"
      cp "$W/replay-$layout/raw/$f" "$W/case/raw/$(dirname "$f")/replay-$(basename "$f")"
    done
    run "replay of 100 ($layout)" "$W/case" $R
  done
fi

# A relay SIGKILLed: its nodes resend their unacked window through another
# relay (late_data --kind failover). The hour compacted with those resends,
# against the same hour with no failure; and the resends arriving after the
# hour was compacted, against a run with nothing new.
if [[ $WHAT == failover || $WHAT == all ]]; then
  H=2025-06-01T10
  if [[ ! -d $W/hour-src ]]; then
    "$GEN/synthetic_hour" --dir "$W/hour-src" --hour $H \
      --nodes 300 --series 100 --step-secs 10 --objects 120 --relays 4
  fi
  for i in 1 2; do
    fresh "$W/hour-src" "$W/case"
    run "no failure: compaction ($i)" "$W/case" --hour $H
    fresh "$W/hour-src" "$W/case"
    "$GEN/late_data" late --dir "$W/case" --hour $H --kind failover > /dev/null
    run "relay killed: compaction ($i)" "$W/case" --hour $H
  done
  fresh "$W/hour-src" "$W/failover-base"
  run "compacted, then" "$W/failover-base" --hour $H > /dev/null
  fresh "$W/failover-base" "$W/case"
  run "no failure: next run" "$W/case" --hour $H
  fresh "$W/failover-base" "$W/case"
  "$GEN/late_data" late --dir "$W/case" --hour $H --rows 1 --kind resend > /dev/null
  run "one resend: next run" "$W/case" --hour $H
  fresh "$W/failover-base" "$W/case"
  "$GEN/late_data" late --dir "$W/case" --hour $H --kind failover > /dev/null
  run "relay killed: next run" "$W/case" --hour $H
fi
