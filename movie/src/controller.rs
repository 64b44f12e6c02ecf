//! The movie service's rules: details are the metadata and the rating,
//! fetched concurrently; a movie nobody rated yet has details without a
//! rating; what happens when the rating service fails is a policy.
use contract::id::MovieId;
use platform::{discovery::ServiceName, transport::Deadline};
use telemetry::log_throttle::{REPORT_INTERVAL, Throttle};

use crate::{
    gateway::{Failure, GatewayError, MetadataGateway, RatingGateway},
    model::{MovieDetails, Rating},
};

/// What to answer when the rating service is down or failing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum RatingFailurePolicy {
    /// Answer with the metadata and no rating, and flag the answer with the
    /// response header `x-rating-status: unavailable`.
    #[default]
    Omit,
    /// Fail the call with UNAVAILABLE.
    Fail,
}

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum MovieError {
    #[error("movie \"{0}\" not found")]
    NotFound(MovieId),
    #[error(transparent)]
    Dependency(GatewayError),
}

pub struct MovieController<M, R> {
    metadata: M,
    rating: R,
    policy: RatingFailurePolicy,
    /// While rating is down, every call would warn.
    unrated_warnings: Throttle,
}

impl<M: MetadataGateway, R: RatingGateway> MovieController<M, R> {
    pub fn new(metadata: M, rating: R, policy: RatingFailurePolicy) -> Self {
        Self { metadata, rating, policy, unrated_warnings: Throttle::new(REPORT_INTERVAL) }
    }

    /// The details of movie `id`, by the caller's `deadline` if it has one.
    pub async fn details(&self, id: &MovieId, deadline: Option<Deadline>) -> Result<MovieDetails, MovieError> {
        let (metadata, rating) = tokio::join!(self.metadata.get(id, deadline), self.rating.aggregated(id, deadline));
        let metadata = metadata.map_err(|error| match error.failure() {
            Failure::NotFound => MovieError::NotFound(id.clone()),
            _ => MovieError::Dependency(error),
        })?;
        let rating = match rating {
            Ok(average) => Rating::Rated(average),
            Err(error) if error.failure() == Failure::NotFound => Rating::NotRated,
            Err(error) => match self.policy {
                RatingFailurePolicy::Fail => return Err(MovieError::Dependency(error)),
                RatingFailurePolicy::Omit => {
                    if let Some(held_back) = self.unrated_warnings.admit() {
                        tracing::warn!(movie_id = %id, %error, held_back, "answering without a rating");
                    }
                    Rating::Unavailable
                }
            },
        };
        Ok(MovieDetails { metadata, rating })
    }
}

/// The service names the movie service looks up in discovery.
pub fn metadata_service() -> ServiceName {
    ServiceName::new(contract::service::METADATA)
}

pub fn rating_service() -> ServiceName {
    ServiceName::new(contract::service::RATING)
}

#[cfg(test)]
mod tests {
    use std::{
        sync::{
            Arc,
            atomic::{AtomicUsize, Ordering},
        },
        time::Duration,
    };

    use contract::metadata::Metadata;
    use platform::upstream::UpstreamError;
    use tokio::sync::Barrier;

    use super::*;

    fn id(raw: &str) -> MovieId {
        MovieId::parse("movie_id", raw.into()).unwrap()
    }

    fn heat() -> Metadata {
        Metadata { id: id("1"), title: "Heat".into(), description: "LA crime".into(), director: "Michael Mann".into() }
    }

    fn down(service: ServiceName) -> GatewayError {
        GatewayError::Call(UpstreamError::Unavailable {
            service,
            status: tonic::Status::unavailable("connection refused"),
        })
    }

    fn not_found(service: ServiceName, message: &str) -> GatewayError {
        GatewayError::Call(UpstreamError::Status { service, status: tonic::Status::not_found(message) })
    }

    /// A gateway answering from a fixed result, optionally meeting the other
    /// gateway at a barrier first (which only returns if both run at once).
    struct Fixed<T> {
        answer: Result<T, GatewayError>,
        barrier: Option<Arc<Barrier>>,
        calls: AtomicUsize,
    }

    impl<T> Fixed<T> {
        fn new(answer: Result<T, GatewayError>) -> Self {
            Self { answer, barrier: None, calls: AtomicUsize::new(0) }
        }
    }

