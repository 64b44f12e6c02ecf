//! W3C trace context across processes: `traceparent` read from incoming
//! gRPC requests and written into outgoing ones, and the per-call spans of
//! servers (a tower layer) and clients. Everything here does nothing unless
//! traces are exported ([`crate::exporting_traces`]).
use opentelemetry::{
    Context, global,
    propagation::{Extractor, Injector},
    trace::TraceContextExt,
};
use tracing::{Span, field::Empty};
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
    if crate::exporting_traces() {
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
    messaging_span("consumer", name, topic, || from_headers(headers))
}

/// A span for publishing to a topic, a child of the current span;
/// `Span::none()` unless traces are exported.
pub fn producer_span(name: &'static str, topic: &str) -> Span {
    messaging_span("producer", name, topic, Context::new)
}

fn messaging_span(kind: &'static str, name: &'static str, topic: &str, parent: impl FnOnce() -> Context) -> Span {
    if !crate::exporting_traces() {
        return Span::none();
    }
    let span = tracing::info_span!(
        "kafka",
        otel.name = name,
        otel.kind = kind,
        messaging.system = "kafka",
        messaging.destination.name = topic,
        trace_id = Empty,
        span_id = Empty
    );
    with_parent(span, parent())
}

/// The target of the spans that start or continue a trace: a call or an
/// event (see [`crate::init`]'s export filter).
pub(crate) const TARGET: &str = module_path!();

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
    if crate::exporting_traces() {
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

/// A span for a call this server answers: a child of the caller's span when
/// the request's headers carry a `traceparent`.
pub fn server_span(rpc_service: &str, rpc_method: &str, headers: &http::HeaderMap) -> Span {
    with_parent(rpc_span("server", rpc_service, rpc_method), extract(&HeaderExtractor(headers)))
}

/// A span for a call to another service, a child of the current one;
/// `Span::none()` unless traces are exported.
pub fn client_span(rpc_service: &'static str, rpc_method: &'static str) -> Span {
    if !crate::exporting_traces() {
        return Span::none();
    }
    with_parent(rpc_span("client", rpc_service, rpc_method), Context::new())
}

/// A gRPC call's span, named `Service/Method` as OpenTelemetry names them.
fn rpc_span(kind: &'static str, rpc_service: &str, rpc_method: &str) -> Span {
    tracing::info_span!(
        "grpc",
        otel.name = format!("{rpc_service}/{rpc_method}"),
        otel.kind = kind,
        rpc.system = "grpc",
        rpc.service = rpc_service,
        rpc.method = rpc_method,
        trace_id = Empty,
        span_id = Empty
    )
}

/// `span` as a child of `parent` when `parent` holds a valid span (else of
/// the current span, as every span is), with its ids recorded.
fn with_parent(span: Span, parent: Context) -> Span {
    if parent.span().span_context().is_valid() {
        let _ = span.set_parent(parent);
    }
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
