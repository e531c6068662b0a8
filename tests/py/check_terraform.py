#!/usr/bin/env python3
"""Static checks of terraform/ without a terraform binary.

  check_terraform.py TERRAFORM_DIR OUT_DIR [--checkov PATH]

- parses every *.tf with python-hcl2;
- every var./local./resource/data reference names something declared, and
  every variable is used;
- every file()/templatefile() path exists, and each templatefile() call
  passes exactly the names its template uses;
- renders the templates the way Terraform would (with the example inputs)
  into OUT_DIR: relay.yaml (with and without InfluxDB), relay-user-data.sh,
  compactor-fanout.asl.json, compactor-env.json (the function's
  environment) and glue-tables.json (each Glue table's dataset, columns,
  partition keys, location template and projection), for the caller to
  check against the real programs and data (check_lake.py); checks
  the shell scripts with `bash -n` and the state machine's structure;
- runs checkov (when --checkov is given): any failed check is an error, and
  every skip must give a reason.
Prints what it found; exits 1 on the first class of problems found.
"""

import glob
import json
import os
import re
import subprocess
import sys

import hcl2

problems = []


def problem(msg):
    problems.append(msg)
    print("PROBLEM:", msg)


def strings(node):
    """Every string in a parsed HCL tree (expressions are strings), without
    the parser's own keys (comments, block markers)."""
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict):
        for k, v in node.items():
            if k.startswith("__"):
                continue
            yield k
            yield from strings(v)
    elif isinstance(node, list):
        for v in node:
            yield from strings(v)


def unquote(name):
    return name.strip('"')


def value(v):
    """A literal from the parser: strings come back with their quotes."""
    if isinstance(v, str) and len(v) >= 2 and v[0] == '"' and v[-1] == '"':
        return v[1:-1]
    if isinstance(v, list):
        return [value(x) for x in v]
    if isinstance(v, dict):
        return {unquote(k): value(x) for k, x in v.items() if not k.startswith("__")}
    return v


def load(tf_dir):
    parsed = {}
    for path in sorted(glob.glob(os.path.join(tf_dir, "*.tf"))):
        with open(path) as f:
            try:
                parsed[os.path.basename(path)] = hcl2.load(f)
            except Exception as e:  # the parser's own error says where
                problem(f"{path}: does not parse: {e}")
    return parsed


def declarations(parsed):
    variables, locals_, resources, datas, outputs = {}, {}, set(), set(), set()
    for doc in parsed.values():
        for block in doc.get("variable", []):
            for name, body in block.items():
                variables[unquote(name)] = body
        for block in doc.get("locals", []):
            for name, value in block.items():
                if not name.startswith("__"):
                    locals_[name] = value
        for block in doc.get("resource", []):
            for rtype, named in block.items():
                for name in named:
                    resources.add(f"{unquote(rtype)}.{unquote(name)}")
        for block in doc.get("data", []):
            for dtype, named in block.items():
                for name in named:
                    datas.add(f"data.{unquote(dtype)}.{unquote(name)}")
        for block in doc.get("output", []):
            for name in block:
                outputs.add(unquote(name))
    return variables, locals_, resources, datas, outputs


BUILTIN_ROOTS = {"var", "local", "data", "path", "each", "count", "self", "terraform",
                 "rule", "statement"}


def check_references(parsed):
    variables, locals_, resources, datas, outputs = declarations(parsed)
    text = "\n".join(s for s in strings(list(parsed.values())))
    used_vars = set(re.findall(r"\bvar\.([a-z0-9_]+)", text))
    for v in sorted(used_vars - set(variables)):
        problem(f"var.{v} is used but not declared")
    for v in sorted(set(variables) - used_vars):
        problem(f"variable {v} is declared but never used")
    used_locals = set(re.findall(r"\blocal\.([a-z0-9_]+)", text))
    for l in sorted(used_locals - set(locals_)):
        problem(f"local.{l} is used but not defined")
    for l in sorted(set(locals_) - used_locals):
        problem(f"local {l} is defined but never used")
    for ref in sorted(set(re.findall(r"(?<![\w/.-])data\.([a-z0-9_]+\.[a-z0-9_]+)", text))):
        if f"data.{ref}" not in datas:
            problem(f"data.{ref} is used but not declared")
    for rtype, name in sorted(set(re.findall(r"(?<![.\w])(aws_[a-z0-9_]+)\.([a-z0-9_]+)", text))):
        if f"{rtype}.{name}" not in resources:
            problem(f"{rtype}.{name} is used but not declared")
    for v, body in variables.items():
        if not body.get("description"):
            problem(f"variable {v} has no description")
    print(f"references: {len(variables)} variables, {len(locals_)} locals, "
          f"{len(resources)} resources, {len(datas)} data sources, {len(outputs)} outputs")
    return variables


