//! The log filter lets every event it accepts through, even right after a
//! record of the `log` crate that it refused (a `log_enabled!` check, as
//! sqlx makes after each query, or a line of a crate whose level is set
//! lower): with a plain per-layer filter the next event of a callsite that
//! cached `Interest::always` was dropped (tokio-rs/tracing#2519).
//!
//! One test in this file: it installs the process's global subscriber.
use std::sync::{
    Arc,
    atomic::{AtomicUsize, Ordering},
};

use telemetry::Evaluated;
use tracing_subscriber::{EnvFilter, Layer, layer::SubscriberExt, util::SubscriberInitExt};

/// Counts the events it is given.
struct Counter(Arc<AtomicUsize>);

impl<S: tracing::Subscriber> Layer<S> for Counter {
    fn on_event(&self, _: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

#[test]
fn an_accepted_event_after_a_refused_log_check_is_recorded() {
    let counted = Arc::new(AtomicUsize::new(0));
    // As telemetry::init installs it: a per-layer filter, and the `log` bridge.
    tracing_subscriber::registry()
        .with(Counter(counted.clone()).with_filter(Evaluated(EnvFilter::new("info,noisy=warn"))))
        .init();
    for round in 1..=3 {
        let _ = log::log_enabled!(target: "noisy", log::Level::Info);
        tracing::info!(round, "recorded after a refused check");
        log::info!(target: "noisy", "refused");
        tracing::info!(round, "recorded after a refused line");
        assert_eq!(counted.load(Ordering::SeqCst), 2 * round, "an event of round {round} was dropped");
    }
}
