#!/usr/bin/env python3
"""Holds the Athena tables Terraform defines against the data they read.

  check_lake.py GLUE_TABLES_JSON DATA_MD COMPACTED_DIR QUERIES_DIR

- the Glue columns of every table are, in order, the columns docs/data.md
  documents, with the Hive type of each documented Arrow type;
- they are also the columns pyarrow reads from every compacted file, with
  the Hive type of each Arrow type it reads;
- the partition keys are the dataset's hive partitions (dt, hour);
- every example query (QUERIES_DIR/*.sql, saved in the Athena workgroup)
  runs in DuckDB over the compacted dataset seen as Athena sees it (a
  table named `compacted`, dt and hour as strings).
Prints a JSON object {"queries": {name: rows}} on success; exits 1 with the
problems otherwise.
"""

import glob
import json
import os
import re
import sys

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

problems = []


def problem(msg):
    problems.append(msg)
    print("PROBLEM:", msg, file=sys.stderr)


def hive_of_arrow(t):
    """The Hive DDL type Athena reads an Arrow column of type t as."""
    if pa.types.is_dictionary(t):
        return hive_of_arrow(t.value_type)
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        return "string"
    if pa.types.is_int64(t):
        return "bigint"
    if pa.types.is_int32(t):
        return "int"
    if pa.types.is_float64(t):
        return "double"
    if pa.types.is_timestamp(t):
        return "timestamp"
    if pa.types.is_map(t):
        return f"map<{hive_of_arrow(t.key_type)},{hive_of_arrow(t.item_type)}>"
    return f"<no Hive type for {t}>"


def hive_of_documented(text):
    """The Hive type of an Arrow type as docs/data.md writes it."""
    text = text.strip()
    m = re.match(r"dictionary<\s*int32\s*,\s*utf8\s*>", text)
    if m:
        return "string"
    m = re.match(r"map<\s*utf8\s*,\s*utf8\s*>", text)
    if m:
        return "map<string,string>"
    for arrow, hive in [("utf8", "string"), ("int64", "bigint"), ("float64", "double")]:
        if text.startswith(arrow):
            return hive
    if text.startswith("timestamp["):
        return "timestamp"
    return f"<no Hive type for documented {text!r}>"


def documented_columns(data_md):
    """(name, Hive type) of each row of the schema table in docs/data.md."""
    cols = []
    in_schema = False
    for line in open(data_md):
        if line.startswith("## "):
            in_schema = line.startswith("## Schema")
            continue
        m = re.match(r"\|\s*`([a-z_]+)`\s*\|\s*([^|]+)\|", line)
        if in_schema and m:
            cols.append((m.group(1), hive_of_documented(m.group(2))))
    if not cols:
        problem(f"{data_md}: no schema table found")
    return cols


def main():
    glue_json, data_md, compacted, queries_dir = sys.argv[1:]
    tables = json.load(open(glue_json))
    documented = documented_columns(data_md)
    files = sorted(glob.glob(os.path.join(compacted, "dt=*", "hour=*", "*.parquet")))
    if not files:
        problem(f"no compacted files under {compacted}")
    read = []
    for f in files:
        schema = pq.read_schema(f)
        cols = [(field.name, hive_of_arrow(field.type)) for field in schema]
        if read and cols != read:
            problem(f"{f}: columns {cols} differ from the other files' {read}")
        read = read or cols
    for name, table in tables.items():
        glue = [(c["name"], c["type"]) for c in table["columns"]]
        if glue != documented:
            problem(f"table {name}: Glue columns {glue} are not docs/data.md's {documented}")
        if glue != read:
            problem(f"table {name}: Glue columns {glue} are not what pyarrow reads {read}")
        keys = [k["name"] for k in table["partition_keys"]]
        if keys != ["dt", "hour"]:
            problem(f"table {name}: partition keys {keys}, the layout has dt and hour")
        if not table["location_template"].endswith("/dt=${dt}/hour=${hour}/"):
            problem(f"table {name}: location template {table['location_template']}")
        for f in files:
            rel = os.path.relpath(f, compacted)
            m = re.match(r"dt=(\d{4}-\d{2}-\d{2})/hour=(\d{2})/", rel)
            if not m:
                problem(f"{rel}: not in a dt=YYYY-MM-DD/hour=HH partition the projection covers")

    con = duckdb.connect()
    files_glob = os.path.join(compacted, "dt=*", "hour=*", "*.parquet").replace("'", "''")
    con.execute(
        f"CREATE VIEW compacted AS SELECT * FROM read_parquet('{files_glob}', "
        "hive_partitioning = true, hive_types = {'dt': VARCHAR, 'hour': VARCHAR})"
    )
    results = {}
    for path in sorted(glob.glob(os.path.join(queries_dir, "*.sql"))):
        name = os.path.basename(path)[:-4]
        try:
            table = con.sql(open(path).read()).fetch_arrow_table()
        except duckdb.Error as e:
            problem(f"query {name} does not run: {e}")
            continue
        # Timestamps as text (no time-zone package needed), the rest as is.
        columns = [c.cast(pa.string()) if pa.types.is_timestamp(c.type) else c
                   for c in table.columns]
        results[name] = [list(row) for row in zip(*(c.to_pylist() for c in columns))]
    if problems:
        sys.exit(1)
    print(json.dumps({"queries": results}))


if __name__ == "__main__":
    main()
