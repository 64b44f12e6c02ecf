//! The server's own series: each call's duration by service, method and
//! status code, and the calls shed by the concurrency limit; health checks
//! and reflection are not counted.
use std::time::Instant;

use telemetry::metrics::{SERVER_CALL_DURATION, SERVER_CALLS_SHED, code_label};
use tonic::Code;

use super::INFRASTRUCTURE_SERVICES;

/// `/Service/Method` → (`Service`, `Method`).
fn service_and_method(path: &str) -> Option<(&str, &str)> {
    path.strip_prefix('/')?.split_once('/')
}

/// The service and method of a call that counts as business traffic: not a
/// health check, not reflection.
pub fn counted_call(path: &str) -> Option<(&str, &str)> {
    service_and_method(path).filter(|(service, _)| !INFRASTRUCTURE_SERVICES.contains(service))
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
    fn health_checks_and_reflection_are_not_counted() {
        assert_eq!(counted_call("/MovieService/GetMovieDetails"), Some(("MovieService", "GetMovieDetails")));
        assert_eq!(counted_call("/grpc.health.v1.Health/Check"), None);
        assert_eq!(counted_call("/grpc.reflection.v1.ServerReflection/ServerReflectionInfo"), None);
    }
}
