//! Prometheus metrics: the exporter every service serves on
//! `--metrics-addr`, and the RPC series named after OpenTelemetry's RPC
//! semantic conventions (`rpc.server.call.duration`,
//! `rpc.client.call.duration`, in seconds, with `rpc.service`, `rpc.method`
//! and `rpc.grpc.status_code`). docs/operations.md lists every series.
//!
//! Without `--metrics-addr` no recorder is installed: the `metrics` macros
//! then do nothing, and the server adds no metrics layer at all.
use std::{future::Future, net::SocketAddr, time::Instant};

use metrics_exporter_prometheus::{BuildError, Matcher, PrometheusBuilder};
use tonic::Code;
use tracing::Instrument;

use crate::upstream::UpstreamError;

/// Server calls, by service, method and status code.
pub const SERVER_CALL_DURATION: &str = "rpc_server_call_duration_seconds";
/// Calls to other services (the movie service's fan-out).
pub const CLIENT_CALL_DURATION: &str = "rpc_client_call_duration_seconds";
/// Server calls refused because too many were in flight.
pub const SERVER_CALLS_SHED: &str = "rpc_server_calls_shed_total";

/// Histogram buckets of call durations, in seconds: sub-millisecond answers
/// up to the longest deadline a caller would set.
const DURATION_BUCKETS: [f64; 14] =
    [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

/// gRPC services whose calls are not business traffic and are not counted.
const UNCOUNTED_SERVICES: [&str; 3] =
    ["grpc.health.v1.Health", "grpc.reflection.v1.ServerReflection", "grpc.reflection.v1alpha.ServerReflection"];

#[derive(Debug, Clone, clap::Args)]
pub struct MetricsArgs {
    /// Address to serve Prometheus metrics on, at http://ADDR/metrics, e.g. 127.0.0.1:9464 [default: off]
    #[arg(long, env = "METRICS_ADDR")]
    pub metrics_addr: Option<SocketAddr>,
}

#[derive(Debug, thiserror::Error)]
#[error("cannot serve Prometheus metrics on {address}")]
pub struct MetricsError {
    address: SocketAddr,
    #[source]
    source: BuildError,
}

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

/// Times a call to another service and records it under
/// [`CLIENT_CALL_DURATION`] with the status code it ended with.
pub async fn timed_client_call<T>(
    rpc_service: &'static str,
    rpc_method: &'static str,
    call: impl Future<Output = Result<T, UpstreamError>>,
) -> Result<T, UpstreamError> {
    let started = Instant::now();
    let result = call.instrument(crate::trace_context::client_span(rpc_service, rpc_method)).await;
    let code = result.as_ref().map_or_else(UpstreamError::code, |_| Code::Ok);
    metrics::histogram!(CLIENT_CALL_DURATION,
        "rpc_service" => rpc_service, "rpc_method" => rpc_method, "rpc_grpc_status_code" => code_label(code))
    .record(started.elapsed().as_secs_f64());
    result
}

/// The status code as OpenTelemetry writes it: its number.
fn code_label(code: Code) -> &'static str {
    const LABELS: [&str; 17] =
        ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9", "10", "11", "12", "13", "14", "15", "16"];
    LABELS.get(code as usize).copied().unwrap_or("2")
}

/// `/Service/Method` → (`Service`, `Method`).
fn service_and_method(path: &str) -> Option<(&str, &str)> {
    path.strip_prefix('/')?.split_once('/')
}

/// The service and method of a call that counts as business traffic: not a
/// health check, not reflection.
pub fn counted_call(path: &str) -> Option<(&str, &str)> {
    service_and_method(path).filter(|(service, _)| !UNCOUNTED_SERVICES.contains(service))
}

/// Records a finished server call under [`SERVER_CALL_DURATION`].
pub(crate) fn record_server_call(rpc_service: String, rpc_method: String, code: Code, started: Instant) {
    metrics::histogram!(SERVER_CALL_DURATION,
        "rpc_service" => rpc_service, "rpc_method" => rpc_method, "rpc_grpc_status_code" => code_label(code))
    .record(started.elapsed().as_secs_f64());
}

/// Counts a call shed under [`SERVER_CALLS_SHED`].
pub(crate) fn record_shed_call(rpc_service: String, rpc_method: String) {
    metrics::counter!(SERVER_CALLS_SHED, "rpc_service" => rpc_service, "rpc_method" => rpc_method).increment(1);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_split_into_service_and_method() {
        assert_eq!(service_and_method("/MovieService/GetMovieDetails"), Some(("MovieService", "GetMovieDetails")));
        assert_eq!(service_and_method("/grpc.health.v1.Health/Check"), Some(("grpc.health.v1.Health", "Check")));
        assert_eq!(service_and_method("/"), None);
        assert_eq!(service_and_method("no-slash"), None);
    }

    #[test]
    fn status_codes_are_labelled_by_number() {
        assert_eq!(code_label(Code::Ok), "0");
        assert_eq!(code_label(Code::NotFound), "5");
        assert_eq!(code_label(Code::Unauthenticated), "16");
    }
}