def resources_of(parsed, wanted_type=None):
    """(type, name, body) of every resource, optionally of one type."""
    for doc in parsed.values():
        for block in doc.get("resource", []):
            for rtype, named in block.items():
                if wanted_type and unquote(rtype) != wanted_type:
                    continue
                for name, body in named.items():
                    yield unquote(rtype), unquote(name), body


def template_names(text):
    """Names a Terraform template interpolates (not $${ escapes)."""
    names = set()
    for m in re.finditer(r"(?<!\$)\$\{\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*\}", text):
        names.add(m.group(1))
    for m in re.finditer(r"%\{\s*if\s+([a-zA-Z_][a-zA-Z0-9_]*)", text):
        names.add(m.group(1))
    return names


def render(text, values):
    """Renders the subset of Terraform's template language the templates use:
    ${name}, $${ escapes, and %{ if name != "" ~} ... %{ endif ~} blocks."""
    def if_block(m):
        name, body = m.group(1), m.group(2)
        return body if values[name] != "" else ""
    text = re.sub(r'%\{\s*if\s+(\w+)\s*!=\s*""\s*~\}\n(.*?)%\{\s*endif\s*~\}\n', if_block, text,
                  flags=re.S)
    if "%{" in text:
        raise ValueError("template directive the checker does not render")
    out = re.sub(r"(?<!\$)\$\{\s*(\w+)\s*\}", lambda m: str(values[m.group(1)]), text)
    return out.replace("$${", "${")


def check_templates(tf_dir, parsed):
    text = "\n".join(s for s in strings(list(parsed.values())))
    for path in sorted(set(re.findall(r'(?:file|templatefile)\("\$\{path\.module\}/([^"]+)"', text))):
        if "${each.key}" in path:
            continue  # checked per key below
        if not os.path.exists(os.path.join(tf_dir, path)):
            problem(f"{path} (read by file or templatefile) does not exist")
    # file("...${each.key}...") in a resource with for_each = toset([...]):
    # every key's file exists, and no file in that folder is left unused.
    for rtype, name, body in resources_of(parsed):
        keys = re.fullmatch(r'\$\{toset\(\[(.*)\]\)\}', str(body.get("for_each", "")), re.S)
        for s_ in strings(body):
            for m in re.finditer(r'file\("\$\{path\.module\}/([^"]*\$\{each\.key\}[^"]*)"', s_):
                if not keys:
                    problem(f"{rtype}.{name}: {m.group(1)} needs for_each = toset([...]) to be checked")
                    continue
                wanted = {m.group(1).replace("${each.key}", k)
                          for k in re.findall(r'"([^"]+)"', keys.group(1))}
                for path in sorted(wanted):
                    if not os.path.exists(os.path.join(tf_dir, path)):
                        problem(f"{rtype}.{name}: {path} does not exist")
                pattern = m.group(1).replace("${each.key}", "*")
                for path in sorted(glob.glob(os.path.join(tf_dir, pattern))):
                    if os.path.relpath(path, tf_dir) not in wanted:
                        problem(f"{os.path.relpath(path, tf_dir)} is not in {rtype}.{name}'s for_each")
    calls = 0
    for doc in parsed.values():
        for s in strings(doc):
            for m in re.finditer(r'templatefile\("\$\{path\.module\}/([^"]+)",\s*\{(.*?)\}\)', s, re.S):
                calls += 1
                path, args = m.group(1), m.group(2)
                passed = set(re.findall(r"(?m)^\s*([a-z_][a-z0-9_]*)\s*=", args))
                passed |= set(re.findall(r"[{,]\s*([a-z_][a-z0-9_]*)\s*=", "{" + args))
                try:
                    with open(os.path.join(tf_dir, path)) as f:
                        used = template_names(f.read())
                except FileNotFoundError:
                    continue
                for n in sorted(used - passed):
                    problem(f"{path} uses ${{{n}}} but its templatefile call does not pass it")
                for n in sorted(passed - used):
                    problem(f"{path}: templatefile passes {n}, which the template never uses")
    if calls == 0:
        problem("no templatefile call found (the parser's output changed?)")
    print(f"templates: {calls} templatefile calls checked")


