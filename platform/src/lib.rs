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

/// The allocator of every binary of the suite (the services, the tools and
/// the benchmark's yardsticks all link this crate): mimalloc spends fewer
/// instructions per allocation than glibc's malloc, and the request path
/// allocates a lot (HTTP/2 frames, headers, messages).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
