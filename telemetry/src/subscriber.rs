//! Sets up `tracing` once per process: lines on stderr, human-readable or
//! JSON (`--log-format`), filtered by `RUST_LOG` (default `info`, with
//! consulrs's per-request logs at `warn`; see [`log_filter`]); and, when
//! `OTEL_EXPORTER_OTLP_ENDPOINT` is set, the suite's calls and events
//! exported as traces over OTLP/gRPC with W3C trace context propagation
//! (see [`crate::trace_context`]).
use std::{
    io::IsTerminal,
    sync::atomic::{AtomicBool, Ordering},
};

use opentelemetry::{global, trace::TracerProvider as _};
use opentelemetry_sdk::{Resource, propagation::TraceContextPropagator, trace::SdkTracerProvider};
use tracing::{Level, Metadata, Subscriber, subscriber::Interest};
use tracing_subscriber::{
    EnvFilter, Layer, Registry,
    filter::LevelFilter,
    fmt,
    layer::{self, SubscriberExt},
    registry::LookupSpan,
    util::SubscriberInitExt,
};

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum LogFormat {
    /// One human-readable line per event, coloured on a terminal.
    #[default]
    Pretty,
    /// One JSON object per line (timestamp, level, target, fields, the
    /// current span and the list of enclosing spans with their fields,
    /// `trace_id` and `span_id` among them when traces are exported), for
    /// log collectors.
    Json,
}

#[derive(Debug, Clone, clap::Args)]
pub struct LogArgs {
    /// Log line format on stderr
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value_t = LogFormat::Pretty)]
    pub log_format: LogFormat,
}

/// What is logged without `RUST_LOG`: consulrs logs every request it makes.
const DEFAULT_LOG_FILTER: &str = "info,consulrs=warn";

/// The prefix of the targets the OpenTelemetry exporter logs under
/// (`opentelemetry`, `opentelemetry_sdk`, `opentelemetry-otlp`).
const EXPORTER_LOGS: &str = "opentelemetry";

/// The filter of the log lines: `RUST_LOG`, or [`DEFAULT_LOG_FILTER`] when it
/// is unset or invalid, with the trace exporter's own logs off unless
/// `RUST_LOG` names them (`RUST_LOG=info,opentelemetry=warn`). The exporter
/// logs each failed export, every batch while the collector is away (as when
/// compose runs without its observability profile), and a `RUST_LOG` written
/// for the suite's own logs (`info,rating::event_log=debug`) must not turn
/// that on.
pub fn log_filter(rust_log: Option<&str>) -> EnvFilter {
    let directives = rust_log.filter(|directives| EnvFilter::try_new(directives).is_ok()).unwrap_or(DEFAULT_LOG_FILTER);
    let asked_for_exporter_logs =
        directives.split(',').any(|directive| directive.trim_start().starts_with(EXPORTER_LOGS));
    if asked_for_exporter_logs {
        return EnvFilter::new(directives);
    }
    let exporter_off = format!("{EXPORTER_LOGS}=off");
    EnvFilter::new(if directives.is_empty() { exporter_off } else { format!("{directives},{exporter_off}") })
}

/// This crate, whose [`crate::trace_context`] spans start the traces: its
/// spans are always exported.
const OWN_CRATE: &str = env!("CARGO_CRATE_NAME");

static EXPORTING: AtomicBool = AtomicBool::new(false);

/// Whether this process exports traces; servers and clients open their
/// per-call spans only then.
pub fn exporting_traces() -> bool {
    EXPORTING.load(Ordering::Relaxed)
}

/// Keeps the trace exporter alive; dropping it flushes the spans not sent yet.
#[must_use = "dropping the guard stops the trace exporter"]
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        if let Some(provider) = self.provider.take()
            && let Err(error) = provider.shutdown()
        {
            eprintln!("cannot flush the last spans: {error}");
        }
    }
}

/// Installs the global subscriber, and the OTLP trace exporter when
/// `OTEL_EXPORTER_OTLP_ENDPOINT` is set (its service name from
/// `OTEL_SERVICE_NAME`, else `service_name`). Later calls in the same process
/// install nothing, so tests that run several services in one process can
/// call it.
///
/// `traced_crates` names the crates whose spans and events go into the
/// traces (the caller's own and the suite's crates it runs on), and not
/// those of its dependencies: h2, hyper and tonic open spans of their own.
pub fn init(format: LogFormat, service_name: &str, traced_crates: impl IntoIterator<Item = &'static str>) -> Telemetry {
    let rust_log = std::env::var(EnvFilter::DEFAULT_ENV).ok();
    let filter = Evaluated(log_filter(rust_log.as_deref()));
    let log_lines: Box<dyn Layer<Registry> + Send + Sync> = match format {
        LogFormat::Pretty => fmt::layer()
            .with_writer(std::io::stderr)
            .with_ansi(std::io::stderr().is_terminal())
            .with_filter(filter)
            .boxed(),
        LogFormat::Json => fmt::layer()
            .json()
            .with_current_span(true)
            // Every enclosing span: the call's server span, which carries
            // trace_id and span_id, as well as the handler's own.
            .with_span_list(true)
            .with_writer(std::io::stderr)
            .with_filter(filter)
            .boxed(),
    };
    let (traces, provider) = match trace_exporter(
        service_name,
        Exported { crates: std::iter::once(OWN_CRATE).chain(traced_crates).collect() },
    ) {
        Ok(Some((layer, provider))) => (Some(layer), Some(provider)),
        Ok(None) => (None, None),
        Err(error) => {
            eprintln!("traces are not exported: cannot create the OTLP exporter: {error}");
            (None, None)
        }
    };
    let exporting = traces.is_some();
    let layers: Vec<TraceLayer> = std::iter::once(log_lines).chain(traces).collect();
    if tracing_subscriber::registry().with(layers).try_init().is_ok() && exporting {
        EXPORTING.store(true, Ordering::Relaxed);
    }
    Telemetry { provider }
}

