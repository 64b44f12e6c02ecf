//! The gRPC transport of the rating service: parses requests into domain
//! values, calls the controller, maps its errors to status codes.
mod grpc;

pub use grpc::RatingHandler;
