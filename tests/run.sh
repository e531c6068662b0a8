#!/usr/bin/env bash
# Runs every test of the workspace on this machine, installing what the
# tests need first. This is README's test command and what CI runs.
set -euo pipefail
cd "$(dirname "$0")/.."
bash infra/dev/install-test-deps.sh
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
cargo test --workspace --doc --quiet
cargo nextest run --workspace --no-fail-fast
# Every cargo-fuzz target for FUZZ_SECONDS (20) each; a crash fails the run.
bash infra/dev/fuzz.sh
