"""Checks the rollups of a local lake against an independent computation:
DuckDB GROUP BY over the compacted rows (glob reader).

Usage:
  check_rollups.py local DIR [COMPACTED [ROLLUPS]]
  check_rollups.py s3 HOST:PORT BUCKET PREFIX [COMPACTED [ROLLUPS]]   (moto: plain HTTP)

Files are listed and read with pyarrow (a glob reader: folders named _* are
skipped, as engines do), then queried with DuckDB.

Prints JSON: for the minute level (every compacted hour) and the 1-hour
level (closed days that have 1-hour files), the rows expected and found,
and the keys missing, extra, or with a differing value. count, min, max,
first, last and their times must be equal; sum and increase equal up to a
relative 1e-9 (the order of addition differs). Each rollup file's rows must
be in the order its footer declares (metric, node, series_id, interval_start):
"unsorted" counts the files that are not.
"""

import json
import sys

import duckdb
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

if sys.argv[1] == "local":
    fs, base, rest = pafs.LocalFileSystem(), sys.argv[2], sys.argv[3:]
else:
    fs = pafs.S3FileSystem(access_key="test", secret_key="test", endpoint_override=sys.argv[2],
                           scheme="http", region="us-east-1")
    base, rest = sys.argv[3] + "/" + sys.argv[4], sys.argv[5:]
compacted = rest[0] if len(rest) > 0 else "compacted"
rollups = rest[1] if len(rest) > 1 else "rollups"


unsorted = []


def sorted_rows(t):
    """Whether a rollup table's rows are in (metric, node, series_id, interval_start) order."""
    keys = list(zip(*(t.column(c).cast(pa.string()).to_pylist() if c in ("metric", "node")
                      else t.column(c).to_pylist()
                      for c in ("metric", "node", "series_id", "interval_start"))))
    return all(a <= b for a, b in zip(keys, keys[1:]))


def table(prefix):
    """Every visible Parquet file under base/prefix, as one table."""
    root = base + "/" + prefix
    sel = pafs.FileSelector(root, recursive=True, allow_not_found=True)
    paths = sorted(
        i.path for i in fs.get_file_info(sel)
        if i.type == pafs.FileType.File and i.path.endswith(".parquet")
        and not any(p.startswith(("_", ".")) for p in i.path[len(root):].strip("/").split("/"))
    )
    tables = []
    for p in paths:
        with fs.open_input_file(p) as f:
            tables.append(pq.read_table(f))
        if "interval_start" in tables[-1].column_names and not sorted_rows(tables[-1]):
            unsorted.append(p)
    if not tables:
        return None
    # Version-1 compacted files have no metric_type column: null there.
    t = pa.concat_tables(tables, promote_options="default")
    # Times as integer nanoseconds, exact.
    for i, f in enumerate(t.schema):
        if pa.types.is_timestamp(f.type):
            t = t.set_column(i, f.name, t.column(i).cast(pa.int64()))
    return t


con = duckdb.connect()
con.execute("SET TimeZone='UTC'")
compacted_t = table(compacted)
minute_t = table(rollups + "/1m")
hour_t = table(rollups + "/1h")
if compacted_t is not None and "metric_type" not in compacted_t.column_names:
    compacted_t = compacted_t.append_column("metric_type", pa.nulls(compacted_t.num_rows, pa.string()))
con.register("compacted_rows", compacted_t)
if minute_t is not None:
    con.register("minute_rows", minute_t)
if hour_t is not None:
    con.register("hour_rows", hour_t)

# The compacted rows, one per key.
con.execute(
    """
    CREATE TABLE pts AS
    SELECT node::VARCHAR AS node, metric::VARCHAR AS metric, series_id, time AS t, value,
           coalesce(metric_type::VARCHAR, 'unknown') AS mt
    FROM compacted_rows
    """
)
# The step into each sample from the one before it in its hour, reset-aware.
con.execute(
    """
    CREATE TABLE steps AS
    SELECT *, t // 60000000000 * 60000000000 AS minute, t // 3600000000000 * 3600000000000 AS hour,
           CASE WHEN prev IS NULL THEN 0.0
                WHEN value >= prev THEN value - prev
                ELSE value END AS step
    FROM (SELECT *, lag(value) OVER (
            PARTITION BY node, metric, series_id, t // 3600000000000 ORDER BY t) AS prev
          FROM pts)
    """
)


