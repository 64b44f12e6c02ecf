//! One unary call to the service, as every gateway makes it: within the
//! caller's deadline, sent on as the request's `grpc-timeout`; with the
//! current trace context; with messages bounded both ways; timed and traced
//! as a client call of its method.
use contract::method::Unary;
use http::uri::PathAndQuery;
use telemetry::trace_context::inject_into_request;
use tonic::{GrpcMethod, client::Grpc};
use tonic_prost::ProstCodec;

use super::{Upstream, UpstreamError, timed_client_call};
use crate::transport::Deadline;

impl Upstream {
    /// Calls `method` with `request` on a healthy instance, as
    /// [`Upstream::call`] does (so for reads only), by `deadline` if the
    /// caller has one; messages either way are bounded by the settings'
    /// `max_message_size`.
    pub async fn unary<Req, Resp>(
        &self,
        method: &'static Unary<Req, Resp>,
        request: &Req,
        deadline: Option<Deadline>,
    ) -> Result<Resp, UpstreamError>
    where
        Req: prost::Message + Clone + Send + 'static,
        Resp: prost::Message + Default + Send + 'static,
    {
        let limit = self.inner.settings.max_message_size;
        let call = self.call(deadline, |connection, _, time_left| {
            let mut request = tonic::Request::new(request.clone());
            request.set_timeout(time_left);
            request.extensions_mut().insert(GrpcMethod::new(method.service, method.method));
            inject_into_request(&mut request);
            let mut grpc = Grpc::new(connection).max_decoding_message_size(limit).max_encoding_message_size(limit);
            // Boxed: tonic's call future is large, and every layer that
            // takes a future by value would copy it whole (BENCHMARKS.md,
            // "movie: tonic's call future boxed in the gateways").
            Box::pin(async move {
                grpc.ready()
                    .await
                    .map_err(|error| tonic::Status::unknown(format!("the connection is not ready: {error}")))?;
                grpc.unary(request, PathAndQuery::from_static(method.path), ProstCodec::default()).await
            })
        });
        timed_client_call(method.service, method.method, call).await.map(tonic::Response::into_inner)
    }
}
