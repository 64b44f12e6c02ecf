//! W3C trace context across processes: `traceparent` read from incoming
//! gRPC requests and written into outgoing ones, and the per-call spans of
//! servers (a tower layer) and clients. Everything here does nothing unless
//! traces are exported ([`crate::telemetry::exporting_traces`]).
use std::{
    future::Future,
    pin::Pin,
    task::{Context as TaskContext, Poll},
};

use opentelemetry::{
    Context, global,
    propagation::{Extractor, Injector},
    trace::TraceContextExt,
};
use tracing::{Instrument, Span, field::Empty};
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// The trace context carried by `carrier`, e.g. a request's headers.
pub fn extract(carrier: &dyn Extractor) -> Context {
    global::get_text_map_propagator(|propagator| propagator.extract(carrier))
}

/// Writes the current span's trace context into `carrier`.
pub fn inject(carrier: &mut dyn Injector) {
    let context = Span::current().context();
    global::get_text_map_propagator(|propagator| propagator.inject_context(&context, carrier));
}

/// The current span's trace context as message headers (`traceparent`, and
/// `tracestate` when there is one); empty unless traces are exported.
pub fn current_headers() -> Vec<(String, String)> {
    let mut headers = HeaderList(Vec::new());
    if crate::telemetry::exporting_traces() {
        inject(&mut headers);
    }
    headers.0
}

/// The trace context carried by message headers.
pub fn from_headers<'a>(headers: impl IntoIterator<Item = (&'a str, &'a str)>) -> Context {
    let pairs: Vec<(&str, &str)> = headers.into_iter().collect();
    extract(&Pairs(&pairs))
}

/// A span for an event taken from a topic, a child of the span that
/// published it when its headers carry one; `Span::none()` unless traces
/// are exported.
pub fn consumer_span<'a>(
    name: &'static str,
    topic: &str,
    headers: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> Span {
    if !crate::telemetry::exporting_traces() {
        return Span::none();
    }
    let span = tracing::info_span!(
        "kafka.consume",
        otel.name = name,
        otel.kind = "consumer",
        messaging.system = "kafka",
        messaging.destination.name = topic,
        trace_id = Empty,
        span_id = Empty
    );
    let parent = from_headers(headers);
    if parent.span().span_context().is_valid() {
        let _ = span.set_parent(parent);
    }
    record_ids(&span);
    span
}

/// A span for publishing to a topic; `Span::none()` unless traces are
/// exported.
pub fn producer_span(name: &'static str, topic: &str) -> Span {
    if !crate::telemetry::exporting_traces() {
        return Span::none();
    }
    let span = tracing::info_span!(
        "kafka.produce",
        otel.name = name,
        otel.kind = "producer",
        messaging.system = "kafka",
        messaging.destination.name = topic,
        trace_id = Empty,
        span_id = Empty
    );
    record_ids(&span);
    span
}

struct HeaderList(Vec<(String, String)>);

impl Injector for HeaderList {
    fn set(&mut self, key: &str, value: String) {
        self.0.push((key.to_string(), value));
    }
}

struct Pairs<'a>(&'a [(&'a str, &'a str)]);

impl Extractor for Pairs<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.iter().find(|(name, _)| name.eq_ignore_ascii_case(key)).map(|(_, value)| *value)
    }

    fn keys(&self) -> Vec<&str> {
        self.0.iter().map(|(name, _)| *name).collect()
    }
}

/// Writes the current span's trace context into an outgoing request.
pub fn inject_into_request<T>(request: &mut tonic::Request<T>) {
    if crate::telemetry::exporting_traces() {
        inject(&mut MetadataInjector(request.metadata_mut()));
    }
}

/// Records the OpenTelemetry ids of `span` in its `trace_id` and `span_id`
/// fields, so log lines inside it name their trace.
pub fn record_ids(span: &Span) {
    let context = span.context();
    let span_context = context.span().span_context().clone();
    if span_context.is_valid() {
        span.record("trace_id", span_context.trace_id().to_string());
        span.record("span_id", span_context.span_id().to_string());
    }
}

/// A span for a call to another service, a child of the current one.
pub fn client_span(rpc_service: &'static str, rpc_method: &'static str) -> Span {
    if !crate::telemetry::exporting_traces() {
        return Span::none();
    }
    let span = tracing::info_span!(
        "grpc.client",
        otel.name = format!("{rpc_service}/{rpc_method}"),
        otel.kind = "client",
        rpc.system = "grpc",
        rpc.service = rpc_service,
        rpc.method = rpc_method,
        trace_id = Empty,
        span_id = Empty
    );
    record_ids(&span);
    span
}

struct MetadataInjector<'a>(&'a mut tonic::metadata::MetadataMap);

impl Injector for MetadataInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(key), Ok(value)) =
            (tonic::metadata::MetadataKey::from_bytes(key.as_bytes()), tonic::metadata::MetadataValue::try_from(value))
        {
            self.0.insert(key, value);
        }
    }
}

struct HeaderExtractor<'a>(&'a http::HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|value| value.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(http::HeaderName::as_str).collect()
    }
}

/// Opens a server span per call, a child of the caller's span when the
/// request carries a `traceparent`. Health and reflection calls get none.
#[derive(Debug, Clone, Copy, Default)]
pub struct ServerSpanLayer;

impl<S> tower::Layer<S> for ServerSpanLayer {
    type Service = ServerSpans<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ServerSpans { inner }
    }
}

#[derive(Debug, Clone)]
pub struct ServerSpans<S> {
    inner: S,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl<S, RequestBody, ResponseBody> tower::Service<http::Request<RequestBody>> for ServerSpans<S>
where
    S: tower::Service<http::Request<RequestBody>, Response = http::Response<ResponseBody>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<Result<S::Response, S::Error>>;

    fn poll_ready(&mut self, context: &mut TaskContext<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(context)
    }

    fn call(&mut self, request: http::Request<RequestBody>) -> Self::Future {
        let Some((service, method)) = crate::metrics::counted_call(request.uri().path()) else {
            return Box::pin(self.inner.call(request));
        };
        let span = tracing::info_span!(
            "grpc.server",
            otel.name = format!("{service}/{method}"),
            otel.kind = "server",
            rpc.system = "grpc",
            rpc.service = service,
            rpc.method = method,
            trace_id = Empty,
            span_id = Empty
        );
        let parent = extract(&HeaderExtractor(request.headers()));
        if parent.span().span_context().is_valid() {
            let _ = span.set_parent(parent);
        }
        record_ids(&span);
        Box::pin(self.inner.call(request).instrument(span))
    }
}
