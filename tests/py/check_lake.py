#!/usr/bin/env python3
"""Holds the Athena tables Terraform defines against the data they read.

  check_lake.py GLUE_TABLES_JSON DATA_MD STORE_DIR QUERIES_DIR --tables T,U
                [--today YYYY-MM-DD] [--docs FILE.md ...]

For each table named in --tables (GLUE_TABLES_JSON is check_terraform.py's
rendering; each table reads STORE_DIR/<its dataset>):
- its Glue columns are, in order, the columns docs/data.md documents (the
  "Schema" table for compacted and raw, the "Rollup schema" table for the
  rollups), with the Hive type of each documented Arrow type;
- they are also the columns pyarrow reads from every file of its dataset,
  with the Hive type of each Arrow type it reads;
- its partition keys are the ones its location template names, each one
  projected, and every file sits in a folder the template covers.
Then every saved query (QUERIES_DIR/*.sql) that reads only those tables runs
in DuckDB over the dataset seen as Athena sees it (a view per table, the
partition columns as strings), rendered from Athena's SQL to DuckDB's:
- `element_at(labels, 'k')` (Athena: NULL for a missing key) becomes
  `labels['k']` (DuckDB's subscript gives NULL; its element_at a list);
- `date_format(x, '%Y-%m-%d')` becomes `strftime(x, '%Y-%m-%d')`;
- with --today D, `current_date` becomes `DATE 'D'`, so a "last 90 days"
  window is tested on a day in the past.
With --docs, every DuckDB one-liner of those files (`duckdb -c "SQL"`, or
Python's `duckdb.sql`) that follows a comment line `# <name>: ...` runs too
(data/objects/ read as STORE_DIR/, current_date as with --today); one named
after a saved query must give that query's rows.
Prints a JSON object {"queries": {name: rows}, "one_liners": {name: rows}}
on success; exits 1 with the problems otherwise.
"""

import argparse
import glob
import json
import math
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
    if pa.types.is_boolean(t):
        return "boolean"
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
    for arrow, hive in [("utf8", "string"), ("int64", "bigint"), ("float64", "double"),
                        ("bool", "boolean")]:
        if text.startswith(arrow):
            return hive
    if text.startswith("timestamp["):
        return "timestamp"
    return f"<no Hive type for documented {text!r}>"


def documented_columns(data_md, heading):
    """(name, Hive type) of each row of the first table after the heading of
    docs/data.md that starts with `heading`, up to the next heading."""
    cols = []
    inside = False
    for line in open(data_md):
        if line.startswith("#"):
            if cols:
                break
            inside = line.startswith(heading)
            continue
        m = re.match(r"\|\s*`([a-z_]+)`\s*\|\s*([^|]+)\|", line)
        if inside and m:
            cols.append((m.group(1), hive_of_documented(m.group(2))))
    if not cols:
        problem(f"{data_md}: no table found under {heading!r}")
    return cols


def schema_heading(table):
    return "### Rollup schema" if table.startswith("rollups") else "## Schema"


def layout(table, spec):
    """The partition folders of a table, from its location template: the
    keys in order, the glob of its files, and a regex of their paths."""
    m = re.search("/" + re.escape(spec["dataset"]) + r"/((?:[a-z]+=\$\{[a-z]+\}/)+)$",
                  spec["location_template"])
    if not m:
        problem(f"table {table}: location template {spec['location_template']} is not "
                f".../{spec['dataset']}/key=${{key}}/...")
        return [], "*.parquet", ".*"
    keys = re.findall(r"([a-z]+)=\$\{([a-z]+)\}", m.group(1))
    for k, v in keys:
        if k != v:
            problem(f"table {table}: folder {k}= holds ${{{v}}}")
    names = [k for k, _ in keys]
    files_glob = "/".join(f"{k}=*" for k in names) + "/*.parquet"
    value = {"dt": r"\d{4}-\d{2}-\d{2}", "hour": r"\d{2}"}
    path_re = "".join(f"{k}=({value.get(k, '[^/]+')})/" for k in names) + r"[^/_][^/]*\.parquet"
    return names, files_glob, path_re


def check_table(table, spec, data_md, store):
    names, files_glob, path_re = layout(table, spec)
    keys = [k["name"] for k in spec["partition_keys"]]
    if keys != names:
        problem(f"table {table}: partition keys {keys}, the location template has {names}")
    if any(k["type"] != "string" for k in spec["partition_keys"]):
        problem(f"table {table}: partition keys {spec['partition_keys']} must be strings")
    proj = spec["projection"]
    projected = sorted({k.split(".")[1] for k in proj if k.startswith("projection.")} - {"enabled"})
    if proj.get("projection.enabled") != "true" or projected != sorted(keys):
        problem(f"table {table}: projection of {projected} (enabled: "
                f"{proj.get('projection.enabled')}), partition keys {keys}")
    root = os.path.join(store, spec["dataset"])
    files = sorted(glob.glob(os.path.join(root, files_glob)))
    # Every Parquet file of the dataset, outside its `_` folders, must be in
    # a folder the template covers (a reader sees no other).
    every = sorted(p for p in glob.glob(os.path.join(root, "**", "*.parquet"), recursive=True)
                   if not any(part.startswith("_")
                              for part in os.path.relpath(p, root).split(os.sep)[:-1]))
    for f in every:
        if not re.fullmatch(path_re, os.path.relpath(f, root)):
            problem(f"table {table}: {os.path.relpath(f, root)} is not in a partition the "
                    f"projection covers ({path_re})")
    if not files:
        problem(f"table {table}: no files under {root}/{files_glob}")
    documented = documented_columns(data_md, schema_heading(table))
    read = []
    for f in files:
        cols = [(field.name, hive_of_arrow(field.type)) for field in pq.read_schema(f)]
        if read and cols != read:
            problem(f"{f}: columns {cols} differ from the other files' {read}")
        read = read or cols
    glue = [(c["name"], c["type"]) for c in spec["columns"]]
    if glue != documented:
        problem(f"table {table}: Glue columns {glue} are not docs/data.md's {documented}")
    if glue != read:
        problem(f"table {table}: Glue columns {glue} are not what pyarrow reads {read}")
    return os.path.join(root, files_glob), names


