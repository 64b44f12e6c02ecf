//! Prometheus metrics: the exporter every service serves on
//! `--metrics-addr`, and the RPC series named after OpenTelemetry's RPC
//! semantic conventions (`rpc.server.call.duration`,
//! `rpc.client.call.duration`, in seconds, with `rpc.service`, `rpc.method`
//! and `rpc.grpc.status_code`). docs/operations.md lists every series.
//!
//! The server records its calls (platform's `server::metrics`), the
//! upstream pool the calls it makes (`upstream::timing`).
//!
//! Without `--metrics-addr` no recorder is installed: the `metrics` macros
//! then do nothing, and the server adds no metrics layer at all.
use std::net::SocketAddr;

#[cfg(feature = "prometheus")]
use metrics_exporter_prometheus::{BuildError, Matcher, PrometheusBuilder};
use tonic::Code;

/// Server calls, by service, method and status code.
pub const SERVER_CALL_DURATION: &str = "rpc_server_call_duration_seconds";
/// Calls to other services (the movie service's fan-out).
pub const CLIENT_CALL_DURATION: &str = "rpc_client_call_duration_seconds";
/// Server calls refused because too many were in flight.
pub const SERVER_CALLS_SHED: &str = "rpc_server_calls_shed_total";

#[cfg(feature = "prometheus")]
/// Histogram buckets of call durations, in seconds: sub-millisecond answers
/// up to the longest deadline a caller would set.
const DURATION_BUCKETS: [f64; 14] =
    [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

#[derive(Debug, Clone, clap::Args)]
pub struct MetricsArgs {
    /// Address to serve Prometheus metrics on, at http://ADDR/metrics, e.g. 127.0.0.1:9464 [default: off]
    #[arg(long, env = "METRICS_ADDR")]
    pub metrics_addr: Option<SocketAddr>,
}

#[cfg(feature = "prometheus")]
#[derive(Debug, thiserror::Error)]
#[error("cannot serve Prometheus metrics on {address}")]
pub struct MetricsError {
    address: SocketAddr,
    #[source]
    source: BuildError,
}

#[cfg(feature = "prometheus")]
/// Installs the process's metrics recorder and serves it on `address`; every
/// series carries the label `service_name`. Call it once per process, from
/// within the tokio runtime.
pub fn serve(address: SocketAddr, service_name: &str) -> Result<(), MetricsError> {
    let error = |source| MetricsError { address, source };
    PrometheusBuilder::new()
        .with_http_listener(address)
        .add_global_label("service_name", service_name)
        .set_buckets_for_metric(Matcher::Suffix("_duration_seconds".into()), &DURATION_BUCKETS)
        .map_err(error)?
        .install()
        .map_err(error)?;
    tracing::info!(%address, "serving Prometheus metrics at /metrics");
    Ok(())
}

/// The status code as OpenTelemetry writes it: its number.
pub fn code_label(code: Code) -> &'static str {
    const LABELS: [&str; 17] =
        ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9", "10", "11", "12", "13", "14", "15", "16"];
    LABELS.get(code as usize).copied().unwrap_or("2")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_codes_are_labelled_by_number() {
        assert_eq!(code_label(Code::Ok), "0");
        assert_eq!(code_label(Code::NotFound), "5");
        assert_eq!(code_label(Code::Unauthenticated), "16");
    }
}
