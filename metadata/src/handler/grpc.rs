use std::sync::Arc;

use contract::api::{
    GetMetadataRequest, GetMetadataResponse, PutMetadataRequest, PutMetadataResponse,
    metadata_service_server::MetadataService,
};
use telemetry::{
    Chain,
    log_throttle::{REPORT_INTERVAL, Throttle},
};
use tonic::{Request, Response, Status};

use crate::{
    controller::{MetadataController, MetadataError},
    model::{Metadata, MovieId},
    repository::MetadataRepository,
};

pub struct MetadataHandler<R> {
    controller: Arc<MetadataController<R>>,
    /// While the store is down or failing, every call would log.
    unavailable_warnings: Throttle,
    failure_errors: Throttle,
}

impl<R> MetadataHandler<R> {
    pub fn new(controller: Arc<MetadataController<R>>) -> Self {
        Self {
            controller,
            unavailable_warnings: Throttle::new(REPORT_INTERVAL),
            failure_errors: Throttle::new(REPORT_INTERVAL),
        }
    }

    /// The caller's status for `error`. A store that is down or failing is
    /// also this service's news: logged, at most once per interval.
    fn failed(&self, error: MetadataError) -> Status {
        match &error {
            MetadataError::NotFound(_) | MetadataError::ValueRefused(_) => {}
            MetadataError::Unavailable(_) => {
                if let Some(held_back) = self.unavailable_warnings.admit() {
                    tracing::warn!(error = %Chain(&error), held_back, "metadata store unavailable");
                }
            }
            MetadataError::Storage(_) => {
                if let Some(held_back) = self.failure_errors.admit() {
                    tracing::error!(error = %Chain(&error), held_back, "metadata store failure");
                }
            }
        }
        status(error)
    }
}

/// The status a caller gets for `error`. Only [`MetadataHandler::failed`] calls it,
/// so that every failure of a call passes where it is logged.
fn status(error: MetadataError) -> Status {
    // The message carries the causes (the database's redacted URL among
    // them), never a password.
    let message = Chain(&error).to_string();
    match error {
        MetadataError::NotFound(_) => Status::not_found(message),
        MetadataError::Unavailable(_) => Status::unavailable(message),
        MetadataError::ValueRefused(_) => Status::invalid_argument(message),
        MetadataError::Storage(_) => Status::internal(message),
    }
}

#[tonic::async_trait]
impl<R: MetadataRepository> MetadataService for MetadataHandler<R> {
    #[tracing::instrument(name = "GetMetadata", level = "debug", skip_all, fields(movie_id = %request.get_ref().movie_id))]
    async fn get_metadata(
        &self,
        request: Request<GetMetadataRequest>,
    ) -> Result<Response<GetMetadataResponse>, Status> {
        let id = MovieId::parse("movie_id", request.into_inner().movie_id)?;
        let metadata = self.controller.get(&id).await.map_err(|error| self.failed(error))?;
        tracing::debug!(title = %metadata.title, "metadata found");
        Ok(Response::new(GetMetadataResponse { metadata: Some(metadata.into()) }))
    }

    #[tracing::instrument(name = "PutMetadata", skip_all,
        fields(movie_id = %request.get_ref().metadata.as_ref().map(|m| m.id.as_str()).unwrap_or_default()))]
    async fn put_metadata(
        &self,
        request: Request<PutMetadataRequest>,
    ) -> Result<Response<PutMetadataResponse>, Status> {
        let metadata = Metadata::parse(request.into_inner().metadata)?;
        self.controller.put(metadata).await.map_err(|error| self.failed(error))?;
        tracing::info!("metadata stored");
        Ok(Response::new(PutMetadataResponse {}))
    }
}

#[cfg(test)]
mod tests {
    use contract::api;

    use super::*;
    use crate::repository::memory::MemoryRepository;

    fn handler() -> MetadataHandler<MemoryRepository> {
        MetadataHandler::new(Arc::new(MetadataController::new(MemoryRepository::default())))
    }

    #[tokio::test]
    async fn bad_input_is_invalid_argument_naming_the_field() {
        let handler = handler();
        let status =
            handler.get_metadata(Request::new(GetMetadataRequest { movie_id: String::new() })).await.unwrap_err();
        assert_eq!((status.code(), status.message()), (tonic::Code::InvalidArgument, "movie_id must not be empty"));

        let status = handler.put_metadata(Request::new(PutMetadataRequest { metadata: None })).await.unwrap_err();
        assert_eq!((status.code(), status.message()), (tonic::Code::InvalidArgument, "metadata is required"));

        let empty_id =
            PutMetadataRequest { metadata: Some(api::Metadata { title: "Heat".into(), ..Default::default() }) };
        let status = handler.put_metadata(Request::new(empty_id)).await.unwrap_err();
        assert_eq!((status.code(), status.message()), (tonic::Code::InvalidArgument, "metadata.id must not be empty"));
    }

