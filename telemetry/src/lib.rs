//! What every binary of the suite reports through: log lines and the trace
//! exporter ([`init`]), Prometheus metrics ([`metrics`]), trace context
//! carried across gRPC calls and Kafka messages ([`trace_context`]), a
//! throttle for lines that would repeat on every call ([`log_throttle`]),
//! and an error with its chain of sources as one line ([`errors`]).
pub mod errors;
pub mod log_throttle;
pub mod metrics;
mod subscriber;
#[cfg(any(test, feature = "test-support"))]
pub mod test_support;
pub mod trace_context;

pub use errors::Chain;
pub use metrics::MetricsArgs;
pub use subscriber::{Evaluated, LogArgs, LogFormat, Telemetry, exporting_traces, init, log_filter};
