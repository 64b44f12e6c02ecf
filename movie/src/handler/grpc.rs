use std::sync::Arc;

use contract::api::{GetMovieDetailsRequest, GetMovieDetailsResponse, movie_service_server::MovieService};
use contract::id::MovieId;
use platform::transport::Deadline;
use telemetry::log_throttle::{REPORT_INTERVAL, Throttle};
use tonic::{Request, Response, Status, metadata::MetadataValue};

use crate::{
    controller::{MovieController, MovieError},
    gateway::{Failure, MetadataGateway, RatingGateway},
    model::Rating,
};

/// Response header set when the details go out without a rating because
/// the rating service could not answer (value `unavailable`).
pub const RATING_STATUS_HEADER: &str = "x-rating-status";

pub struct MovieHandler<M, R> {
    controller: Arc<MovieController<M, R>>,
    /// While a dependency is down, every call would warn.
    failure_warnings: Throttle,
}

impl<M, R> MovieHandler<M, R> {
    pub fn new(controller: Arc<MovieController<M, R>>) -> Self {
        Self { controller, failure_warnings: Throttle::new(REPORT_INTERVAL) }
    }
}

impl From<MovieError> for Status {
    fn from(error: MovieError) -> Self {
        let message = error.to_string();
        match error {
            MovieError::NotFound(_) => Status::not_found(message),
            MovieError::Dependency(error) => match error.failure() {
                Failure::Unavailable => Status::unavailable(message),
                Failure::DeadlineExceeded => Status::deadline_exceeded(message),
                // A dependency's NOT_FOUND other than the movie's own, or an
                // unexpected answer: our fault, not the caller's.
                Failure::NotFound | Failure::Failed => Status::internal(message),
            },
        }
    }
}

#[tonic::async_trait]
impl<M: MetadataGateway, R: RatingGateway> MovieService for MovieHandler<M, R> {
    #[tracing::instrument(name = "GetMovieDetails", level = "debug", skip_all, fields(movie_id = %request.get_ref().movie_id))]
    async fn get_movie_details(
        &self,
        request: Request<GetMovieDetailsRequest>,
    ) -> Result<Response<GetMovieDetailsResponse>, Status> {
        let deadline = Deadline::of_request(&request);
        let id = MovieId::parse("movie_id", request.into_inner().movie_id)?;
        tracing::debug!(?deadline, "fetching metadata and rating");
        let details = self.controller.details(&id, deadline).await.inspect_err(|error| match error {
            MovieError::NotFound(_) => tracing::debug!(movie_id = %id, %error, "no details"),
            MovieError::Dependency(_) => {
                if let Some(held_back) = self.failure_warnings.admit() {
                    tracing::warn!(movie_id = %id, %error, held_back, "no details");
                }
            }
        })?;
        let degraded = details.rating == Rating::Unavailable;
        let mut response = Response::new(GetMovieDetailsResponse { movie_details: Some(details.into()) });
        if degraded {
            response.metadata_mut().insert(RATING_STATUS_HEADER, MetadataValue::from_static("unavailable"));
        }
        Ok(response)
    }
}
