//! Clients of the services the movie service depends on, behind traits so
//! the controller can be tested without a network.
mod grpc;

use std::future::Future;

use contract::{id::MovieId, metadata::Metadata, validation::FieldError};
pub use grpc::GrpcGateway;
use platform::{discovery::ServiceName, transport::Deadline, upstream::UpstreamError};
use tonic::Code;

/// Why a dependency did not give an answer: the failed call kept whole, or
/// an answer this service cannot use. [`GatewayError::failure`] says what it
/// means for the caller.
#[derive(Debug, Clone, thiserror::Error)]
pub enum GatewayError {
    /// The call brought no answer, or an error status.
    #[error("{}", describe(.0))]
    Call(#[from] UpstreamError),
    /// The dependency answered with a message this service cannot use.
    #[error("{service} service failed: malformed answer: {problem}")]
    Malformed { service: ServiceName, problem: FieldError },
}

/// What a dependency's failure means for a call that needed it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// The dependency has nothing under this id.
    NotFound,
    /// No instance could answer, or the one that did shed the call: a
    /// passing state the caller may retry.
    Unavailable,
    DeadlineExceeded,
    /// An unexpected error or message: a fault, not the caller's.
    Failed,
}

impl GatewayError {
    pub fn failure(&self) -> Failure {
        match self {
            Self::Call(UpstreamError::NoHealthyInstance { .. } | UpstreamError::Unavailable { .. }) => {
                Failure::Unavailable
            }
            Self::Call(UpstreamError::DeadlineExceeded { .. }) => Failure::DeadlineExceeded,
            Self::Call(UpstreamError::Status { status, .. }) => match status.code() {
                Code::NotFound => Failure::NotFound,
                // The dependency shed the call (it is serving its limit).
                Code::ResourceExhausted => Failure::Unavailable,
                _ => Failure::Failed,
            },
            Self::Malformed { .. } => Failure::Failed,
        }
    }
}

/// Equal when they mean the same for the call and say the same.
impl PartialEq for GatewayError {
    fn eq(&self, other: &Self) -> bool {
        self.failure() == other.failure() && self.to_string() == other.to_string()
    }
}

impl Eq for GatewayError {}

/// A failed call as the movie service reports it: the dependency, what
/// happened, and the dependency's own message.
fn describe(error: &UpstreamError) -> String {
    match error {
        UpstreamError::NoHealthyInstance { service } => {
            format!("{service} service is unavailable: no healthy instance is registered")
        }
        UpstreamError::Unavailable { service, status } => {
            format!("{service} service is unavailable: {}", status.message())
        }
        UpstreamError::DeadlineExceeded { service, timeout } => {
            format!("{service} service did not answer within {timeout:?}")
        }
        UpstreamError::Status { service, status } => match status.code() {
            Code::NotFound => format!("{service} service has no record: {}", status.message()),
            Code::ResourceExhausted => format!("{service} service is unavailable: {}", status.message()),
            code => format!("{service} service failed: {code}: {}", status.message()),
        },
    }
}

/// Each call gives up by `deadline` (the caller's), when there is one, or
/// after the gateway's own timeout, whichever comes first.
pub trait MetadataGateway: Send + Sync + 'static {
    fn get(
        &self,
        id: &MovieId,
        deadline: Option<Deadline>,
    ) -> impl Future<Output = Result<Metadata, GatewayError>> + Send;
}

pub trait RatingGateway: Send + Sync + 'static {
    /// The average rating of a movie; `NotFound` when it has none yet.
    fn aggregated(
        &self,
        id: &MovieId,
        deadline: Option<Deadline>,
    ) -> impl Future<Output = Result<f64, GatewayError>> + Send;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(status: tonic::Status) -> GatewayError {
        GatewayError::from(UpstreamError::Status { service: ServiceName::new("metadata"), status })
    }

    #[test]
    fn a_dependency_shedding_load_is_unavailable_and_other_errors_are_failures() {
        let shed = status(tonic::Status::resource_exhausted("serving its limit of 1000 concurrent requests"));
        assert_eq!(shed.failure(), Failure::Unavailable);
        assert_eq!(shed.to_string(), "metadata service is unavailable: serving its limit of 1000 concurrent requests");
        assert_eq!(status(tonic::Status::not_found("no such movie")).failure(), Failure::NotFound);
        let failed = status(tonic::Status::internal("disk on fire"));
        assert_eq!(failed.failure(), Failure::Failed);
        assert_eq!(failed.to_string(), "metadata service failed: Internal error: disk on fire");
    }

    #[test]
    fn the_failed_call_is_kept_as_the_source() {
        let error = status(tonic::Status::internal("disk on fire"));
        let source = std::error::Error::source(&error).expect("a source");
        assert!(source.downcast_ref::<UpstreamError>().is_some(), "{source:?}");
    }
}