def duckdb_sql(sql, today):
    """Athena's SQL as DuckDB runs it (the module docstring lists the rules)."""
    out = re.sub(r"element_at\(\s*(\w+)\s*,\s*('[^']*')\s*\)", r"\1[\2]", sql)
    if out.count("date_format(") != len(re.findall(r"date_format\(.*?,\s*'%Y-%m-%d'\)", out)):
        problem("date_format with a pattern other than '%Y-%m-%d': teach duckdb_sql")
    out = out.replace("date_format(", "strftime(")
    if today:
        out = re.sub(r"\bcurrent_date\b", f"DATE '{today}'", out, flags=re.I)
    return out


def tables_read(sql):
    return set(re.findall(r"\b(?:FROM|JOIN)\s+([a-z_][a-z0-9_]*)", sql, flags=re.I))


def rows(relation):
    table = relation.fetch_arrow_table()
    # Times and dates as text (no time-zone package needed), the rest as is.
    columns = [c.cast(pa.string()) if pa.types.is_timestamp(c.type) or pa.types.is_date(c.type)
               else c for c in table.columns]
    return [list(row) for row in zip(*(c.to_pylist() for c in columns))]


def same_rows(a, b):
    if len(a) != len(b):
        return False
    for ra, rb in zip(a, b):
        if len(ra) != len(rb):
            return False
        for x, y in zip(ra, rb):
            if isinstance(x, float) or isinstance(y, float):
                if x is None or y is None or not math.isclose(x, y, rel_tol=1e-9, abs_tol=1e-9):
                    return False
            elif x != y:
                return False
    return True


def one_liners(doc):
    """(name, SQL) of each `duckdb -c "SQL"` or
    `python3 -c "import duckdb; print(duckdb.sql(\\"SQL\\"))"` line that
    follows a comment line `# <name>: ...`."""
    out = []
    name = None
    for line in open(doc):
        line = line.strip()
        m = re.match(r"#\s*([a-z0-9_]+):", line)
        if m:
            name = m.group(1)
            continue
        m = (re.fullmatch(r'duckdb -c "(.*)"', line)
             or re.fullmatch(r'python3 -c "import duckdb; print\(duckdb\.sql\(\\"(.*)\\"\)\)"', line))
        if m and name:
            out.append((name, m.group(1)))
        name = None
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("glue_json")
    ap.add_argument("data_md")
    ap.add_argument("store")
    ap.add_argument("queries_dir")
    ap.add_argument("--tables", required=True)
    ap.add_argument("--today")
    ap.add_argument("--docs", nargs="*", default=[])
    a = ap.parse_args()
    tables = json.load(open(a.glue_json))
    wanted = a.tables.split(",")
    con = duckdb.connect()
    for name in wanted:
        if name not in tables:
            problem(f"no Glue table {name} in {a.glue_json}")
            continue
        files_glob, keys = check_table(name, tables[name], a.data_md, a.store)
        types = ", ".join(f"'{k}': VARCHAR" for k in keys)
        con.execute(
            f"CREATE VIEW {name} AS SELECT * FROM read_parquet('{files_glob.replace(chr(39), chr(39) * 2)}', "
            f"hive_partitioning = true, hive_types = {{{types}}})"
        )
    results = {}
    for path in sorted(glob.glob(os.path.join(a.queries_dir, "*.sql"))):
        name = os.path.basename(path)[:-4]
        sql = open(path).read()
        read = tables_read(sql) & set(tables)
        if not read or not read <= set(wanted):
            continue
        try:
            results[name] = rows(con.sql(duckdb_sql(sql, a.today)))
        except duckdb.Error as e:
            problem(f"query {name} does not run: {e}")
    lines = {}
    for doc in a.docs:
        for name, sql in one_liners(doc):
            sql = sql.replace("data/objects/", a.store.rstrip("/") + "/")
            if a.today:
                sql = re.sub(r"\bcurrent_date\b", f"DATE '{a.today}'", sql, flags=re.I)
            try:
                got = rows(con.sql(sql))
            except duckdb.Error as e:
                problem(f"{doc}: the one-liner for {name} does not run: {e}")
                continue
            if name in results and not same_rows(got, results[name]):
                problem(f"{doc}: the one-liner for {name} gives {got}, the saved query "
                        f"{results[name]}")
            if name in lines and not same_rows(got, lines[name]):
                problem(f"{doc}: the one-liner for {name} gives {got}, another {lines[name]}")
            lines.setdefault(name, got)
    if problems:
        sys.exit(1)
    print(json.dumps({"queries": results, "one_liners": lines}))


if __name__ == "__main__":
    main()