def expected(bucket):
    return f"""
    SELECT node, metric, series_id, {bucket} AS start,
           count(*) AS count, sum(value) AS sum, min(value) AS min, max(value) AS max,
           arg_min(value, t) AS first, min(t) AS first_time,
           arg_max(value, t) AS last, max(t) AS last_time,
           sum(step) AS increase,
           coalesce(arg_max(mt, t) FILTER (WHERE mt <> 'unknown'), 'unknown') AS metric_type
    FROM steps GROUP BY ALL
    """


def actual(name):
    return f"""
    SELECT node::VARCHAR, metric::VARCHAR, series_id, interval_start AS start,
           count, sum, min, max, first, first_time, last, last_time, increase, increase_assumed,
           metric_type::VARCHAR
    FROM {name}
    """


def cumulative(metric_type, metric):
    if metric_type in ("counter", "histogram", "unknown"):
        return True
    if metric_type == "summary":
        return metric.endswith("_sum") or metric.endswith("_count")
    return False


def close(a, b):
    return a == b or abs(a - b) <= 1e-9 * max(abs(a), abs(b))


def compare(want_sql, got_sql, where=""):
    want = {
        r[:4]: r[4:]
        for r in con.execute(f"SELECT * FROM ({want_sql}) {where}").fetchall()
    }
    got_rows = con.execute(got_sql).fetchall()
    got = {}
    doubled = 0
    for r in got_rows:
        if r[:4] in got:
            doubled += 1
        got[r[:4]] = r[4:]
    missing = [k for k in want if k not in got]
    extra = [k for k in got if k not in want]
    bad = []
    assumed = 0
    for k, w in want.items():
        g = got.get(k)
        if g is None:
            continue
        count, s, mn, mx, first, ft, last, lt, inc, mt = w
        gc, gs, gmn, gmx, gfirst, gft, glast, glt, ginc, gassumed, gmt = g
        ok = (count, mn, mx, first, ft, last, lt, mt) == (gc, gmn, gmx, gfirst, gft, glast, glt, gmt)
        ok = ok and close(s, gs)
        if cumulative(mt, k[1]):
            ok = ok and ginc is not None and close(inc, ginc)
        else:
            ok = ok and ginc is None
        ok = ok and gassumed == (mt == "unknown")
        assumed += int(bool(gassumed))
        if not ok:
            bad.append({"key": [str(x) for x in k], "want": [str(x) for x in w], "got": [str(x) for x in g]})
    return {
        "expected": len(want),
        "found": len(got_rows),
        "doubled": doubled,
        "missing": len(missing),
        "extra": len(extra),
        "mismatched": len(bad),
        "assumed": assumed,
        "examples": bad[:3] + [{"missing": [str(x) for x in k]} for k in missing[:2]]
        + [{"extra": [str(x) for x in k]} for k in extra[:2]],
    }


empty = {"expected": 0, "found": 0}
out = {"minute": compare(expected("minute"), actual("minute_rows")) if minute_t is not None else empty}
# The 1-hour level holds closed days only: compare the days it has.
days = []
if hour_t is not None:
    days = [r[0] for r in con.execute(
        "SELECT DISTINCT interval_start // 86400000000000 FROM hour_rows").fetchall()]
if days:
    where = "WHERE start // 86400000000000 IN (" + ",".join(str(d) for d in days) + ")"
    out["hour"] = compare(expected("hour"), actual("hour_rows"), where)
else:
    out["hour"] = empty
out["days"] = len(days)
out["unsorted"] = unsorted
print(json.dumps(out))
