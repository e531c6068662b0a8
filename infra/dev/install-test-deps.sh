#!/usr/bin/env bash
# Installs what the test suite needs on a fresh machine. Idempotent, and
# quiet when everything is already there. Run as root (apt-get, pip and
# cargo install system-wide).
#
#   cargo-nextest              the test runner
#   cargo-fuzz                 the fuzz smoke runs (infra/dev/fuzz.sh), on the
#                              stable toolchain with RUSTC_BOOTSTRAP=1 and -s none
#   cargo-deb                  builds the agent's .deb, which agent/tests/deb.rs
#                              installs with dpkg
#   influxdb (Debian)          InfluxDB 1.x, for the v1 sink tests
#   victoria-metrics (Debian)  accepts the InfluxDB v2 write API, for the v2 sink tests
#   nginx-light, libnginx-mod-stream (Debian)  the UDP load balancer of the fleet test
#   prometheus-node-exporter (Debian)  a real exporter for the agent's tests
#   moto[server] (PyPI)        an S3 API, for the object-store tests
#   pyarrow (PyPI)             the independent Parquet reader the tests use
#   duckdb (PyPI)              the query engine of README's one-liner (tested)
#   prometheus-client (PyPI)   the independent exposition parser of the agent's tests
#   cargo-lambda (PyPI)        the Lambda runtime emulator the compactor's test uses
#   python-hcl2 (PyPI)         parses terraform/ (no terraform binary can run here)
#   checkov (PyPI, in /opt/horizon-checkov)  the Terraform policy checks; its own
#                              virtualenv, because it pins an old botocore
set -euo pipefail

say() { echo "install-test-deps: $*" >&2; }

if ! cargo nextest --version >/dev/null 2>&1; then
    say "installing cargo-nextest"
    cargo install --quiet --locked cargo-nextest
fi

if ! cargo fuzz --version >/dev/null 2>&1; then
    say "installing cargo-fuzz"
    cargo install --quiet --locked cargo-fuzz
fi

if ! cargo deb --version >/dev/null 2>&1; then
    say "installing cargo-deb"
    cargo install --quiet --locked cargo-deb
fi

apt_missing=()
command -v influxd >/dev/null 2>&1 || apt_missing+=(influxdb)
command -v victoria-metrics >/dev/null 2>&1 || apt_missing+=(victoria-metrics)
command -v nginx >/dev/null 2>&1 || apt_missing+=(nginx-light)
[ -e /usr/lib/nginx/modules/ngx_stream_module.so ] || apt_missing+=(libnginx-mod-stream)
command -v prometheus-node-exporter >/dev/null 2>&1 || apt_missing+=(prometheus-node-exporter)
if [ "${#apt_missing[@]}" -gt 0 ]; then
    say "installing ${apt_missing[*]} (apt)"
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${apt_missing[@]}" >/dev/null
fi

pip_missing=()
command -v moto_server >/dev/null 2>&1 || pip_missing+=("moto[server]")
python3 -c "import pyarrow" >/dev/null 2>&1 || pip_missing+=(pyarrow)
python3 -c "import duckdb" >/dev/null 2>&1 || pip_missing+=(duckdb)
python3 -c "import prometheus_client" >/dev/null 2>&1 || pip_missing+=(prometheus-client)
command -v cargo-lambda >/dev/null 2>&1 || pip_missing+=(cargo-lambda)
python3 -c "import hcl2" >/dev/null 2>&1 || pip_missing+=("python-hcl2==8.1.4")
if [ "${#pip_missing[@]}" -gt 0 ]; then
    say "installing ${pip_missing[*]} (pip)"
    python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore "${pip_missing[@]}"
    hash -r
fi

if [ ! -x /opt/horizon-checkov/bin/checkov ]; then
    say "installing checkov (pip, in /opt/horizon-checkov)"
    python3 -m venv /opt/horizon-checkov
    /opt/horizon-checkov/bin/pip install --quiet --disable-pip-version-check "checkov==3.3.30"
fi