def example_inputs(tf_dir, variables):
    values = {k: value(v.get("default")) for k, v in variables.items()}
    with open(os.path.join(tf_dir, "terraform.tfvars.example")) as f:
        example = hcl2.load(f)
    for k, v in example.items():
        if k.startswith("__"):
            continue
        if k not in variables:
            problem(f"terraform.tfvars.example sets {k}, which is not a variable")
        values[k] = value(v)
    for k, v in values.items():
        if v is None:
            problem(f"variable {k} is required but terraform.tfvars.example does not set it")
    return values


def write(out_dir, name, text):
    with open(os.path.join(out_dir, name), "w") as f:
        f.write(text)


def render_all(tf_dir, out_dir, parsed, v):
    read = lambda p: open(os.path.join(tf_dir, p)).read()
    store_url = f"s3://{v['bucket_name']}/{v['prefix']}"
    def relay_yaml(influx, quic=False):
        return render(read("templates/relay.yaml.tftpl"), {
            "quic_lb": "yes" if quic else "",
            "relay_port": v["relay_port"], "metrics_port": v["relay_metrics_port"],
            "max_connections": v["relay_max_connections"],
            "max_cardinality": v["relay_max_cardinality"],
            "max_series_per_node": v["relay_max_series_per_node"],
            "drain_grace_secs": v["relay_drain_grace_secs"],
            "drain_flush_secs": v["relay_drain_flush_secs"],
            "store_url": store_url, "region": v["region"],
            "influxdb_url": v["influxdb_url"] if influx else "",
            "influxdb_org": v["influxdb_org"], "influxdb_bucket": v["influxdb_bucket"],
        })
    config = relay_yaml(True)
    write(out_dir, "relay.yaml", config)
    write(out_dir, "relay-no-influxdb.yaml", relay_yaml(False))
    quic_config = relay_yaml(True, quic=True)
    write(out_dir, "relay-quic.yaml", quic_config)
    for mode, cfg in [("udp", config), ("quic", quic_config)]:
        render_user_data(tf_dir, out_dir, v, mode, cfg)
    render_rest(tf_dir, out_dir, parsed, v, store_url)


def render_user_data(tf_dir, out_dir, v, mode, config):
    read = lambda p: open(os.path.join(tf_dir, p)).read()
    name = "relay-user-data.sh" if mode == "udp" else f"relay-user-data-{mode}.sh"
    tg = f"arn:aws:elasticloadbalancing:{v['region']}:123456789012:targetgroup/{v['name']}/0123456789abcdef"
    user_data = render(read("templates/relay-user-data.sh.tftpl"), {
        "region": v["region"], "relay_binary_s3_uri": v["relay_binary_s3_uri"],
        "tls_cert_secret_arn": v["tls_cert_secret_arn"],
        "tls_key_secret_arn": v["tls_key_secret_arn"],
        "node_ca_secret_arn": v["node_ca_secret_arn"],
        "influxdb_token_secret_arn": v["influxdb_token_secret_arn"],
        "relay_config": config,
        "systemd_unit": read("../infra/systemd/telemetry-relay.service"),
        "drain_script": read("templates/scale-in-drain.sh"),
        "asg_name": f"{v['name']}-relays", "hook_name": "drain-on-terminate",
        "quic_lb": "yes" if mode == "quic" else "", "launch_hook_name": "register-quic-server-id",
        "target_group_arn": tg, "relay_port": v["relay_port"],
    })
    write(out_dir, name, user_data)
    if len(user_data.encode()) > 16384:
        problem(f"{name} is {len(user_data.encode())} bytes; EC2 allows 16384")
    for script_name, script in [(name, os.path.join(out_dir, name)),
                                ("scale-in-drain.sh", os.path.join(tf_dir, "templates/scale-in-drain.sh"))]:
        r = subprocess.run(["bash", "-n", script], capture_output=True, text=True)
        if r.returncode != 0:
            problem(f"{script_name} is not valid bash: {r.stderr.strip()}")
    # The config embedded in the user data is the rendered one, verbatim.
    if config not in user_data:
        problem(f"{name} does not carry the rendered relay config verbatim")
    registers = "aws elbv2 register-targets" in user_data
    if registers != (mode == "quic"):
        problem(f"{name}: registers with a QUIC server ID: {registers}, in {mode} mode")


