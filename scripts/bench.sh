#!/usr/bin/env bash
# Builds the release binaries and runs the benchmark suite (target/release/bench-run), which starts an
# in-memory Tansu broker, a throwaway PostgreSQL cluster and the services on free 127.0.0.1 ports,
# measures (an open-loop sweep of GetMovieDetails from 10 % to 100 % of its saturation included), stops
# them, and writes BENCHMARKS.md, the figures behind its charts (docs/benchmarks/figures.json) and the
# charts (docs/benchmarks/*.svg).
#
#   scripts/bench.sh                   full run: 3 runs of each measurement, 1,000,000 events (~25 min)
#   BENCH_QUICK=1 scripts/bench.sh     smoke test: 1 run, short load runs, 100,000 events
#   BENCH_RUNS=5 scripts/bench.sh      more runs; see `target/release/bench-run --help` for the rest
#
# BENCH_TIME_LIMIT (default 45m) bounds the whole run; on any exit every process it started is stopped.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
source scripts/bounded.sh

if ! command -v tansu >/dev/null 2>&1; then
    echo "tansu (the Kafka-protocol broker) is not installed: cargo install tansu --features dynostore,libsql" >&2
    exit 1
fi
if ! command -v h2load >/dev/null 2>&1; then
    echo "h2load not found (apt-get install nghttp2-client): the h2load cross-check is skipped" >&2
fi

cargo build --release --locked -p bench -p metadata -p rating -p movie -p ratingingester

run_bounded "${BENCH_TIME_LIMIT:-45m}" target/release/bench-run "$@"
