//! Prometheus metrics: the exporter every service serves on
//! `--metrics-addr`, and the RPC series named after OpenTelemetry's RPC
//! semantic conventions (`rpc.server.call.duration`,
//! `rpc.client.call.duration`, in seconds, with `rpc.service`, `rpc.method`
//! and `rpc.grpc.status_code`). docs/operations.md lists every series.
//!
//! The server records its calls (platform's `server::metrics`), the
//! upstream pool the calls it makes (`upstream::timing`). Series whose set
//! changes while the process runs (a partition's lag, which goes with the
//! partition) come from a [`Collector`], asked at each scrape.
//!
//! Without `--metrics-addr` no recorder is installed: the `metrics` macros
//! then do nothing, and the server adds no metrics layer at all.
#[cfg(feature = "prometheus")]
use std::sync::OnceLock;
use std::{
    net::SocketAddr,
    sync::{Arc, Mutex, Weak},
};

#[cfg(feature = "prometheus")]
use metrics_exporter_prometheus::{BuildError, Matcher, PrometheusBuilder, PrometheusHandle};
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
pub enum MetricsError {
    #[error("cannot set up the Prometheus recorder")]
    Recorder(#[source] BuildError),
    #[error("cannot serve Prometheus metrics on {address}")]
    Listen {
        address: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

/// One gauge sample of a [`Collector`]: a name, its labels, a value.
#[derive(Debug, Clone, PartialEq)]
pub struct GaugeSample {
    pub name: &'static str,
    pub labels: Vec<(&'static str, String)>,
    pub value: f64,
}

/// Gauges worked out when Prometheus scrapes, for values whose set of series
/// changes as the process runs. A recorded series stays in the exporter
/// once set: a partition handed to another replica would keep reporting its
/// last lag here for good. A collector reports only what holds now.
pub trait Collector: Send + Sync + 'static {
    /// Appends the current samples.
    fn collect(&self, samples: &mut Vec<GaugeSample>);
}

/// The collectors asked at each scrape; held weakly, so that one dropped
/// (its owner stopped) reports nothing more.
static COLLECTORS: Mutex<Vec<Weak<dyn Collector>>> = Mutex::new(Vec::new());

/// Adds `collector` to every scrape for as long as it lives.
pub fn register_collector(collector: &Arc<impl Collector>) {
    let collector: Arc<dyn Collector> = collector.clone();
    let mut collectors = COLLECTORS.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    collectors.retain(|held| held.strong_count() > 0);
    collectors.push(Arc::downgrade(&collector));
}

#[cfg(any(feature = "prometheus", test))]
/// The collectors' samples in Prometheus' text format, each series with the
/// `global` labels first.
fn render_collected(global: &[(&str, &str)]) -> String {
    let collectors: Vec<Arc<dyn Collector>> = {
        let collectors = COLLECTORS.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        collectors.iter().filter_map(Weak::upgrade).collect()
    };
    let mut samples = Vec::new();
    for collector in collectors {
        collector.collect(&mut samples);
    }
    samples.sort_by(|a, b| a.name.cmp(b.name));
    let mut text = String::new();
    let mut last_name = None;
    for sample in samples {
        if last_name != Some(sample.name) {
            text.push_str(&format!("# TYPE {} gauge\n", sample.name));
            last_name = Some(sample.name);
        }
        let labels: Vec<String> = global
            .iter()
            .map(|(key, value)| (*key, *value))
            .chain(sample.labels.iter().map(|(key, value)| (*key, value.as_str())))
            .map(|(key, value)| format!("{key}=\"{}\"", escape_label(value)))
            .collect();
        text.push_str(&format!("{}{{{}}} {}\n", sample.name, labels.join(","), sample.value));
    }
    text
}

#[cfg(any(feature = "prometheus", test))]
/// A label value as Prometheus' text format quotes it.
fn escape_label(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

#[cfg(feature = "prometheus")]
/// The service name every series carries, as the label `service_name`.
static SERVICE_NAME: OnceLock<String> = OnceLock::new();

#[cfg(feature = "prometheus")]
/// Installs the process's metrics recorder and serves it, with the
/// collectors' gauges, on `address`; every series carries the label
/// `service_name`. Call it once per process, from within the tokio runtime.
pub async fn serve(address: SocketAddr, service_name: &str) -> Result<(), MetricsError> {
    let handle = PrometheusBuilder::new()
        .add_global_label("service_name", service_name)
        .set_buckets_for_metric(Matcher::Suffix("_duration_seconds".into()), &DURATION_BUCKETS)
        .map_err(MetricsError::Recorder)?
        .install_recorder()
        .map_err(MetricsError::Recorder)?;
    let _ = SERVICE_NAME.set(service_name.to_owned());
    let listener =
        tokio::net::TcpListener::bind(address).await.map_err(|source| MetricsError::Listen { address, source })?;
    let address = listener.local_addr().unwrap_or(address);
    tokio::spawn(exporter::serve(listener, handle));
    tracing::info!(%address, "serving Prometheus metrics at /metrics");
    Ok(())
}

#[cfg(feature = "prometheus")]
/// The scrape endpoint: HTTP/1.1, the recorder's series then the
/// collectors', on any path.
mod exporter {
    use http_body_util::Full;
    use hyper::{Request, Response, body::Bytes, header::CONTENT_TYPE, service::service_fn};
    use hyper_util::rt::TokioIo;
    use tokio::net::TcpListener;

    use super::{PrometheusHandle, SERVICE_NAME, render_collected};

    pub(super) async fn serve(listener: TcpListener, handle: PrometheusHandle) {
        loop {
            let stream = match listener.accept().await {
                Ok((stream, _)) => stream,
                Err(error) => {
                    tracing::warn!(%error, "cannot accept a connection to the metrics endpoint");
                    continue;
                }
            };
            let handle = handle.clone();
            let service = service_fn(move |_request: Request<hyper::body::Incoming>| {
                let body = render(&handle);
                async move {
                    Ok::<_, std::convert::Infallible>(
                        Response::builder()
                            .header(CONTENT_TYPE, "text/plain; version=0.0.4")
                            .body(Full::new(Bytes::from(body)))
                            .expect("a static header"),
                    )
                }
            });
            tokio::spawn(async move {
                if let Err(error) =
                    hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service).await
                {
                    tracing::debug!(%error, "metrics connection ended with an error");
                }
            });
        }
    }

    fn render(handle: &PrometheusHandle) -> String {
        let service = SERVICE_NAME.get().map_or("", String::as_str);
        let mut text = handle.render();
        text.push_str(&render_collected(&[("service_name", service)]));
        text
    }
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

    struct Fixed(Vec<GaugeSample>);

    impl Collector for Fixed {
        fn collect(&self, samples: &mut Vec<GaugeSample>) {
            samples.extend(self.0.iter().cloned());
        }
    }

    fn sample(name: &'static str, label: &str, value: f64) -> GaugeSample {
        GaugeSample { name, labels: vec![("partition", label.to_owned())], value }
    }

    #[test]
    fn collected_gauges_are_rendered_while_their_collector_lives() {
        let lag = Arc::new(Fixed(vec![sample("test_lag", "0", 3.0), sample("test_lag", "2", 0.0)]));
        let other = Arc::new(Fixed(vec![sample("test_other", "a\"b\\c\n", 1.5)]));
        register_collector(&lag);
        register_collector(&other);
        let text = render_collected(&[("service_name", "rating")]);
        assert!(
            text.contains(
                "# TYPE test_lag gauge\ntest_lag{service_name=\"rating\",partition=\"0\"} 3\n\
                 test_lag{service_name=\"rating\",partition=\"2\"} 0\n"
            ),
            "{text}"
        );
        assert!(text.contains("test_other{service_name=\"rating\",partition=\"a\\\"b\\\\c\\n\"} 1.5\n"), "{text}");
        drop(lag);
        let text = render_collected(&[("service_name", "rating")]);
        assert!(!text.contains("test_lag"), "a dropped collector reports nothing: {text}");
        assert!(text.contains("test_other"), "{text}");
    }

    #[test]
    fn status_codes_are_labelled_by_number() {
        assert_eq!(code_label(Code::Ok), "0");
        assert_eq!(code_label(Code::NotFound), "5");
        assert_eq!(code_label(Code::Unauthenticated), "16");
    }
}
