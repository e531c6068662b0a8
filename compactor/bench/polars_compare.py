#!/usr/bin/env python3
"""The compactor's merge done with polars, for comparison (docs/benchmarks.md).

Usage: polars_compare.py RAW_HOUR_DIR OUT_FILE

Reads every raw object of one hour (lazy scan), keeps one row per
(node, series_id, time) by the compactor's rule (the first received: least
received_at, then relay, then value), sorts by metric, node, series_id, time and writes one
snappy Parquet file (streaming sink). Prints the time, rows and what became
of the `labels` column's type.
"""
import glob
import sys
import time

import polars as pl
import pyarrow.parquet as pq

src, out = sys.argv[1], sys.argv[2]
files = sorted(glob.glob(f"{src}/*.parquet"))
t0 = time.time()
lf = (
    pl.scan_parquet(files)
    .sort(["node", "series_id", "time", "received_at", "relay", "value"],
          descending=[False, False, False, False, False, False])
    .unique(subset=["node", "series_id", "time"], keep="first", maintain_order=True)
    .sort(["metric", "node", "series_id", "time"])
)
lf.sink_parquet(out, compression="snappy")
elapsed = time.time() - t0
md = pq.ParquetFile(out)
print(f"polars {pl.__version__}: {md.metadata.num_rows} rows in {elapsed:.2f} s")
print(f"labels written as: {md.schema_arrow.field('labels').type}")
print(f"node written as: {md.schema_arrow.field('node').type}")