    #[test]
    fn store_errors_map_to_precise_codes_naming_the_database() {
        use crate::repository::RepositoryError;
        let database = "postgres://movies:***@127.0.0.1:5432/movies".to_string();
        let unavailable = MetadataError::from(RepositoryError::from_sqlx(&database, sqlx::Error::PoolTimedOut));
        let answered = status(unavailable);
        assert_eq!(answered.code(), tonic::Code::Unavailable);
        assert_eq!(
            answered.message(),
            "the metadata store is unavailable: database postgres://movies:***@127.0.0.1:5432/movies is unavailable: \
             pool timed out while waiting for an open connection"
        );
        let refused =
            sql_store::QueryError::ValueRefused { database: database.clone(), source: sqlx::Error::RowNotFound };
        assert_eq!(status(MetadataError::from(RepositoryError::from(refused))).code(), tonic::Code::InvalidArgument);
        let failed = RepositoryError::from_sqlx(&database, sqlx::Error::RowNotFound);
        assert_eq!(status(MetadataError::from(failed)).code(), tonic::Code::Internal);
    }

    /// A store every call of which fails with the error `kind` makes.
    struct Failing(fn(sqlx::Error) -> sql_store::QueryError);

    impl MetadataRepository for Failing {
        async fn get(&self, _: &MovieId) -> Result<Metadata, crate::repository::RepositoryError> {
            Err((self.0)(sqlx::Error::PoolTimedOut).into())
        }

        async fn put(&self, _: Metadata) -> Result<(), crate::repository::RepositoryError> {
            Err((self.0)(sqlx::Error::PoolTimedOut).into())
        }
    }

    /// While the store is down (or failing), every call fails alike: the
    /// log says so once per interval, not once per call.
    #[tokio::test]
    async fn a_store_down_or_failing_is_logged_once_not_by_every_call() {
        use sql_store::QueryError;
        const DATABASE: &str = "postgres://movies:***@127.0.0.1:5432/movies";
        for (kind, code, level, message) in [
            (
                (|source| QueryError::Unavailable { database: DATABASE.into(), source }) as fn(_) -> _,
                tonic::Code::Unavailable,
                tracing::Level::WARN,
                "metadata store unavailable",
            ),
            (
                |source| QueryError::Failed { database: DATABASE.into(), source },
                tonic::Code::Internal,
                tracing::Level::ERROR,
                "metadata store failure",
            ),
        ] {
            let logs = telemetry::test_support::CapturedLogs::start();
            let handler = MetadataHandler::new(Arc::new(MetadataController::new(Failing(kind))));
            for _ in 0..100 {
                let get = handler.get_metadata(Request::new(GetMetadataRequest { movie_id: "1".into() }));
                assert_eq!(get.await.unwrap_err().code(), code);
            }
            let logged = logs.events(level, message);
            assert_eq!(logged.len(), 1, "{}", logs.text());
            assert_eq!(logged[0].field("held_back"), Some("0"));
            let error = logged[0].field("error").unwrap_or_default();
            assert!(error.starts_with("the metadata store") && error.contains(DATABASE), "{error}");
        }
    }

    #[tokio::test]
    async fn unknown_movie_is_not_found_and_stored_movie_is_returned() {
        let handler = handler();
        let status = handler.get_metadata(Request::new(GetMetadataRequest { movie_id: "1".into() })).await.unwrap_err();
        assert_eq!(status.code(), tonic::Code::NotFound);
        assert_eq!(status.message(), "no metadata for movie id \"1\"");

        let metadata = api::Metadata {
            id: "1".into(),
            title: "Heat".into(),
            description: "d".into(),
            director: "Michael Mann".into(),
        };
        handler.put_metadata(Request::new(PutMetadataRequest { metadata: Some(metadata.clone()) })).await.unwrap();
        let response = handler.get_metadata(Request::new(GetMetadataRequest { movie_id: "1".into() })).await.unwrap();
        assert_eq!(response.into_inner().metadata, Some(metadata));
    }
}
