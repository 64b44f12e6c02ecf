//! The rating service as the Kafka tests use it: started against a broker,
//! and asked for health and averages through typed clients.
use std::{future::Future, time::Duration};

use contract::api::{
    DeleteRatingRequest, GetAggregatedRatingRequest, PutRatingRequest, rating_service_client::RatingServiceClient,
};
use tonic::{Code, transport::Endpoint};
use tonic_health::pb::{HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient};

use crate::{broker::Broker, process::ServiceProcess, wait_until};

/// Starts a rating service ingesting from `broker` and waits until it
/// reports SERVING (its replay of the topic is done).
pub fn start_with_kafka(broker: &Broker) -> ServiceProcess {
    let brokers = broker.address();
    let rating = ServiceProcess::start("rating", &["--write-timeout", "10s"], &[("KAFKA_BROKERS", brokers.as_str())]);
    wait_until("rating reports SERVING", Duration::from_secs(30), || health(&rating) == "SERVING");
    rating
}

/// Runs one client call to completion from synchronous test code.
fn block_on<F: Future>(call: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a test runtime").block_on(call)
}

fn endpoint(service: &ServiceProcess) -> Endpoint {
    Endpoint::from_shared(format!("http://{}", service.authority())).expect("a valid endpoint")
}

/// The overall health status (`SERVING`, `NOT_SERVING`, ...), or "" when
/// the call fails.
pub fn health(service: &ServiceProcess) -> String {
    block_on(async {
        let channel = endpoint(service).connect().await.ok()?;
        let answer = HealthClient::new(channel).check(HealthCheckRequest { service: String::new() }).await.ok()?;
        ServingStatus::try_from(answer.into_inner().status).ok()
    })
    .map(|status| status.as_str_name().to_string())
    .unwrap_or_default()
}

/// The aggregated rating of movie `id`, or None when it has no ratings
/// (NOT_FOUND; any other failure fails the test).
pub fn average(rating: &ServiceProcess, id: &str) -> Option<f64> {
    let request = GetAggregatedRatingRequest { record_id: id.into(), record_type: "movie".into() };
    let answer = block_on(async {
        let channel = endpoint(rating).connect().await.expect("connect to the rating service");
        RatingServiceClient::new(channel).get_aggregated_rating(request).await
    });
    match answer {
        Ok(answer) => Some(answer.into_inner().rating_value),
        Err(status) if status.code() == Code::NotFound => None,
        Err(status) => panic!("GetAggregatedRating failed: {status}"),
    }
}

/// PutRating of movie `id` by `user`, which must succeed.
pub fn put(rating: &ServiceProcess, id: &str, user: &str, value: i32) {
    let request = PutRatingRequest {
        user_id: user.into(),
        record_id: id.into(),
        record_type: "movie".into(),
        rating_value: value,
    };
    block_on(async {
        let channel = endpoint(rating).connect().await.expect("connect to the rating service");
        RatingServiceClient::new(channel).put_rating(request).await.expect("PutRating succeeds")
    });
}

/// DeleteRating of movie `id` by `user`, which must succeed.
pub fn delete(rating: &ServiceProcess, id: &str, user: &str) {
    let request = DeleteRatingRequest { user_id: user.into(), record_id: id.into(), record_type: "movie".into() };
    block_on(async {
        let channel = endpoint(rating).connect().await.expect("connect to the rating service");
        RatingServiceClient::new(channel).delete_rating(request).await.expect("DeleteRating succeeds")
    });
}