    impl<T: Clone + Send + Sync + 'static> Fixed<T> {
        async fn answer(&self) -> Result<T, GatewayError> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            if let Some(barrier) = &self.barrier {
                barrier.wait().await;
            }
            self.answer.clone()
        }
    }

    impl MetadataGateway for Fixed<Metadata> {
        async fn get(&self, _: &MovieId, _: Option<Deadline>) -> Result<Metadata, GatewayError> {
            self.answer().await
        }
    }

    impl RatingGateway for Fixed<f64> {
        async fn aggregated(&self, _: &MovieId, _: Option<Deadline>) -> Result<f64, GatewayError> {
            self.answer().await
        }
    }

    fn controller(
        metadata: Result<Metadata, GatewayError>,
        rating: Result<f64, GatewayError>,
        policy: RatingFailurePolicy,
    ) -> MovieController<Fixed<Metadata>, Fixed<f64>> {
        MovieController::new(Fixed::new(metadata), Fixed::new(rating), policy)
    }

    #[tokio::test]
    async fn details_combine_metadata_and_the_average() {
        let details = controller(Ok(heat()), Ok(4.5), RatingFailurePolicy::Omit).details(&id("1"), None).await.unwrap();
        assert_eq!(details, MovieDetails { metadata: heat(), rating: Rating::Rated(4.5) });
    }

    #[tokio::test]
    async fn a_movie_nobody_rated_has_details_without_a_rating() {
        let not_rated = not_found(rating_service(), "no ratings");
        for policy in [RatingFailurePolicy::Omit, RatingFailurePolicy::Fail] {
            let details = controller(Ok(heat()), Err(not_rated.clone()), policy).details(&id("1"), None).await.unwrap();
            assert_eq!(details.rating, Rating::NotRated);
        }
    }

    #[tokio::test]
    async fn unknown_movie_is_not_found() {
        let missing = not_found(metadata_service(), "no metadata");
        let error =
            controller(Err(missing), Ok(3.0), RatingFailurePolicy::Omit).details(&id("9"), None).await.unwrap_err();
        assert_eq!(error, MovieError::NotFound(id("9")));
        assert_eq!(error.to_string(), "movie \"9\" not found");
    }

    #[tokio::test]
    async fn metadata_down_is_a_dependency_error_naming_the_service() {
        let error = controller(Err(down(metadata_service())), Ok(3.0), RatingFailurePolicy::Omit)
            .details(&id("1"), None)
            .await
            .unwrap_err();
        assert_eq!(error, MovieError::Dependency(down(metadata_service())));
        assert!(error.to_string().starts_with("metadata service is unavailable"), "{error}");
    }

    /// While rating is down, every call answers without a rating: the log
    /// says so once per interval, not once per call.
    #[tokio::test]
    async fn rating_down_is_warned_about_once_not_by_every_call() {
        let logs = telemetry::test_support::CapturedLogs::start();
        let controller = controller(Ok(heat()), Err(down(rating_service())), RatingFailurePolicy::Omit);
        for _ in 0..100 {
            assert_eq!(controller.details(&id("1"), None).await.unwrap().rating, Rating::Unavailable);
        }
        let warned = logs.events(tracing::Level::WARN, "answering without a rating");
        assert_eq!(warned.len(), 1, "{}", logs.text());
        assert_eq!(warned[0].field("held_back"), Some("0"));
        assert!(warned[0].field("error").is_some_and(|error| error.contains("rating service is unavailable")));
    }

    #[tokio::test]
    async fn rating_down_follows_the_policy() {
        let omitted = controller(Ok(heat()), Err(down(rating_service())), RatingFailurePolicy::Omit)
            .details(&id("1"), None)
            .await
            .unwrap();
        assert_eq!(omitted.rating, Rating::Unavailable);
        assert_eq!(omitted.metadata, heat());

        let timeout = GatewayError::Call(UpstreamError::DeadlineExceeded {
            service: rating_service(),
            timeout: Duration::from_secs(1),
        });
        let failed = controller(Ok(heat()), Err(timeout.clone()), RatingFailurePolicy::Fail)
            .details(&id("1"), None)
            .await
            .unwrap_err();
        assert_eq!(failed, MovieError::Dependency(timeout));
    }

    #[tokio::test]
    async fn both_dependencies_are_called_concurrently() {
        // Each gateway waits at a two-party barrier: this only completes if
        // both calls are in flight at the same time.
        let barrier = Arc::new(Barrier::new(2));
        let controller = MovieController::new(
            Fixed { barrier: Some(barrier.clone()), ..Fixed::new(Ok(heat())) },
            Fixed { barrier: Some(barrier), ..Fixed::new(Ok(2.0)) },
            RatingFailurePolicy::Omit,
        );
        let details = tokio::time::timeout(Duration::from_secs(5), controller.details(&id("1"), None)).await;
        assert!(details.is_ok(), "the calls ran one after the other");
        assert_eq!(controller.metadata.calls.load(Ordering::SeqCst), 1);
        assert_eq!(controller.rating.calls.load(Ordering::SeqCst), 1);
    }
}
