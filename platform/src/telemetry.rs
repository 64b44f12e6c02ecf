//! Sets up `tracing` once per process: human-readable lines on stderr,
//! filtered by `RUST_LOG` (default `info`, with consulrs's per-request
//! logs at `warn`).
use std::io::IsTerminal;

use tracing_subscriber::{EnvFilter, fmt};

/// Installs the global subscriber. Safe to call more than once (later calls
/// are ignored), so tests that run several services in one process can call it.
pub fn init() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info,consulrs=warn"));
    let _ = fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .try_init();
}
