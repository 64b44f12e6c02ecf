//! What a server does around each call of its own services (not health,
//! not reflection): a span whose parent is the caller's trace context, and
//! the call's duration and status code in the metrics. One tower layer,
//! added only when traces are exported or metrics served.
use std::time::Instant;

use tonic::Code;
use tracing::Instrument;

use telemetry::trace_context;

use super::{
    call_layer::{Answer, AroundCall, Inner},
    metrics,
};

/// Around the routes as a [`CallLayer`](crate::server::call_layer::CallLayer).
#[derive(Debug, Clone, Copy)]
pub struct ServerCalls {
    pub spans: bool,
    pub metrics: bool,
}

impl AroundCall for ServerCalls {
    fn around<S: Inner<B>, B>(&self, inner: &mut S, request: http::Request<B>) -> Answer<S, B> {
        let Some((service, method)) = metrics::counted_call(request.uri().path()) else {
            return Box::pin(inner.forward(request));
        };
        let (service, method) = (service.to_owned(), method.to_owned());
        let span = if self.spans {
            trace_context::server_span(&service, &method, request.headers())
        } else {
            tracing::Span::none()
        };
        let record = self.metrics;
        let started = Instant::now();
        let response = inner.forward(request).instrument(span);
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
