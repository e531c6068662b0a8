"""The three capacity questions of docs/athena.md asked of one lake three
ways: the compacted points, the minute rollups and the 1-hour rollups
(docs/benchmarks.md, "Rollups").

Usage: rollup_queries.py OBJECTS_DIR

For each question and each source it prints the files a query engine opens
(every file of the partitions in range), the bytes it reads, the DuckDB wall
time, and checks that the three sources give the same answer.

Bytes read are what an engine that prunes like Athena or DuckDB reads: each
file's footer, and of the row groups whose `metric` statistics can match the
question, the compressed column chunks of the columns the question uses.
"""

import glob
import os
import sys
import time

import duckdb
import pyarrow.parquet as pq

root = sys.argv[1]
UTIL, TEMP = "DCGM_FI_DEV_GPU_UTIL", "DCGM_FI_DEV_GPU_TEMP"

SOURCES = {
    "points": f"{root}/compacted/dt=*/hour=*/*.parquet",
    "1m": f"{root}/rollups/1m/dt=*/hour=*/*.parquet",
    "1h": f"{root}/rollups/1h/dt=*/*.parquet",
}

# (columns read, SQL) per question and source; each SQL returns rows that
# must agree across sources.
def src(name):
    return f"read_parquet('{SOURCES[name]}', hive_partitioning = true)"


QUESTIONS = {
    "GPU-hours busy per node per day": (
        UTIL,
        {
            "points": (["node", "metric", "labels", "time", "value"], f"""
                SELECT node, day, round(sum(m) / 100, 6) FROM (
                  SELECT node, labels['gpu'] AS gpu, date_trunc('day', time) AS day,
                         date_trunc('hour', time) AS h, avg(value) AS m
                  FROM {src('points')} WHERE metric = '{UTIL}' GROUP BY ALL)
                GROUP BY ALL ORDER BY ALL"""),
            "1m": (["node", "metric", "labels", "interval_start", "sum", "count"], f"""
                SELECT node, day, round(sum(m) / 100, 6) FROM (
                  SELECT node, labels['gpu'] AS gpu, date_trunc('day', interval_start) AS day,
                         date_trunc('hour', interval_start) AS h, sum(sum) / sum(count) AS m
                  FROM {src('1m')} WHERE metric = '{UTIL}' GROUP BY ALL)
                GROUP BY ALL ORDER BY ALL"""),
            "1h": (["node", "metric", "labels", "interval_start", "sum", "count"], f"""
                SELECT node, date_trunc('day', interval_start) AS day,
                       round(sum(sum / count) / 100, 6)
                FROM {src('1h')} WHERE metric = '{UTIL}' GROUP BY ALL ORDER BY ALL"""),
        },
    ),
    "peak temperature per GPU per day": (
        TEMP,
        {
            "points": (["node", "metric", "labels", "time", "value"], f"""
                SELECT node, labels['gpu'], date_trunc('day', time), max(value)
                FROM {src('points')} WHERE metric = '{TEMP}' GROUP BY ALL ORDER BY ALL"""),
            "1m": (["node", "metric", "labels", "interval_start", "max"], f"""
                SELECT node, labels['gpu'], date_trunc('day', interval_start), max(max)
                FROM {src('1m')} WHERE metric = '{TEMP}' GROUP BY ALL ORDER BY ALL"""),
            "1h": (["node", "metric", "labels", "interval_start", "max"], f"""
                SELECT node, labels['gpu'], date_trunc('day', interval_start), max(max)
                FROM {src('1h')} WHERE metric = '{TEMP}' GROUP BY ALL ORDER BY ALL"""),
        },
    ),
    "idle GPUs (under 5% all day)": (
        UTIL,
        {
            "points": (["node", "metric", "labels", "time", "value"], f"""
                SELECT node, labels['gpu'], date_trunc('day', time) AS day
                FROM {src('points')} WHERE metric = '{UTIL}'
                GROUP BY ALL HAVING max(value) < 5 ORDER BY ALL"""),
            "1m": (["node", "metric", "labels", "interval_start", "max"], f"""
                SELECT node, labels['gpu'], date_trunc('day', interval_start) AS day
                FROM {src('1m')} WHERE metric = '{UTIL}'
                GROUP BY ALL HAVING max(max) < 5 ORDER BY ALL"""),
            "1h": (["node", "metric", "labels", "interval_start", "max"], f"""
                SELECT node, labels['gpu'], date_trunc('day', interval_start) AS day
                FROM {src('1h')} WHERE metric = '{UTIL}'
                GROUP BY ALL HAVING max(max) < 5 ORDER BY ALL"""),
        },
    ),
}


def bytes_read(pattern, metric, columns):
    """Files opened and bytes read by a pruning reader (see the header)."""
    files = sorted(glob.glob(pattern))
    total = 0
    for path in files:
        md = pq.ParquetFile(path).metadata
        size = os.path.getsize(path)
        with open(path, "rb") as f:
            f.seek(size - 8)
            total += 8 + int.from_bytes(f.read(4), "little")
        names = [md.schema.column(c).path.split(".")[0] for c in range(md.num_columns)]
        m = names.index("metric")
        for g in range(md.num_row_groups):
            rg = md.row_group(g)
            st = rg.column(m).statistics
            if st is not None and st.has_min_max and not (st.min <= metric <= st.max):
                continue
            for c in range(md.num_columns):
                if names[c] in columns:
                    total += rg.column(c).total_compressed_size
    return len(files), total


con = duckdb.connect()
con.execute("SET TimeZone = 'UTC'")
ok = True
print(f"{'question':<34} {'source':<7} {'files':>7} {'bytes read':>14} {'ratio':>8} {'duckdb s':>9}")
for q, (metric, by_source) in QUESTIONS.items():
    answers = {}
    base = None
    for name, (columns, sql) in by_source.items():
        files, nbytes = bytes_read(SOURCES[name], metric, columns)
        t = time.perf_counter()
        answers[name] = con.execute(sql).fetchall()
        elapsed = time.perf_counter() - t
        base = base or nbytes
        print(f"{q:<34} {name:<7} {files:>7} {nbytes:>14,} {base / nbytes:>7.1f}x {elapsed:>9.2f}")
    if not (answers["points"] == answers["1m"] == answers["1h"]):
        ok = False
        print(f"  ANSWERS DIFFER for {q}: " + str({k: v[:3] for k, v in answers.items()}))
    else:
        print(f"  same answer from all three ({len(answers['points'])} rows)")

# The size of a day: points against its rollups.
day = sorted(glob.glob(f"{root}/rollups/1h/dt=*"))[0].rsplit("=", 1)[1]
size = lambda p: sum(os.path.getsize(f) for f in glob.glob(p))
points = size(f"{root}/compacted/dt={day}/hour=*/*.parquet")
minute = size(f"{root}/rollups/1m/dt={day}/hour=*/*.parquet")
hour = size(f"{root}/rollups/1h/dt={day}/*.parquet")
print(f"a day ({day}): points {points:,} B, minute rollups {minute:,} B ({points / minute:.1f}x smaller), "
      f"1-hour rollups {hour:,} B ({points / hour:.1f}x smaller)")
sys.exit(0 if ok else 1)