def render_rest(tf_dir, out_dir, parsed, v, store_url):
    read = lambda p: open(os.path.join(tf_dir, p)).read()

    fn = f"arn:aws:lambda:{v['region']}:123456789012:function:{v['name']}-compactor"
    asl = render(read("templates/compactor-fanout.asl.json.tftpl"),
                 {"function_arn": fn, "max_concurrency": v["compactor_max_concurrency"]})
    write(out_dir, "compactor-fanout.asl.json", asl)
    check_asl(json.loads(asl))

    env = {}
    for doc in parsed.values():
        for block in doc.get("resource", []):
            for rtype, named in block.items():
                if unquote(rtype) != "aws_lambda_function":
                    continue
                for fn_body in named.values():
                    for e in fn_body.get("environment", []):
                        env.update(e["variables"])
    if not env:
        problem("the compactor function has no environment")
    resolved = {}
    for k, expr in env.items():
        if not k.startswith("__"):
            resolved[unquote(k)] = resolve(value(expr), v, store_url)
    write(out_dir, "compactor-env.json", json.dumps(resolved, indent=2))
    write(out_dir, "glue-tables.json", json.dumps(glue_tables(parsed, v), indent=2))


def glue_tables(parsed, v):
    """The Glue tables as Terraform would create them with the example
    inputs: name, the dataset they read (its prefix under var.prefix),
    columns and partition keys with their types, location template,
    projection parameters."""
    locals_ = {}
    for doc in parsed.values():
        for block in doc.get("locals", []):
            locals_.update({k: x for k, x in block.items() if not k.startswith("__")})
    ev = Evaluator(locals_, v)
    tables = {}
    for _, rname, body in resources_of(parsed, "aws_glue_catalog_table"):
        m = re.fullmatch(r"\$\{local\.(\w+)\}", str(body.get("for_each")))
        if not m:
            problem(f"aws_glue_catalog_table.{rname}: for_each must be a local")
            continue
        if m.group(1) == "lake_tables":
            # merge({compacted = ...}, var.athena_raw_table ? {raw = ...} : {})
            each = {"compacted": {"prefix": "${local.compacted_prefix}"}}
            if v["athena_raw_table"]:
                each["raw"] = {"prefix": "${local.raw_prefix}"}
            if not str(locals_["lake_tables"]).startswith("${merge({compacted = {prefix = local.compacted_prefix"):
                problem("local.lake_tables changed shape; teach the checker")
        else:
            # Unevaluated: each.value.X is evaluated once, where it is used.
            each = {unquote(k): {unquote(a): x for a, x in t.items() if not a.startswith("__")}
                    for k, t in locals_[m.group(1)].items() if not k.startswith("__")}
        sd = body["storage_descriptor"][0]
        dyn = [d for d in sd.get("dynamic", []) if '"columns"' in d]
        cols = re.fullmatch(r"\$\{local\.(\w+)\}", dyn[0]['"columns"']["for_each"]) if dyn else None
        if not cols:
            problem(f"aws_glue_catalog_table.{rname}: columns must come from a local list")
            continue
        serde = value(sd["ser_de_info"][0]["serialization_library"])
        if "parquet" not in serde.lower():
            problem(f"aws_glue_catalog_table.{rname}: serde {serde} is not Parquet's")
        params = re.fullmatch(r'\$\{merge\(([\w.]+), \{"EXTERNAL" = "TRUE", '
                              r'"storage\.location\.template" = "([^"]+)"\}\)\}',
                              str(body.get("parameters")))
        if not params:
            problem(f"aws_glue_catalog_table.{rname}: parameters changed shape; teach the checker")
            continue
        for name, table in each.items():
            ev.each = table
            keys = [{"name": ev.string(k["name"]), "type": ev.string(k["type"])}
                    for k in body.get("partition_keys", [])]
            for d in body.get("dynamic", []):
                if '"partition_keys"' in d:
                    block = d['"partition_keys"']
                    content = block["content"][0]
                    for key in ev.expr(block["for_each"]):
                        ev.iterator = ("partition_keys", key)
                        keys.append({"name": ev.string(content["name"]), "type": ev.string(content["type"])})
                    ev.iterator = None
            projection = dict(ev.expr("${" + params.group(1) + "}"))
            location = ev.string('"' + params.group(2) + '"')
            bucket_prefix = f"s3://{v['bucket_name']}/{v['prefix']}/"
            prefix = f"s3://{v['bucket_name']}/{ev.string(table['prefix'])}/"
            if not prefix.startswith(bucket_prefix):
                problem(f"table {name}: {prefix} is not under the store {bucket_prefix}")
            tables[name] = {
                "dataset": prefix[len(bucket_prefix):].rstrip("/"),
                "columns": [{"name": c["name"], "type": c["type"]} for c in ev.local(cols.group(1))],
                "partition_keys": keys,
                "location_template": location,
                "projection": projection,
            }
    for want in ("compacted", "rollups_1m", "rollups_1h"):
        if want not in tables:
            problem(f"no Glue table {want}")
    return tables


