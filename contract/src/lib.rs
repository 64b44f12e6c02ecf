//! What the suite's services and tools agree on, and nothing else: the gRPC
//! API generated from `proto/movie.proto`, the ids and rating values parsed
//! once at the edge, the `RatingEvent` JSON with its Kafka key and its
//! published JSON Schema ([`schema`], with the rule that keeps it
//! compatible), the service names, and (feature `kafka`) the Kafka
//! connection settings and producer configuration shared by the rating
//! service and ratingingester.
//!
//! Services and tools depend on this crate and on `platform`, never on one
//! another.

#[cfg(feature = "grpc")]
pub mod api;
pub mod event;
pub mod id;
#[cfg(feature = "kafka")]
pub mod kafka;
#[cfg(feature = "grpc")]
pub mod metadata;
#[cfg(feature = "grpc")]
pub mod method;
pub mod rating;
pub mod schema;
pub mod service;
pub mod validation;
