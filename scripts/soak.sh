#!/usr/bin/env bash
# Soak: builds the binaries and runs target/debug/soak, which starts an in-memory Tansu broker and the
# three services on free 127.0.0.1 ports, seeds them, then calls GetMovieDetails at a steady rate while
# ratingingester publishes rating events every interval. It prints each interval's calls, errors and
# p99, and each service's resident memory at the start and the end, writes target/soak/soak.json, and
# exits non-zero on any error or when a service's memory grew by more than --max-rss-growth-mib.
#
#   scripts/soak.sh                                 10 minutes at 200 calls/s
#   scripts/soak.sh --duration 1m --rate 100        what CI runs
#   target/debug/soak --help                        every option
#
# SOAK_TIME_LIMIT (default: an hour) bounds the whole run; on any exit every process it started is stopped.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
source scripts/bounded.sh

if ! command -v tansu >/dev/null 2>&1; then
    echo "tansu (the Kafka-protocol broker) is not installed: scripts/install-tools.sh" >&2
    exit 1
fi

cargo build --locked -p bench -p metadata -p rating -p movie -p ratingingester

# Where cargo put them: CARGO_TARGET_DIR, when set, moves the target directory.
run_bounded "${SOAK_TIME_LIMIT:-60m}" "${CARGO_TARGET_DIR:-target}/debug/soak" "$@"