class Evaluator:
    """Evaluates the few expression shapes the Glue tables use: literals,
    lists and maps of them, local.X, var.X, each.value.X, the bucket's name,
    merge(local.a, local.b), local.m[iterator.value], and strings that
    interpolate them ($${ stays a literal ${)."""

    def __init__(self, locals_, v):
        self.locals, self.v, self.each, self.iterator = locals_, v, None, None

    def local(self, name):
        return self.expr(self.locals[name])

    def ref(self, ref):
        ref = ref.strip()
        m = re.fullmatch(r"merge\(([^,]+),\s*([^,]+)\)", ref)
        if m:
            return {**self.ref(m.group(1)), **self.ref(m.group(2))}
        m = re.fullmatch(r"local\.(\w+)\[(\w+)\.value\]", ref)
        if m and self.iterator and m.group(2) == self.iterator[0]:
            return self.local(m.group(1))[self.iterator[1]]
        if self.iterator and ref == f"{self.iterator[0]}.value":
            return self.iterator[1]
        m = re.fullmatch(r"local\.(\w+)", ref)
        if m:
            return self.local(m.group(1))
        m = re.fullmatch(r"var\.(\w+)", ref)
        if m:
            return self.v[m.group(1)]
        m = re.fullmatch(r"each\.value\.(\w+)", ref)
        if m:
            return self.expr(self.each[m.group(1)])
        if ref == "aws_s3_bucket.data.bucket":
            return self.v["bucket_name"]
        raise ValueError(f"the checker cannot evaluate {ref!r}")

    def string(self, s):
        out = self.expr(s)
        if not isinstance(out, str):
            raise ValueError(f"{s!r} is not a string")
        return out

    def expr(self, node):
        if isinstance(node, list):
            return [self.expr(x) for x in node]
        if isinstance(node, dict):
            return {unquote(k): self.expr(x) for k, x in node.items() if not k.startswith("__")}
        if not isinstance(node, str):
            return node
        whole = re.fullmatch(r"\$\{([^{}]*)\}", node)
        if whole:
            return self.ref(whole.group(1))
        text = node[1:-1] if len(node) >= 2 and node[0] == node[-1] == '"' else node
        parts = re.split(r"(\$\$\{|\$\{[^{}]*\})", text)
        out = []
        for part in parts:
            if part == "$${":
                out.append("${")
            elif part.startswith("${"):
                out.append(str(self.ref(part[2:-1])))
            else:
                out.append(part)
        return "".join(out)


def resolve(expr, v, store_url):
    """Evaluates the few expression shapes the function's environment uses."""
    s = str(expr)
    inner = s[2:-1] if s.startswith("${") and s.endswith("}") and s.count("${") == 1 else None
    if inner is None and "${" not in s:
        return s
    if s == "${local.store_url}":
        return store_url
    m = re.fullmatch(r"\$\{tostring\(var\.(\w+)\)\}", s)
    if m:
        return str(v[m.group(1)])
    m = re.fullmatch(r"\$\{var\.(\w+)\}", s)
    if m:
        return str(v[m.group(1)])
    if s == "${local.sort_memory_mib}MiB":
        return f"{int(v['compactor_memory_mb']) // 3}MiB"
    m = re.fullmatch(r'\$\{var\.raw_retention_days > 0 \? "(\w+)" : "(\w+)"\}', s)
    if m:
        return m.group(1) if v["raw_retention_days"] > 0 else m.group(2)
    problem(f"cannot evaluate the function environment expression {s!r}; teach the checker")
    return s