type TraceLayer = Box<dyn Layer<Registry> + Send + Sync>;

fn trace_exporter(
    default_name: &str,
    exported: Exported,
) -> Result<Option<(TraceLayer, SdkTracerProvider)>, opentelemetry_otlp::ExporterBuildError> {
    if std::env::var_os("OTEL_EXPORTER_OTLP_ENDPOINT").is_none_or(|endpoint| endpoint.is_empty()) {
        return Ok(None);
    }
    let exporter = opentelemetry_otlp::SpanExporter::builder().with_tonic().build()?;
    let service_name = std::env::var("OTEL_SERVICE_NAME").unwrap_or_else(|_| default_name.to_string());
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(Resource::builder().with_service_name(service_name).build())
        .build();
    global::set_text_map_propagator(TraceContextPropagator::new());
    global::set_tracer_provider(provider.clone());
    let tracer = provider.tracer("movie-ratings");
    let layer = tracing_opentelemetry::layer().with_tracer(tracer).with_filter(Evaluated(exported)).boxed();
    Ok(Some((layer, provider)))
}

/// What becomes traces: calls and events. A trace starts at a span of
/// [`crate::trace_context`] (a gRPC call served or made, an event published
/// or applied) and holds the suite's spans at every level and its events at
/// INFO and above (they become span events) opened inside it. Background
/// work (discovery lookups, registration heartbeats) opens its spans outside
/// any call: they stay in the log lines, and would otherwise fill the trace
/// view with one-span traces every few seconds.
struct Exported {
    crates: Vec<&'static str>,
}

impl Exported {
    fn ours(&self, metadata: &Metadata<'_>) -> bool {
        let traced = self.crates.iter().any(|name| {
            metadata.target().strip_prefix(name).is_some_and(|rest| rest.is_empty() || rest.starts_with("::"))
        });
        traced && (metadata.is_span() || *metadata.level() <= Level::INFO)
    }
}

impl<S: Subscriber + for<'lookup> LookupSpan<'lookup>> layer::Filter<S> for Exported {
    fn enabled(&self, metadata: &Metadata<'_>, cx: &layer::Context<'_, S>) -> bool {
        // The current span as this layer sees it: the nearest exported one.
        let starts_or_joins_a_trace =
            || metadata.target() == crate::trace_context::TARGET || cx.lookup_current().is_some();
        self.ours(metadata) && (!metadata.is_span() || starts_or_joins_a_trace())
    }

    fn callsite_enabled(&self, metadata: &'static Metadata<'static>) -> Interest {
        if self.ours(metadata) { Interest::sometimes() } else { Interest::never() }
    }
}

/// A per-layer filter whose callsites never cache `Interest::always`, so
/// that it is asked about every span and event it lets through.
///
/// tracing-subscriber hands a per-layer filter's answer from `enabled` to
/// its layer through a thread-local. A callsite that cached `always` skips
/// `enabled`, and the layer then reads whatever the last `enabled` call on
/// that thread left there: after a `log_enabled!` check that the filter
/// refused (sqlx makes one after every query, through the `log` bridge) the
/// next event was silently dropped from the log lines and the traces
/// (tokio-rs/tracing#2519). Capping the interest at `sometimes` costs one
/// evaluation of the filter per span or event that is recorded anyway.
pub struct Evaluated<F>(pub F);

impl<S: Subscriber, F: layer::Filter<S>> layer::Filter<S> for Evaluated<F> {
    fn enabled(&self, metadata: &Metadata<'_>, cx: &layer::Context<'_, S>) -> bool {
        self.0.enabled(metadata, cx)
    }

    fn callsite_enabled(&self, metadata: &'static Metadata<'static>) -> Interest {
        let interest = self.0.callsite_enabled(metadata);
        if interest.is_always() { Interest::sometimes() } else { interest }
    }

    fn event_enabled(&self, event: &tracing::Event<'_>, cx: &layer::Context<'_, S>) -> bool {
        self.0.event_enabled(event, cx)
    }

    fn max_level_hint(&self) -> Option<LevelFilter> {
        self.0.max_level_hint()
    }

    fn on_new_span(&self, attrs: &tracing::span::Attributes<'_>, id: &tracing::span::Id, ctx: layer::Context<'_, S>) {
        self.0.on_new_span(attrs, id, ctx)
    }

    fn on_record(&self, id: &tracing::span::Id, values: &tracing::span::Record<'_>, ctx: layer::Context<'_, S>) {
        self.0.on_record(id, values, ctx)
    }

    fn on_enter(&self, id: &tracing::span::Id, ctx: layer::Context<'_, S>) {
        self.0.on_enter(id, ctx)
    }

    fn on_exit(&self, id: &tracing::span::Id, ctx: layer::Context<'_, S>) {
        self.0.on_exit(id, ctx)
    }

    fn on_close(&self, id: tracing::span::Id, ctx: layer::Context<'_, S>) {
        self.0.on_close(id, ctx)
    }
}
