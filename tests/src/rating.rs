//! The rating service as the Kafka tests use it: started against a broker,
//! and asked for health and averages with grpcurl.
use std::time::Duration;

use serde_json::json;

use crate::{broker::Broker, grpcurl, process::ServiceProcess, wait_until};

/// Starts a rating service ingesting from `broker` and waits until it
/// reports SERVING (its replay of the topic is done).
pub fn start_with_kafka(broker: &Broker) -> ServiceProcess {
    let brokers = broker.address();
    let rating = ServiceProcess::start("rating", &["--write-timeout", "10s"], &[("KAFKA_BROKERS", brokers.as_str())]);
    wait_until("rating reports SERVING", Duration::from_secs(30), || health(&rating) == "SERVING");
    rating
}

/// The overall health status, or "" when the call fails.
pub fn health(service: &ServiceProcess) -> String {
    let output = grpcurl::grpcurl(&service.authority(), Some("grpc.health.v1.Health/Check"), Some("{}"), &[]);
    if output.success { output.json()["status"].as_str().unwrap_or_default().to_string() } else { String::new() }
}

/// The aggregated rating of movie `id`, or None when it has no ratings
/// (NOT_FOUND; any other failure fails the test).
pub fn average(rating: &ServiceProcess, id: &str) -> Option<f64> {
    let request = json!({"record_id": id, "record_type": "movie"}).to_string();
    let output = grpcurl::call_failing(&rating.authority(), "RatingService/GetAggregatedRating", &request);
    if output.success {
        Some(output.json()["ratingValue"].as_f64().unwrap_or(0.0))
    } else {
        assert_eq!(output.code(), "NotFound", "{}", output.stderr);
        None
    }
}
