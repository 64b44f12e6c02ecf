//! The calls made to other services, timed under the client series
//! (`rpc_client_call_duration_seconds`) and traced as client spans.
use std::{future::Future, time::Instant};

use telemetry::metrics::{CLIENT_CALL_DURATION, code_label};
use tonic::Code;
use tracing::Instrument;

use super::UpstreamError;

/// Times a call to another service and records it under
/// [`CLIENT_CALL_DURATION`] with the status code it ended with.
pub(super) async fn timed_client_call<T>(
    rpc_service: &'static str,
    rpc_method: &'static str,
    call: impl Future<Output = Result<T, UpstreamError>>,
) -> Result<T, UpstreamError> {
    let started = Instant::now();
    let result = call.instrument(telemetry::trace_context::client_span(rpc_service, rpc_method)).await;
    let code = result.as_ref().map_or_else(UpstreamError::code, |_| Code::Ok);
    metrics::histogram!(CLIENT_CALL_DURATION,
        "rpc_service" => rpc_service, "rpc_method" => rpc_method, "rpc_grpc_status_code" => code_label(code))
    .record(started.elapsed().as_secs_f64());
    result
}
