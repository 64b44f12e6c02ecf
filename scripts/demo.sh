#!/usr/bin/env bash
# The local demo: builds and starts metadata (8081), rating (8082) and movie
# (8083) on their embedded defaults (static discovery: no Docker, no Consul),
# with the Kafka-protocol broker Tansu on 127.0.0.1:9092 for rating
# ingestion; seeds two movies, ratings by two users, and publishes
# ratingsdata.json with ratingingester, showing GetMovieDetails before and
# after; then keeps everything running until Ctrl-C and stops it cleanly.
#
# Everything it stores is in .demo/data (SQLite files: metadata.db,
# rating.db, and the broker's tansu.db), so a second run starts with the
# movies and ratings of the first and only shows them. Logs are in .demo/
# (DEMO_DIR moves both elsewhere).
#
# However it ends (Ctrl-C, SIGTERM, a closed terminal, an error, or the
# reader of its output gone, as `tee` is after Ctrl-C in
# `scripts/demo.sh 2>&1 | tee demo.log`), it stops every process it started
# and says so.
#
#   scripts/demo.sh             # Tansu is built first when missing (cargo install, 10-15 min)
#   scripts/demo.sh --fresh     # start over: remove .demo/data first
#   scripts/demo.sh --no-kafka  # no broker and no ingestion (and no Tansu build)
set -euo pipefail
cd "$(dirname "$0")/.."

usage() {
    echo "usage: scripts/demo.sh [--fresh] [--no-kafka]" >&2
    echo "  --fresh     start over: remove the movies, ratings and topics kept in .demo/data" >&2
    echo "  --no-kafka  run without the Kafka broker and ingestion (no Tansu build when it is missing)" >&2
}
fresh=false
with_kafka=true
for argument in "$@"; do
    case "$argument" in
        --fresh) fresh=true ;;
        --no-kafka) with_kafka=false ;;
        -h | --help) usage; exit 0 ;;
        *) usage; exit 2 ;;
    esac
done

say() { printf '\n==> %s\n' "$*" >&2; }
# Where the clean-up reports: stderr, or the terminal when nothing reads stderr any more.
report() { say "$@" 2>/dev/null || { say "$@" 2>/dev/tty; } 2>/dev/null || true; }

# A reader that went away (tee, after Ctrl-C) must not kill this script
# before it has stopped what it started: writes fail instead (EPIPE).
trap '' PIPE

# The embedded defaults, whatever this shell has set.
unset CONSUL_HTTP_ADDR KAFKA_BROKERS DATABASE_URL

source scripts/env.sh
if $with_kafka; then
    if ! command -v tansu >/dev/null 2>&1; then
        say "rating ingestion needs the Kafka-protocol broker Tansu, which is not installed"
        echo "    building it now with cargo install takes 10-15 minutes on 2 cores, only this once;" >&2
        echo "    Ctrl-C and scripts/demo.sh --no-kafka to run without Kafka instead" >&2
    fi
    scripts/install-tools.sh --tansu
else
    scripts/install-tools.sh
fi

say "building the services"
cargo build --locked --bins
# Where cargo put them: CARGO_TARGET_DIR, when set, moves the target directory.
BIN="${CARGO_TARGET_DIR:-target}/debug"

KAFKA=127.0.0.1:9092
ports="8081 8082 8083"
$with_kafka && ports="$ports 9092"
for port in $ports; do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
        echo "port $port is already in use: stop what listens there (another demo?) and try again" >&2
        exit 1
    fi
done

DEMO_DIR=${DEMO_DIR:-.demo}
DATA=$DEMO_DIR/data
if $fresh && [ -e "$DATA" ]; then
    say "--fresh: removing $DATA (the movies, ratings and topics of earlier runs)"
    rm -rf "$DATA"
fi
mkdir -p "$DATA"

services=()
broker=
stop() {
    trap - INT TERM HUP EXIT
    set +e
    report "stopping (SIGTERM: deregister, drain, exit)"
    for pid in "${services[@]}"; do kill -TERM "$pid" 2>/dev/null; done
    for pid in "${services[@]}"; do wait "$pid" 2>/dev/null; done
    # The broker last, once rating has stopped consuming.
    if [ -n "$broker" ]; then
        kill -TERM "$broker" 2>/dev/null
        wait "$broker" 2>/dev/null
    fi
    report "stopped ${#services[@]} services${broker:+ and the broker}; the data stays in $DATA (scripts/demo.sh --fresh starts over), logs are in $DEMO_DIR/"
}
trap stop INT TERM HUP EXIT

