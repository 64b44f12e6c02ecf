use std::sync::Arc;

use contract::api::{
    DeleteRatingRequest, DeleteRatingResponse, GetAggregatedRatingRequest, GetAggregatedRatingResponse,
    PutRatingRequest, PutRatingResponse, rating_service_server::RatingService,
};
use telemetry::{
    Chain,
    log_throttle::{REPORT_INTERVAL, Throttle},
};
use tonic::{Request, Response, Status};

use crate::{
    controller::{RatingController, RatingError, WriteError},
    model::{RatingRange, RatingValue, RecordKey, UserId},
    repository::RatingRepository,
};

pub struct RatingHandler<R> {
    controller: Arc<RatingController<R>>,
    range: RatingRange,
    /// While the store or the event log is down (or the store failing),
    /// every call would log.
    unavailable_warnings: Throttle,
    write_warnings: Throttle,
    failure_errors: Throttle,
}

impl<R> RatingHandler<R> {
    pub fn new(controller: Arc<RatingController<R>>, range: RatingRange) -> Self {
        Self {
            controller,
            range,
            unavailable_warnings: Throttle::new(REPORT_INTERVAL),
            write_warnings: Throttle::new(REPORT_INTERVAL),
            failure_errors: Throttle::new(REPORT_INTERVAL),
        }
    }

    /// The caller's status for `error`. A store or an event log that is
    /// down, or a store failing, is also this service's news: logged, at
    /// most once per interval.
    fn failed(&self, error: RatingError) -> Status {
        match &error {
            RatingError::NotFound(_) | RatingError::ValueRefused(_) => {}
            RatingError::Unavailable(_) => {
                if let Some(held_back) = self.unavailable_warnings.admit() {
                    tracing::warn!(error = %Chain(&error), held_back, "rating store unavailable");
                }
            }
            RatingError::Write(_) => {
                if let Some(held_back) = self.write_warnings.admit() {
                    tracing::warn!(error = %Chain(&error), held_back, "rating write not completed");
                }
            }
            RatingError::Storage(_) => {
                if let Some(held_back) = self.failure_errors.admit() {
                    tracing::error!(error = %Chain(&error), held_back, "rating store failure");
                }
            }
        }
        status(error)
    }
}

/// The status a caller gets for `error`. Only [`RatingHandler::failed`] calls it,
/// so that every failure of a call passes where it is logged.
fn status(error: RatingError) -> Status {
    let message = Chain(&error).to_string();
    match error {
        RatingError::NotFound(_) => Status::not_found(message),
        RatingError::Write(WriteError::Unavailable(_)) => Status::unavailable(message),
        RatingError::Write(WriteError::NotAcknowledged(_) | WriteError::NotApplied(_)) => {
            Status::deadline_exceeded(message)
        }
        RatingError::Unavailable(_) => Status::unavailable(message),
        RatingError::ValueRefused(_) => Status::invalid_argument(message),
        RatingError::Storage(_) => Status::internal(message),
    }
}

