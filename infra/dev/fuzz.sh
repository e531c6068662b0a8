#!/usr/bin/env bash
# Runs every cargo-fuzz target of fuzz/ for a while: README's test command
# runs them for FUZZ_SECONDS each (default 20) as a smoke run; a crash (a
# panic, an abort) fails the run, and libFuzzer leaves the input in
# fuzz/artifacts/<target>/. An input that only runs out of memory or time is
# reported and kept but fails the run only with FUZZ_STRICT=1: the parquet
# reader has two such open findings (docs/fuzzing.md).
#
#   bash infra/dev/fuzz.sh                   every target, 20 s each
#   FUZZ_SECONDS=1800 bash infra/dev/fuzz.sh frame_batch   one target, 30 min
#
# FUZZ_RSS_MB (default 8192) is the memory an input may take before libFuzzer
# calls it a failure: above the 3.1 GiB one known raw-object input takes in
# the parquet reader (open, docs/fuzzing.md), so that it cannot fail a smoke
# run; set 2048 to hunt for such inputs.
#
# On the stable toolchain: cargo-fuzz passes nightly-only -Z flags to rustc,
# which RUSTC_BOOTSTRAP=1 allows, and `-s none` builds without a sanitizer
# (AddressSanitizer needs a nightly standard library; the code is safe Rust,
# `unsafe_code` is forbidden). Inputs found during a run go to a scratch
# corpus; the committed seeds in fuzz/seeds/<target>/ are only read.
set -euo pipefail
cd "$(dirname "$0")/../../fuzz"
export RUSTC_BOOTSTRAP=1
seconds="${FUZZ_SECONDS:-20}"
targets=("$@")
if [ "${#targets[@]}" -eq 0 ]; then
    targets=(frame_batch config raw_object exposition spool_record)
fi
scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
# One build for every target (they share the dependency graph).
if ! cargo fuzz build -s none -O >"$scratch/build.log" 2>&1; then
    tail -n 60 "$scratch/build.log" >&2
    echo "fuzz: build FAILED" >&2
    exit 1
fi
for t in "${targets[@]}"; do
    mkdir -p "$scratch/$t"
    echo "fuzz: $t for ${seconds}s" >&2
    if ! cargo fuzz run -s none -O "$t" "$scratch/$t" "seeds/$t" -- \
        -max_total_time="$seconds" -timeout=60 -rss_limit_mb="${FUZZ_RSS_MB:-8192}" -print_final_stats=1 \
        >"$scratch/$t.log" 2>&1; then
        if [ "${FUZZ_STRICT:-0}" != 1 ] && ! grep -q "panicked\|deadly signal\|ERROR: libFuzzer: \(crash\|deadly\)" "$scratch/$t.log" &&
            grep -q "ERROR: libFuzzer: \(out-of-memory\|timeout\)" "$scratch/$t.log"; then
            # Not a crash: an input took too much memory or time, as the
            # parquet crate's page-header decoding can (docs/fuzzing.md). Reported,
            # kept in fuzz/artifacts/, and not a failure unless FUZZ_STRICT=1.
            grep -E "ERROR: libFuzzer|^stat::(slowest_unit_time_sec|peak_rss_mb)" "$scratch/$t.log" | sed "s/^/fuzz: $t: /" >&2
            echo "fuzz: $t: an input ran out of memory or time (not a crash; see docs/fuzzing.md, finding 3); the input is in fuzz/artifacts/$t/" >&2
            continue
        fi
        grep -v "^Output of\|^	\[" "$scratch/$t.log" | grep -A 20 -m 1 "panicked\|ERROR" >&2 || tail -n 30 "$scratch/$t.log" | cut -c1-300 >&2
        mkdir -p artifacts && cp -r "$scratch/$t.log" "artifacts/$t.log" 2>/dev/null || true
        echo "fuzz: $t FAILED; the input is in fuzz/artifacts/$t/" >&2
        exit 1
    fi
    grep -E "^stat::number_of_executed_units|^#[0-9]+.*DONE" "$scratch/$t.log" | sed "s/^/fuzz: $t: /" >&2 || true
done
