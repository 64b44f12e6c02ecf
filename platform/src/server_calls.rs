//! What a server does around each call of its own services (not health,
//! not reflection): a span whose parent is the caller's trace context, and
//! the call's duration and status code in the metrics. One tower layer,
//! added only when traces are exported or metrics served.
use std::{
    task::{Context, Poll},
    time::Instant,
};

use tonic::{Code, codegen::BoxFuture};
use tracing::Instrument;

use crate::{metrics, trace_context};

#[derive(Debug, Clone, Copy)]
pub struct ServerCallLayer {
    pub spans: bool,
    pub metrics: bool,
}

impl<S> tower::Layer<S> for ServerCallLayer {
    type Service = ServerCalls<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ServerCalls { inner, settings: *self }
    }
}

#[derive(Debug, Clone)]
pub struct ServerCalls<S> {
    inner: S,
    settings: ServerCallLayer,
}

impl<S, RequestBody, ResponseBody> tower::Service<http::Request<RequestBody>> for ServerCalls<S>
where
    S: tower::Service<http::Request<RequestBody>, Response = http::Response<ResponseBody>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<S::Response, S::Error>;

    fn poll_ready(&mut self, context: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(context)
    }

    fn call(&mut self, request: http::Request<RequestBody>) -> Self::Future {
        let Some((service, method)) = metrics::counted_call(request.uri().path()) else {
            return Box::pin(self.inner.call(request));
        };
        let (service, method) = (service.to_owned(), method.to_owned());
        let span = if self.settings.spans {
            trace_context::server_span(&service, &method, request.headers())
        } else {
            tracing::Span::none()
        };
        let record = self.settings.metrics;
        let started = Instant::now();
        let response = self.inner.call(request).instrument(span);
        Box::pin(async move {
            let response = response.await?;
            if record {
                // A unary call's status is known at its response headers: an
                // error travels in a trailers-only response, and a response
                // with a message is OK (its trailers say so).
                let code = response
                    .headers()
                    .get("grpc-status")
                    .and_then(|value| value.to_str().ok())
                    .and_then(|value| value.parse::<i32>().ok())
                    .map_or(Code::Ok, Code::from_i32);
                metrics::record_server_call(service, method, code, started);
            }
            Ok(response)
        })
    }
}