def check_asl(asl):
    def states(machine, where):
        start = machine.get("StartAt")
        sts = machine.get("States", {})
        if start not in sts:
            problem(f"{where}: StartAt {start!r} is not a state")
        reached, todo = set(), [start]
        while todo:
            name = todo.pop()
            if name in reached or name not in sts:
                continue
            reached.add(name)
            st = sts[name]
            nxt = st.get("Next")
            if nxt is not None:
                if nxt not in sts:
                    problem(f"{where}: {name} -> {nxt!r}, not a state")
                todo.append(nxt)
            elif not st.get("End") and st.get("Type") not in ("Succeed", "Fail", "Choice"):
                problem(f"{where}: {name} has neither Next nor End")
            retriers = st.get("Retry", [])
            for i, r in enumerate(retriers):
                if "States.ALL" in r["ErrorEquals"] and (i != len(retriers) - 1 or len(r["ErrorEquals"]) != 1):
                    problem(f"{where}: {name}: States.ALL must be alone in the last retrier")
            if st.get("Type") == "Task" and st.get("Resource") == "arn:aws:states:::lambda:invoke":
                if not st.get("Parameters", {}).get("FunctionName", "").startswith("arn:aws:lambda:"):
                    problem(f"{where}: {name} invokes no function ARN")
            if st.get("Type") == "Map":
                if not isinstance(st.get("MaxConcurrency"), int) or st["MaxConcurrency"] < 1:
                    problem(f"{where}: {name} needs a positive MaxConcurrency")
                states(st["ItemProcessor"], f"{where}/{name}")
        for name in set(sts) - reached:
            problem(f"{where}: state {name} is unreachable")
    states(asl, "state machine")
    print("state machine: structure checked")


def check_skips(tf_dir):
    n = 0
    for path in sorted(glob.glob(os.path.join(tf_dir, "*.tf"))):
        for i, line in enumerate(open(path), 1):
            m = re.search(r"#\s*checkov:skip=([A-Z0-9_]+)(?::(.*))?", line)
            if m:
                n += 1
                if not (m.group(2) or "").strip():
                    problem(f"{os.path.basename(path)}:{i}: checkov skip {m.group(1)} gives no reason")
    return n


def run_checkov(tf_dir, checkov):
    skips = check_skips(tf_dir)
    r = subprocess.run([checkov, "-d", tf_dir, "--framework", "terraform", "--quiet",
                        "--compact", "-o", "json", "--skip-download"],
                       capture_output=True, text=True)
    try:
        report = json.loads(r.stdout)
    except json.JSONDecodeError:
        problem(f"checkov gave no JSON report (exit {r.returncode}): {r.stderr[-2000:]}")
        return
    reports = report if isinstance(report, list) else [report]
    failed, passed, skipped = [], 0, 0
    for rep in reports:
        res = rep.get("results", {})
        failed += res.get("failed_checks", [])
        summary = rep.get("summary", {})
        passed += summary.get("passed", 0)
        skipped += summary.get("skipped", 0)
    for f in failed:
        problem(f"checkov {f['check_id']} ({f['check_name']}) fails on {f['resource']} "
                f"({f.get('file_path')}:{f.get('file_line_range')})")
    print(f"checkov: {passed} passed, {len(failed)} failed, {skipped} skipped "
          f"({skips} skips with reasons in the code)")


def main():
    args = sys.argv[1:]
    checkov = None
    if "--checkov" in args:
        i = args.index("--checkov")
        checkov = args[i + 1]
        del args[i:i + 2]
    tf_dir, out_dir = args
    parsed = load(tf_dir)
    if problems:
        sys.exit(1)
    variables = check_references(parsed)
    check_templates(tf_dir, parsed)
    values = example_inputs(tf_dir, variables)
    if not problems:
        render_all(tf_dir, out_dir, parsed, values)
    if checkov:
        run_checkov(tf_dir, checkov)
    if problems:
        print(f"{len(problems)} problem(s)")
        sys.exit(1)
    print("terraform: no problems")


if __name__ == "__main__":
    main()
