//! Clients of the services the movie service depends on, behind traits so
//! the controller can be tested without a network.
mod grpc;

use std::{future::Future, time::Duration};

use contract::{id::MovieId, metadata::Metadata};
pub use grpc::GrpcGateway;
use platform::{discovery::ServiceName, transport::Deadline, upstream::UpstreamError};

/// Why a dependency did not give an answer.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum GatewayError {
    /// The dependency has nothing under this id.
    #[error("{service} service has no record: {message}")]
    NotFound { service: ServiceName, message: String },
    #[error("{service} service is unavailable: {reason}")]
    Unavailable { service: ServiceName, reason: String },
    #[error("{service} service did not answer within {timeout:?}")]
    DeadlineExceeded { service: ServiceName, timeout: Duration },
    /// The dependency answered with an unexpected error or message.
    #[error("{service} service failed: {reason}")]
    Failed { service: ServiceName, reason: String },
}

impl From<UpstreamError> for GatewayError {
    fn from(error: UpstreamError) -> Self {
        match error {
            UpstreamError::NoHealthyInstance { service } => {
                GatewayError::Unavailable { service, reason: "no healthy instance is registered".into() }
            }
            UpstreamError::Unavailable { service, status } => {
                GatewayError::Unavailable { service, reason: status.message().to_string() }
            }
            UpstreamError::DeadlineExceeded { service, timeout } => GatewayError::DeadlineExceeded { service, timeout },
            UpstreamError::Status { service, status } if status.code() == tonic::Code::NotFound => {
                GatewayError::NotFound { service, message: status.message().to_string() }
            }
            // The dependency shed the call (it is serving its limit): a
            // passing state the caller may retry, not a fault of ours.
            UpstreamError::Status { service, status } if status.code() == tonic::Code::ResourceExhausted => {
                GatewayError::Unavailable { service, reason: status.message().to_string() }
            }
            UpstreamError::Status { service, status } => {
                GatewayError::Failed { service, reason: format!("{}: {}", status.code(), status.message()) }
            }
        }
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
        assert_eq!(
            shed,
            GatewayError::Unavailable {
                service: ServiceName::new("metadata"),
                reason: "serving its limit of 1000 concurrent requests".into()
            }
        );
        assert!(matches!(status(tonic::Status::not_found("no such movie")), GatewayError::NotFound { .. }));
        let failed = status(tonic::Status::internal("disk on fire"));
        assert_eq!(failed.to_string(), "metadata service failed: Internal error: disk on fire");
    }
}
