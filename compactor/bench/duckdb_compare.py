#!/usr/bin/env python3
"""The compactor's merge done with DuckDB, for comparison (docs/benchmarks.md).

Usage: duckdb_compare.py RAW_HOUR_DIR OUT_FILE [MEMORY_LIMIT] [THREADS]

Reads every raw object of one hour, keeps one row per (node, series_id,
time) by the compactor's rule (the first received: least received_at, then
relay, then value: docs/data.md, "Duplicates"), sorts by metric, node,
series_id, time and writes one snappy Parquet file, under
`SET memory_limit` (default 512MB, the compactor's default --sort-memory)
and with as many threads as cores unless given. Spills go to a
`duckdb_tmp` folder next to OUT_FILE. Prints the time, the rows written and
the process's CPU seconds.
"""
import glob
import os
import resource
import sys
import time

import duckdb

src, out = sys.argv[1], sys.argv[2]
memory = sys.argv[3] if len(sys.argv) > 3 else "512MB"
threads = int(sys.argv[4]) if len(sys.argv) > 4 else os.cpu_count()
files = sorted(glob.glob(f"{src}/*.parquet"))
if not files:
    sys.exit(f"no .parquet files in {src}")
con = duckdb.connect()
con.execute(f"SET memory_limit='{memory}'")
con.execute(f"SET threads={threads}")
# Results without ORDER BY may be reordered; the COPY below has one.
con.execute("SET preserve_insertion_order=false")
con.execute(f"SET temp_directory='{os.path.dirname(os.path.abspath(out))}/duckdb_tmp'")
t0 = time.time()
con.execute(
    f"""
    COPY (
        SELECT * EXCLUDE (rn) FROM (
            SELECT *, row_number() OVER (
                PARTITION BY node, series_id, "time"
                ORDER BY received_at, relay, "value"
            ) AS rn
            FROM read_parquet({files!r})
        )
        WHERE rn = 1
        ORDER BY metric, node, series_id, "time"
    ) TO '{out}' (FORMAT parquet, COMPRESSION snappy)
    """
)
elapsed = time.time() - t0
rows = con.sql(f"SELECT count(*) FROM read_parquet('{out}')").fetchall()[0][0]
ru = resource.getrusage(resource.RUSAGE_SELF)
print(
    f"duckdb {duckdb.__version__}: {len(files)} objects, {rows} rows in {elapsed:.2f} s, "
    f"CPU {ru.ru_utime + ru.ru_stime:.2f} s, memory_limit {memory}, threads {threads}"
)