if $with_kafka; then
    say "starting the Kafka-protocol broker Tansu on $KAFKA (topics in $DATA/tansu.db)"
    # Tansu takes a SQLite path relative to its working directory. In a
    # process group of its own (set -m), so that Ctrl-C reaches the services
    # but not the broker, which `stop` ends last, once rating has stopped.
    set -m
    tansu_log="$(cd "$DEMO_DIR" && pwd)/tansu.log"
    (cd "$DATA" && exec tansu broker --listener-url "tcp://$KAFKA" --advertised-listener-url "tcp://$KAFKA" \
        --storage-engine sqlite://tansu.db >"$tansu_log" 2>&1) &
    broker=$!
    set +m
    deadline=$((SECONDS + 30))
    until (exec 3<>"/dev/tcp/127.0.0.1/9092") 2>/dev/null; do
        if [ "$SECONDS" -ge "$deadline" ] || ! kill -0 "$broker" 2>/dev/null; then
            echo "the broker did not start; see $DEMO_DIR/tansu.log" >&2
            exit 1
        fi
        sleep 0.1
    done
else
    say "--no-kafka: running without the broker and rating ingestion"
fi

say "starting metadata, rating and movie (stores in $DATA)"
DATABASE_URL="sqlite:$DATA/metadata.db" "$BIN"/metadata >"$DEMO_DIR/metadata.log" 2>&1 &
services+=("$!")
if $with_kafka; then
    DATABASE_URL="sqlite:$DATA/rating.db" "$BIN"/rating --kafka-brokers "$KAFKA" >"$DEMO_DIR/rating.log" 2>&1 &
else
    DATABASE_URL="sqlite:$DATA/rating.db" "$BIN"/rating >"$DEMO_DIR/rating.log" 2>&1 &
fi
services+=("$!")
"$BIN"/movie >"$DEMO_DIR/movie.log" 2>&1 &
services+=("$!")

say "waiting for the three services to report SERVING"
for port in 8081 8082 8083; do
    deadline=$((SECONDS + 60))
    until grpcurl -plaintext 127.0.0.1:$port grpc.health.v1.Health/Check 2>/dev/null | grep -q '"SERVING"'; do
        if [ "$SECONDS" -ge "$deadline" ]; then
            echo "the service on port $port did not become ready; see $DEMO_DIR/*.log" >&2
            exit 1
        fi
        sleep 0.1
    done
done

details() {
    say "grpcurl -plaintext -d '{\"movie_id\": \"$1\"}' 127.0.0.1:8083 MovieService/GetMovieDetails"
    grpcurl -plaintext -d "{\"movie_id\": \"$1\"}" 127.0.0.1:8083 MovieService/GetMovieDetails
}
has_rating() {
    grpcurl -plaintext -d "{\"movie_id\": \"$1\"}" 127.0.0.1:8083 MovieService/GetMovieDetails 2>/dev/null |
        grep -q '"rating"'
}

if grpcurl -plaintext -d '{"movie_id": "1"}' 127.0.0.1:8081 MetadataService/GetMetadata >/dev/null 2>&1; then
    say "movies 1 and 2 are already stored: kept from an earlier run in $DATA"
    echo "    (scripts/demo.sh --fresh starts over)" >&2
else
    say "seeding movies 1 and 2, and ratings of movie 1 by two users"
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
fi
details 1
details 2

# Movie 2's ratings come from ratingsdata.json only: publish it unless an
# earlier run did.
if $with_kafka && ! has_rating 2; then
    say "publishing ratingsdata.json to Kafka: $BIN/ratingingester ratingsdata.json"
    KAFKA_BROKERS="$KAFKA" "$BIN"/ratingingester ratingsdata.json
    deadline=$((SECONDS + 30))
    until has_rating 2; do
        if [ "$SECONDS" -ge "$deadline" ]; then
            echo "rating has not applied the events within 30 s; see $DEMO_DIR/rating.log" >&2
            break
        fi
        sleep 0.1
    done
    say "after ingestion"
    details 1
    details 2
fi

say "the services keep running (logs in $DEMO_DIR/); try the README's grpcurl commands. Ctrl-C stops them."
wait "${services[@]}"
