//! The gRPC transport of the metadata service: maps requests to the
//! controller and its errors to status codes.
mod grpc;

pub use grpc::MetadataHandler;
