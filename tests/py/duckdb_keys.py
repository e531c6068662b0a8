#!/usr/bin/env python3
"""A DuckDB glob reader of a compacted dataset on a local directory.

  duckdb_keys.py DIR

Reads DIR/dt=*/hour=*/*.parquet with Hive partitioning, as a query engine
does, and prints one JSON object: {"rows": N, "keys": K, "doubled": D} where
K counts distinct (node, series_id, time) and D the keys read more than once.
"""
import json
import sys

import duckdb

glob = sys.argv[1].rstrip("/") + "/dt=*/hour=*/*.parquet"
rows, keys = duckdb.sql(
    f"select count(*), count(distinct (node, series_id, time)) "
    f"from read_parquet('{glob}', hive_partitioning=true)").fetchall()[0]
doubled = duckdb.sql(
    f"select count(*) from (select node, series_id, time from read_parquet('{glob}', "
    f"hive_partitioning=true) group by all having count(*) > 1)").fetchall()[0][0]
print(json.dumps({"rows": rows, "keys": keys, "doubled": doubled}))
