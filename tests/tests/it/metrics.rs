//! A real Prometheus scrapes the three services while real traffic flows:
//! GetMovieDetails calls (answered and not found) and rating events through
//! Kafka, a poison pill among them. Its queries must see each counter move
//! by exactly the traffic sent, round after round.
use std::{net::SocketAddr, time::Duration};

use e2e::{
    broker::Broker,
    calls::{movie_details, put_movie},
    free_port,
    process::ServiceProcess,
    prometheus::Prometheus,
    rating,
};
use serde_json::json;
use tonic::Code;

fn metrics_address() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], free_port()))
}

fn event(user: &str, kind: &str) -> (String, String) {
    let mut event = json!({"recordId": "1", "recordType": "movie", "userId": user, "eventType": kind});
    if kind == "put" {
        event["ratingValue"] = json!(4);
    }
    (format!("movie/1/{user}"), event.to_string())
}

#[test]
fn prometheus_sees_calls_and_ingestion_move_by_exactly_the_traffic_sent() {
    let broker = Broker::start_in_memory();
    let addresses = [metrics_address(), metrics_address(), metrics_address()];
    let flag = |address: &SocketAddr| address.to_string();
    let metadata = ServiceProcess::start("metadata", &["--metrics-addr", &flag(&addresses[0])], &[]);
    let brokers = broker.address();
    let rating = ServiceProcess::start(
        "rating",
        &["--metrics-addr", &flag(&addresses[1]), "--write-timeout", "10s"],
        &[("KAFKA_BROKERS", &brokers)],
    );
    let peers = [metadata.authority(), rating.authority()];
    let movie = ServiceProcess::start(
        "movie",
        &["--metadata-addrs", &peers[0], "--rating-addrs", &peers[1], "--metrics-addr", &flag(&addresses[2])],
        &[],
    );
    for service in [&metadata, &rating, &movie] {
        service.wait_until_serving(Duration::from_secs(30));
    }
    let prometheus = Prometheus::start(&addresses);
    prometheus.wait_for_value(r#"sum(up{job="suite"})"#, 3.0);
    prometheus.wait_for_value(r#"rating_consumer_caught_up{service_name="rating"}"#, 1.0);

    let server_calls = |service: &str, method: &str, code: &str| {
        format!(
            r#"sum(rpc_server_call_duration_seconds_count{{service_name="{service}",rpc_method="{method}",rpc_grpc_status_code="{code}"}})"#
        )
    };
    let client_calls = |target: &str, code: &str| {
        format!(
            r#"sum(rpc_client_call_duration_seconds_count{{service_name="movie",rpc_service="{target}",rpc_grpc_status_code="{code}"}})"#
        )
    };
    let applied = |kind: &str| format!(r#"sum(rating_events_applied_total{{event_type="{kind}"}})"#);
    let dead_lettered = r#"sum(rating_events_dead_lettered_total{reason="malformed_json"})"#;

    // Ingestion's counters are there from the start, at 0: a rate or an
    // increase counts their first event too.
    prometheus.wait_for_value(dead_lettered, 0.0);
    prometheus.wait_for_value(&applied("put"), 0.0);

    put_movie(&metadata, "1");
    for round in 1..=2 {
        let round = f64::from(round);
        // Three answered calls and one for a movie that does not exist.
        let codes = movie_details(&movie, &["1", "1", "1", "404"]);
        assert_eq!(codes, [Code::Ok, Code::Ok, Code::Ok, Code::NotFound]);
        // Two puts, one delete and a poison pill.
        let (first, second) = (format!("u{round}a"), format!("u{round}b"));
        broker.produce_raw(
            "ratings",
            &[event(&first, "put"), event(&second, "put"), event(&first, "delete"), ("x".into(), "{oops".into())],
        );

        prometheus.wait_for_value(&server_calls("movie", "GetMovieDetails", "0"), 3.0 * round);
        prometheus.wait_for_value(&server_calls("movie", "GetMovieDetails", "5"), round);
        prometheus.wait_for_value(&server_calls("metadata", "GetMetadata", "0"), 3.0 * round);
        prometheus.wait_for_value(&server_calls("metadata", "GetMetadata", "5"), round);
        // Rated only after round 1's events: each call asks rating once.
        prometheus.wait_for_value(&client_calls("MetadataService", "0"), 3.0 * round);
        prometheus.wait_for_value(&client_calls("MetadataService", "5"), round);
        let rating_calls = prometheus.value(&client_calls("RatingService", "0")).unwrap_or(0.0)
            + prometheus.value(&client_calls("RatingService", "5")).unwrap_or(0.0);
        assert_eq!(rating_calls, 4.0 * round, "each GetMovieDetails asks the rating service once");

        prometheus.wait_for_value(&applied("put"), 2.0 * round);
        prometheus.wait_for_value(&applied("delete"), round);
        prometheus.wait_for_value(dead_lettered, round);
    }
    // A PutRating goes through the topic: one write, acknowledged and applied.
    rating::put(&rating, "1", "zoe", 2);
    prometheus.wait_for_value(r#"sum(rating_writes_total{outcome="ok"})"#, 1.0);
    prometheus.wait_for_value(&applied("put"), 5.0);
    // The lag of each of the topic's three partitions, from librdkafka's statistics.
    prometheus.wait_for_value(r#"count(rating_consumer_lag{service_name="rating"})"#, 3.0);
    prometheus.wait_for_value(r#"sum(discovery_instances{service_name="movie"})"#, 2.0);
    assert_eq!(
        prometheus.value(r#"sum(rpc_server_call_duration_seconds_count{rpc_service="grpc.health.v1.Health"})"#),
        None,
        "health checks are not counted"
    );
}
