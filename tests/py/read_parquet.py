#!/usr/bin/env python3
"""Independent reader of the relay's raw Parquet objects, with pyarrow.

Usage:
  read_parquet.py local DIR [--manifests]
  read_parquet.py s3 HOST:PORT BUCKET PREFIX [--manifests]   (plain HTTP, path style, any credentials)

A glob reader by default: every *.parquet file under DIR (or PREFIX) outside
folders named _* or .*. With --manifests, a manifest reader of the compacted
dataset DIR (or PREFIX): the highest-generation manifest of every shard under
_manifests/, and exactly the files it lists (at their staged key when a crash
left them only there).

Prints one JSON object: {"files": [...], "rows": [...]}. For each file: its
path, row count, row groups, whether every row group has min/max statistics
for metric and node, the compression codecs of its column chunks, whether its
rows are sorted by (metric, node, series_id, time), and whether every row's
event time falls in the hour its dt=/hour= partition names. Each row carries
its metric_type (None in a file of schema version 1, which has no such column).
"""
import datetime
import json
import re
import sys

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq


def list_files(fs, base):
    sel = pafs.FileSelector(base, recursive=True, allow_not_found=True)
    # Like query engines, skip anything under a folder named _* or .*
    # (the compactor's staging, manifests and leases).
    def visible(path):
        rel = path[len(base):].strip("/").split("/")
        return not any(p.startswith(("_", ".")) for p in rel)
    return sorted(i.path for i in fs.get_file_info(sel)
                  if i.type == pafs.FileType.File and i.path.endswith(".parquet") and visible(i.path))


def list_manifest_files(fs, base):
    """The files the current manifest of every shard lists (keys are relative
    to the store root, the parent of the compacted prefix)."""
    root = base.rsplit("/", 1)[0]
    sel = pafs.FileSelector(base + "/_manifests", recursive=True, allow_not_found=True)
    current = {}
    for i in fs.get_file_info(sel):
        name = i.path.rsplit("/", 1)[-1]
        if i.type == pafs.FileType.File and re.fullmatch(r"g\d+\.json", name):
            shard = i.path.rsplit("/", 1)[0]
            current[shard] = max(current.get(shard, name), name)
    out = []
    for shard, name in sorted(current.items()):
        with fs.open_input_stream(shard + "/" + name) as f:
            m = json.loads(f.read())
        for e in m["files"]:
            path = root + "/" + e["key"]
            if fs.get_file_info(path).type != pafs.FileType.File:
                path = root + "/" + e["staged"]
            out.append(path)
    return out


def main():
    manifests = "--manifests" in sys.argv
    sys.argv = [a for a in sys.argv if a != "--manifests"]
    if sys.argv[1] == "local":
        fs, base = pafs.LocalFileSystem(), sys.argv[2]
    else:
        fs = pafs.S3FileSystem(access_key="test", secret_key="test", endpoint_override=sys.argv[2],
                               scheme="http", region="us-east-1")
        base = sys.argv[3] + ("/" + sys.argv[4] if len(sys.argv) > 4 and sys.argv[4] else "")
    files, rows = [], []
    for path in (list_manifest_files(fs, base) if manifests else list_files(fs, base)):
        with fs.open_input_file(path) as f:
            pf = pq.ParquetFile(f)
            md = pf.metadata
            codecs = sorted({md.row_group(g).column(c).compression
                             for g in range(md.num_row_groups) for c in range(md.num_columns)})
            t = pf.read()
        times = t.column("time").cast(pa.int64()).to_pylist()
        keys = list(zip(t.column("metric").cast(pa.string()).to_pylist(),
                        t.column("node").cast(pa.string()).to_pylist(),
                        t.column("series_id").to_pylist(), times))
        m = re.search(r"dt=(\d{4}-\d{2}-\d{2})/hour=(\d{2})/", path)
        hours_ok = False
        if m:
            start = datetime.datetime.strptime(m.group(1) + m.group(2), "%Y-%m-%d%H").replace(tzinfo=datetime.timezone.utc)
            lo = int(start.timestamp()) * 1_000_000_000
            hours_ok = all(lo <= x < lo + 3_600_000_000_000 for x in times)
        names = [md.schema.column(c).path for c in range(md.num_columns)]
        def stats_ok(col):
            c = names.index(col)
            return all(md.row_group(g).column(c).statistics is not None
                       and md.row_group(g).column(c).statistics.has_min_max
                       for g in range(md.num_row_groups))
        files.append({"path": path, "rows": t.num_rows, "codecs": codecs,
                      "row_groups": md.num_row_groups,
                      "stats_metric_node": stats_ok("metric") and stats_ok("node"),
                      "sorted": keys == sorted(keys), "hours_ok": hours_ok,
                      "schema_version": (md.metadata or {}).get(b"horizon.schema", b"").decode()})
        labels = t.column("labels").to_pylist()
        recv = t.column("received_at").cast(pa.int64()).to_pylist()
        relays = t.column("relay").cast(pa.string()).to_pylist()
        # Schema version 2's last column; None for a version-1 file.
        types = (t.column("metric_type").cast(pa.string()).to_pylist()
                 if "metric_type" in t.column_names else [None] * t.num_rows)
        for i in range(t.num_rows):
            rows.append({"node": keys[i][1], "metric": keys[i][0], "labels": dict(labels[i]),
                         "series_id": keys[i][2], "time": times[i],
                         "value": t.column("value")[i].as_py(),
                         "received_at": recv[i], "relay": relays[i],
                         "metric_type": types[i]})
    print(json.dumps({"files": files, "rows": rows}))


if __name__ == "__main__":
    main()
