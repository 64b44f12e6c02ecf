#!/usr/bin/env bash
# The local demo: builds and starts metadata (8081), rating (8082) and movie
# (8083) on their embedded defaults (static discovery: no Docker, no Consul),
# seeds one movie with metadata and ratings, prints GetMovieDetails, then
# keeps the services running until Ctrl-C and stops them cleanly.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-tools.sh
source scripts/env.sh

say() { printf '\n==> %s\n' "$*" >&2; }

say "building the services"
cargo build --locked --bins

for port in 8081 8082 8083; do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
        echo "port $port is already in use: stop what listens there (another demo?) and try again" >&2
        exit 1
    fi
done

mkdir -p .demo
pids=()
stop() {
    trap - INT TERM EXIT
    say "stopping the services (SIGTERM: deregister, drain, exit)"
    for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
    echo "stopped; logs are in .demo/" >&2
}
trap stop INT TERM EXIT

for service in metadata rating movie; do
    ./target/debug/$service >".demo/$service.log" 2>&1 &
    pids+=("$!")
done

say "waiting for the three services to report SERVING"
for port in 8081 8082 8083; do
    for _ in $(seq 1 100); do
        if grpcurl -plaintext 127.0.0.1:$port grpc.health.v1.Health/Check 2>/dev/null | grep -q SERVING; then
            continue 2
        fi
        sleep 0.1
    done
    echo "the service on port $port did not become ready; see .demo/*.log" >&2
    exit 1
done

say "seeding movie 1: metadata, and ratings by two users"
(set -x
grpcurl -plaintext -d '{"metadata": {"id": "1", "title": "Heat", "description": "A group of professional bank robbers start to feel the heat from police.", "director": "Michael Mann"}}' \
    127.0.0.1:8081 MetadataService/PutMetadata
grpcurl -plaintext -d '{"user_id": "alice", "record_id": "1", "record_type": "movie", "rating_value": 5}' \
    127.0.0.1:8082 RatingService/PutRating
grpcurl -plaintext -d '{"user_id": "bob", "record_id": "1", "record_type": "movie", "rating_value": 4}' \
    127.0.0.1:8082 RatingService/PutRating
) >/dev/null

say "grpcurl -plaintext -d '{\"movie_id\": \"1\"}' 127.0.0.1:8083 MovieService/GetMovieDetails"
grpcurl -plaintext -d '{"movie_id": "1"}' 127.0.0.1:8083 MovieService/GetMovieDetails

say "the services keep running (logs in .demo/); try the README's grpcurl commands. Ctrl-C stops them."
wait "${pids[@]}"
