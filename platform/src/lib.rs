//! What every service of the movie-rating suite shares: the generated gRPC
//! API, service discovery, the gRPC server bootstrap (reflection, health,
//! registration, graceful shutdown), input validation errors and telemetry.
//!
//! A service crate brings its own domain, controller, repository and handler;
//! everything around them that would otherwise be repeated three times lives
//! here.

pub mod api;
pub mod config;
pub mod discovery;
pub mod server;
pub mod shutdown;
pub mod telemetry;
pub mod upstream;
pub mod validation;
