#!/usr/bin/env bash
# Bytes a compactor shard reads from an hour's raw objects, for N = 1, 4 and
# 16 shards, each shard run alone on its own fresh copy of the objects
# (docs/benchmarks.md, "Compactor shards"). Also checks that the shards'
# files together hold what the one unit's file holds: the row count, the
# distinct (node, series_id, time) keys and a hash sum over every column.
#
#   bash compactor/bench/shards.sh [OBJECTS_DIR] [READ_GAP]
#
# OBJECTS_DIR: a store directory holding raw/ of hour 2025-06-01T10
# (default: the synthetic hour, written to /tmp/bench-shards/objects).
# READ_GAP: the compactor's --read-gap (default 0: exactly the parts).
# Needs a release build: cargo build --release -p horizon-compactor
#   --bin telemetry-compactor --example synthetic_hour
set -euo pipefail
cd "$(dirname "$0")/../.."
BIN=target/release/telemetry-compactor
WORK=${WORK:-/tmp/bench-shards}
HOUR=2025-06-01T10
OBJECTS=${1:-}
GAP=${2:-0}
if [[ -z "$OBJECTS" ]]; then
    OBJECTS=$WORK/objects
    rm -rf "$OBJECTS"
    target/release/examples/synthetic_hour --dir "$OBJECTS" --hour $HOUR \
        --nodes 300 --series 100 --step-secs 10 --objects 120 --relays 4
fi
echo "raw bytes: $(du -sb "$OBJECTS/raw" | cut -f1), objects: $(find "$OBJECTS/raw" -name '*.parquet' | wc -l)"
printf '| N | bytes read per shard: min | mean | max | mean / (N = 1) | all shards | CPU s, all shards | largest peak RSS |\n'
printf '| --- | --- | --- | --- | --- | --- | --- | --- |\n'
base=""
for N in 1 4 16; do
    reads=()
    cpu=0
    rss=0
    rm -rf "$WORK/out-$N"
    mkdir -p "$WORK/out-$N"
    for ((K = 0; K < N; K++)); do
        run=$WORK/run
        rm -rf "$run"
        mkdir -p "$run/work"
        cp -r "$OBJECTS" "$run/objects"
        /usr/bin/time -f "%U %S %M" -o "$run/time" "$BIN" --store-url "$run/objects" \
            --hour $HOUR --work-dir "$run/work" --shards "$N" --shard "$K" \
            --read-gap "$GAP" --json >"$run/report.json" 2>"$run/log"
        reads+=("$(python3 -c 'import json,sys; u=json.load(open(sys.argv[1]))["units"][0]; assert u["outcome"]=="compacted", u; print(u["bytes_read"])' "$run/report.json")")
        read -r u s m <"$run/time"
        cpu=$(python3 -c "print($cpu + $u + $s)")
        ((m > rss)) && rss=$m
        find "$run/objects/compacted" -name '*.parquet' | while read -r f; do
            cp "$f" "$WORK/out-$N/shard-$K-$(basename "$f")"
        done
    done
    python3 - "$N" "$cpu" "$rss" "${base:-0}" "${reads[@]}" <<'EOF'
import sys
n, cpu, rss, base = int(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
reads = [int(x) for x in sys.argv[5:]]
mean = sum(reads) / len(reads)
base = base or mean
print(f"| {n} | {min(reads):,} | {mean:,.0f} | {max(reads):,} | {mean / base:.3f} | "
      f"{sum(reads) / 1e6:.1f} MB ({sum(reads) / base:.2f} ×) | {cpu:.1f} | {rss // 1024} MiB |")
EOF
    [[ -z "$base" ]] && base=${reads[0]}
done
echo
echo "union of each N's files (rows, distinct keys, hash sum over all columns):"
for N in 1 4 16; do
    python3 - "$WORK/out-$N" <<'EOF'
import sys, duckdb
d = sys.argv[1]
r = duckdb.sql(f"""select count(*), count(distinct (node, series_id, time)),
    sum(hash(node, metric, labels, series_id, time, value, received_at, relay)::hugeint)
    from read_parquet('{d}/shard-*.parquet')""").fetchall()[0]
print(d.rsplit('-', 1)[1], r)
EOF
done
