#!/usr/bin/env bash
# The local demo: builds and starts metadata (8081), rating (8082) and movie
# (8083) on their embedded defaults (static discovery: no Docker, no Consul),
# seeds one movie with metadata and ratings, prints GetMovieDetails, then
# keeps the services running until Ctrl-C and stops them cleanly.
# When the Kafka-protocol broker Tansu is installed, it also starts one on
# 127.0.0.1:9092 (in memory), runs the rating service with Kafka ingestion,
# and publishes ratingsdata.json with ratingingester: GetMovieDetails is
# shown before and after.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-tools.sh
source scripts/env.sh

say() { printf '\n==> %s\n' "$*" >&2; }

say "building the services"
cargo build --locked --bins

KAFKA=127.0.0.1:9092
if command -v tansu >/dev/null 2>&1; then with_kafka=true; else with_kafka=false; fi
ports="8081 8082 8083"
$with_kafka && ports="$ports 9092"

for port in $ports; do
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

if $with_kafka; then
    say "starting the Kafka-protocol broker Tansu on $KAFKA (in memory)"
    (cd .demo && exec tansu broker --listener-url "tcp://$KAFKA" --advertised-listener-url "tcp://$KAFKA" \
        --storage-engine memory://tansu/ >tansu.log 2>&1) &
    pids+=("$!")
    for _ in $(seq 1 100); do (exec 3<>"/dev/tcp/127.0.0.1/9092") 2>/dev/null && break; sleep 0.1; done
else
    say "Tansu is not installed: running without Kafka ingestion"
    echo "    (to see ingestion too: cargo install tansu --features dynostore,libsql, a 10-15 minute build)" >&2
fi

./target/debug/metadata >.demo/metadata.log 2>&1 &
pids+=("$!")
if $with_kafka; then
    ./target/debug/rating --kafka-brokers "$KAFKA" >.demo/rating.log 2>&1 &
else
    ./target/debug/rating >.demo/rating.log 2>&1 &
fi
pids+=("$!")
./target/debug/movie >.demo/movie.log 2>&1 &
pids+=("$!")

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
grpcurl -plaintext -d '{"metadata": {"id": "2", "title": "Ronin", "description": "Mercenaries chase a mysterious briefcase.", "director": "John Frankenheimer"}}' \
    127.0.0.1:8081 MetadataService/PutMetadata
grpcurl -plaintext -d '{"user_id": "alice", "record_id": "1", "record_type": "movie", "rating_value": 5}' \
    127.0.0.1:8082 RatingService/PutRating
grpcurl -plaintext -d '{"user_id": "bob", "record_id": "1", "record_type": "movie", "rating_value": 4}' \
    127.0.0.1:8082 RatingService/PutRating
) >/dev/null

details() {
    say "grpcurl -plaintext -d '{\"movie_id\": \"$1\"}' 127.0.0.1:8083 MovieService/GetMovieDetails"
    grpcurl -plaintext -d "{\"movie_id\": \"$1\"}" 127.0.0.1:8083 MovieService/GetMovieDetails
}
details 1

if $with_kafka; then
    details 2
    say "publishing ratingsdata.json to Kafka: ./target/debug/ratingingester ratingsdata.json"
    KAFKA_BROKERS="$KAFKA" ./target/debug/ratingingester ratingsdata.json
    for _ in $(seq 1 50); do
        grpcurl -plaintext -d '{"movie_id": "2"}' 127.0.0.1:8083 MovieService/GetMovieDetails | grep -q '"rating"' && break
        sleep 0.1
    done
    say "after ingestion"
    details 1
    details 2
fi

say "the services keep running (logs in .demo/); try the README's grpcurl commands. Ctrl-C stops them."
wait "${pids[@]}"
