//! The rating service as the Kafka tests use it: started against a broker,
//! and asked for health and averages through typed clients.
use std::time::Duration;

use contract::api::{
    DeleteRatingRequest, GetAggregatedRatingRequest, PutRatingRequest, rating_service_client::RatingServiceClient,
};
use tonic::Code;

pub use crate::process::health;
use crate::{
    broker::Broker,
    process::{ServiceProcess, block_on, endpoint},
};

/// Starts a rating service ingesting from `broker` and waits until it
/// reports SERVING (its replay of the topic is done).
pub fn start_with_kafka(broker: &Broker) -> ServiceProcess {
    start_with_kafka_and(broker, &[])
}

/// As [`start_with_kafka`], with more environment (e.g. `DATABASE_URL`).
pub fn start_with_kafka_and(broker: &Broker, envs: &[(&str, &str)]) -> ServiceProcess {
    let brokers = broker.address();
    let mut all = vec![("KAFKA_BROKERS", brokers.as_str())];
    all.extend_from_slice(envs);
    let rating = ServiceProcess::start("rating", &["--write-timeout", "10s"], &all);
    rating.wait_until_serving(Duration::from_secs(30));
    rating
}

/// GetAggregatedRating of movie `id` as the service answers it, error
/// included.
pub fn try_average(rating: &ServiceProcess, id: &str) -> Result<f64, tonic::Status> {
    let request = GetAggregatedRatingRequest { record_id: id.into(), record_type: "movie".into() };
    block_on(async {
        let channel = endpoint(rating).connect().await.expect("connect to the rating service");
        RatingServiceClient::new(channel).get_aggregated_rating(request).await
    })
    .map(|answer| answer.into_inner().rating_value)
}

/// The aggregated rating of movie `id`, or None when it has no ratings
/// (NOT_FOUND; any other failure fails the test).
pub fn average(rating: &ServiceProcess, id: &str) -> Option<f64> {
    match try_average(rating, id) {
        Ok(average) => Some(average),
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
