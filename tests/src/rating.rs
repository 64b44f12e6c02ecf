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
    let brokers = broker.address();
    let rating = ServiceProcess::start("rating", &["--write-timeout", "10s"], &[("KAFKA_BROKERS", brokers.as_str())]);
    rating.wait_until_serving(Duration::from_secs(30));
    rating
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