#[tonic::async_trait]
impl<R: RatingRepository> RatingService for RatingHandler<R> {
    #[tracing::instrument(name = "GetAggregatedRating", level = "debug", skip_all,
        fields(record_type = %request.get_ref().record_type, record_id = %request.get_ref().record_id))]
    async fn get_aggregated_rating(
        &self,
        request: Request<GetAggregatedRatingRequest>,
    ) -> Result<Response<GetAggregatedRatingResponse>, Status> {
        let request = request.into_inner();
        let key = RecordKey::parse(request.record_type, request.record_id)?;
        let aggregated = self.controller.aggregated(&key).await.map_err(|error| self.failed(error))?;
        tracing::debug!(average = aggregated.average, count = aggregated.count, "average served");
        Ok(Response::new(GetAggregatedRatingResponse { rating_value: aggregated.average }))
    }

    #[tracing::instrument(name = "PutRating", skip_all, fields(record_type = %request.get_ref().record_type,
        record_id = %request.get_ref().record_id, user_id = %request.get_ref().user_id))]
    async fn put_rating(&self, request: Request<PutRatingRequest>) -> Result<Response<PutRatingResponse>, Status> {
        let request = request.into_inner();
        let key = RecordKey::parse(request.record_type, request.record_id)?;
        let user = UserId::parse("user_id", request.user_id)?;
        let value = RatingValue::parse("rating_value", request.rating_value, self.range)?;
        self.controller.put(key, user, value).await.map_err(|error| self.failed(error))?;
        tracing::info!(rating_value = value.get(), "rating stored");
        Ok(Response::new(PutRatingResponse {}))
    }

    #[tracing::instrument(name = "DeleteRating", skip_all, fields(record_type = %request.get_ref().record_type,
        record_id = %request.get_ref().record_id, user_id = %request.get_ref().user_id))]
    async fn delete_rating(
        &self,
        request: Request<DeleteRatingRequest>,
    ) -> Result<Response<DeleteRatingResponse>, Status> {
        let request = request.into_inner();
        let key = RecordKey::parse(request.record_type, request.record_id)?;
        let user = UserId::parse("user_id", request.user_id)?;
        self.controller.delete(key, user).await.map_err(|error| self.failed(error))?;
        tracing::info!("rating deleted");
        Ok(Response::new(DeleteRatingResponse {}))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::repository::memory::MemoryRepository;

    fn handler() -> RatingHandler<MemoryRepository> {
        RatingHandler::new(Arc::new(RatingController::new(MemoryRepository::default())), RatingRange::default())
    }

    fn put(user: &str, record_id: &str, record_type: &str, value: i32) -> Request<PutRatingRequest> {
        Request::new(PutRatingRequest {
            user_id: user.into(),
            record_id: record_id.into(),
            record_type: record_type.into(),
            rating_value: value,
        })
    }

    fn get(record_id: &str, record_type: &str) -> Request<GetAggregatedRatingRequest> {
        Request::new(GetAggregatedRatingRequest { record_id: record_id.into(), record_type: record_type.into() })
    }

    #[tokio::test]
    async fn bad_input_is_invalid_argument_naming_the_field() {
        let handler = handler();
        for (request, message) in [
            (put("", "1", "movie", 3), "user_id must not be empty"),
            (put("u", "", "movie", 3), "record_id must not be empty"),
            (put("u", "1", "", 3), "record_type must not be empty"),
            (put("u", "1", "movie", 0), "rating_value must be between 1 and 5, got 0"),
            (put("u", "1", "movie", 6), "rating_value must be between 1 and 5, got 6"),
        ] {
            let status = handler.put_rating(request).await.unwrap_err();
            assert_eq!((status.code(), status.message()), (tonic::Code::InvalidArgument, message));
        }
        let status = handler.get_aggregated_rating(get("", "movie")).await.unwrap_err();
        assert_eq!((status.code(), status.message()), (tonic::Code::InvalidArgument, "record_id must not be empty"));
        let status = handler.get_aggregated_rating(get("1", "")).await.unwrap_err();
        assert_eq!((status.code(), status.message()), (tonic::Code::InvalidArgument, "record_type must not be empty"));
        let delete = DeleteRatingRequest { user_id: String::new(), record_id: "1".into(), record_type: "movie".into() };
        let status = handler.delete_rating(Request::new(delete)).await.unwrap_err();
        assert_eq!(status.code(), tonic::Code::InvalidArgument);
    }

    #[tokio::test]
    async fn no_ratings_is_not_found_then_the_average_is_served() {
        let handler = handler();
        let status = handler.get_aggregated_rating(get("1", "movie")).await.unwrap_err();
        assert_eq!((status.code(), status.message()), (tonic::Code::NotFound, "no ratings for record movie/1"));

        handler.put_rating(put("alice", "1", "movie", 5)).await.unwrap();
        handler.put_rating(put("bob", "1", "movie", 4)).await.unwrap();
        let answer = handler.get_aggregated_rating(get("1", "movie")).await.unwrap().into_inner();
        assert_eq!(answer.rating_value, 4.5);

        let delete = DeleteRatingRequest { user_id: "bob".into(), record_id: "1".into(), record_type: "movie".into() };
        handler.delete_rating(Request::new(delete)).await.unwrap();
        let answer = handler.get_aggregated_rating(get("1", "movie")).await.unwrap().into_inner();
        assert_eq!(answer.rating_value, 5.0);
    }

    const DATABASE: &str = "postgres://ratings:***@127.0.0.1:5432/ratings";

    /// A store every call of which fails with the error `kind` makes.
    struct Failing(fn(sqlx::Error) -> sql_store::QueryError);

    impl Failing {
        fn error(&self) -> crate::repository::RepositoryError {
            (self.0)(sqlx::Error::PoolTimedOut).into()
        }
    }

    impl RatingRepository for Failing {
        async fn apply(&self, _: &[crate::model::RatingEvent]) -> Result<(), crate::repository::RepositoryError> {
            Err(self.error())
        }

        async fn apply_logged(
            &self,
            _: &str,
            _: &[crate::repository::LoggedEvent],
        ) -> Result<crate::repository::Progress, crate::repository::RepositoryError> {
            Err(self.error())
        }

        async fn positions(
            &self,
            _: &str,
        ) -> Result<std::collections::HashMap<i32, i64>, crate::repository::RepositoryError> {
            Err(self.error())
        }

        async fn aggregate(
            &self,
            _: &RecordKey,
        ) -> Result<crate::model::AggregatedRating, crate::repository::RepositoryError> {
            Err(self.error())
        }
    }

    /// An event log the broker does not acknowledge.
    struct Unacknowledged;

    #[async_trait::async_trait]
    impl crate::controller::EventLog for Unacknowledged {
        async fn append(&self, _: &crate::model::RatingEvent) -> Result<(), WriteError> {
            Err(WriteError::NotAcknowledged(std::time::Duration::from_secs(1)))
        }
    }

    /// While the store is down (or failing), every read fails alike: the
    /// log says so once per interval, not once per call.
    #[tokio::test]
    async fn a_store_down_or_failing_is_logged_once_not_by_every_call() {
        use sql_store::QueryError;
        for (kind, code, level, message) in [
            (
                (|source| QueryError::Unavailable { database: DATABASE.into(), source }) as fn(_) -> _,
                tonic::Code::Unavailable,
                tracing::Level::WARN,
                "rating store unavailable",
            ),
            (
                |source| QueryError::Failed { database: DATABASE.into(), source },
                tonic::Code::Internal,
                tracing::Level::ERROR,
                "rating store failure",
            ),
        ] {
            let logs = telemetry::test_support::CapturedLogs::start();
            let handler = RatingHandler::new(Arc::new(RatingController::new(Failing(kind))), RatingRange::default());
            for _ in 0..100 {
                assert_eq!(handler.get_aggregated_rating(get("1", "movie")).await.unwrap_err().code(), code);
            }
            let logged = logs.events(level, message);
            assert_eq!(logged.len(), 1, "{}", logs.text());
            assert_eq!(logged[0].field("held_back"), Some("0"));
            let error = logged[0].field("error").unwrap_or_default();
            assert!(error.starts_with("the rating store") && error.contains(DATABASE), "{error}");
        }
    }

    /// The same for writes the event log does not complete.
    #[tokio::test]
    async fn writes_the_event_log_does_not_complete_are_logged_once_not_by_every_call() {
        let logs = telemetry::test_support::CapturedLogs::start();
        let controller = RatingController::with_event_log(MemoryRepository::default(), Arc::new(Unacknowledged));
        let handler = RatingHandler::new(Arc::new(controller), RatingRange::default());
        for _ in 0..100 {
            let status = handler.put_rating(put("alice", "1", "movie", 4)).await.unwrap_err();
            assert_eq!(status.code(), tonic::Code::DeadlineExceeded);
        }
        let logged = logs.events(tracing::Level::WARN, "rating write not completed");
        assert_eq!(logged.len(), 1, "{}", logs.text());
        assert_eq!(logged[0].field("held_back"), Some("0"));
        assert_eq!(logged[0].field("error"), Some("the event was not acknowledged by the broker within 1s"));
    }

    #[tokio::test]
    async fn a_wider_configured_range_accepts_imdb_style_values() {
        let handler = RatingHandler::new(
            Arc::new(RatingController::new(MemoryRepository::default())),
            RatingRange::new(1, 10).unwrap(),
        );
        handler.put_rating(put("alice", "1", "movie", 10)).await.unwrap();
        assert!(handler.put_rating(put("alice", "1", "movie", 11)).await.is_err());
    }
}
