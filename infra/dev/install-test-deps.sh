#!/usr/bin/env bash
# Installs what the test suite needs on a fresh machine. Idempotent, and
# quiet when everything is already there. Run as root (apt-get, pip and
# cargo install system-wide).
set -euo pipefail

say() { echo "install-test-deps: $*" >&2; }

# Rust test runner.
if ! cargo nextest --version >/dev/null 2>&1; then
    say "installing cargo-nextest"
    cargo install --quiet --locked cargo-nextest
fi
