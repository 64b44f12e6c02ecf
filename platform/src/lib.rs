//! What every service of the movie-rating suite runs on: service discovery,
//! the gRPC server bootstrap (reflection, health, registration, graceful
//! shutdown), the upstream channel pool, the database settings and pool,
//! shutdown signals, telemetry, TLS settings and the bearer tokens of
//! authenticated writes, and the throttle of per-call warnings.
//! What services and tools agree on (the API, ids, events) is in `contract`.
//!
//! A service crate brings its own domain, controller, repository and handler;
//! everything around them that would otherwise be repeated three times lives
//! here.

pub mod auth;
pub mod call_layer;
pub mod config;
pub mod connections;
pub mod database;
pub mod deadline;
pub mod discovery;
pub mod entry;
pub mod errors;
#[cfg(test)]
mod http2_frames;
pub mod log_throttle;
pub mod metrics;
pub mod overload;
pub mod request_decoding;
pub mod server;
pub mod server_calls;
pub mod shutdown;
pub mod telemetry;
#[cfg(any(test, feature = "test-support"))]
pub mod test_support;
pub mod tls;
pub mod trace_context;
pub mod upstream;
pub mod write_batching;
