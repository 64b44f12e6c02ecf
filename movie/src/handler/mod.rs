//! The gRPC transport of the movie service.
mod grpc;

pub use grpc::{MovieHandler, RATING_STATUS_HEADER};
