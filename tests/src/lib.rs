//! Helpers for the end-to-end tests in `tests/`: the services in the test
//! process with typed clients ([`app`]), the suite's real binaries as
//! processes on free ports ([`process`]), the real `grpcurl`, a real
//! Kafka-protocol broker ([`broker`]), a throwaway PostgreSQL ([`postgres`]),
//! a certificate authority ([`certificates`]), bearer tokens ([`tokens`]),
//! a real Prometheus ([`prometheus`]), an OTLP trace receiver ([`otlp`]),
//! a steady load that records every call ([`load`]) and the fault tests'
//! figures ([`figures`]), a small stand-in of Consul's HTTP API, a real DNS
//! server (dnsmasq, [`dns`]), a service's metrics ([`scrape`]), calls with
//! hand-encoded requests ([`raw`]), and a metadata service that
//! answers only when a test lets it ([`stand_in`]). The processes themselves are
//! `testbed`'s, which the benchmark runner shares; these helpers panic where
//! it returns errors, as tests want.
//!
//! The binaries come from the same target directory as the test executable;
//! build them first (`cargo build --bins`, which the test script does).

pub mod app;
pub mod broker;
pub mod calls;
pub mod certificates;
pub mod compose;
pub mod consul;
pub mod dns;
pub mod figures;
pub mod grpcurl;
pub mod kubernetes;
pub mod load;
pub mod otlp;
pub mod postgres;
pub mod process;
pub mod prometheus;
pub mod rating;
pub mod raw;
pub mod scrape;
pub mod stand_in;
pub mod tokens;

use std::{
    future::Future,
    time::{Duration, Instant},
};

/// Polls `condition` until it holds, panicking with `what` after `timeout`.
pub fn wait_until(what: &str, timeout: Duration, mut condition: impl FnMut() -> bool) {
    let held = testbed::poll_until(Instant::now() + timeout, Duration::from_millis(25), || condition().then_some(()));
    assert!(held.is_some(), "timed out after {timeout:?} waiting until {what}");
}

/// Polls the async `condition` until it holds, panicking with `what` after
/// `timeout`.
pub async fn wait_for<F: Future<Output = bool>>(what: &str, timeout: Duration, mut condition: impl FnMut() -> F) {
    let deadline = tokio::time::Instant::now() + timeout;
    while !condition().await {
        assert!(tokio::time::Instant::now() < deadline, "timed out after {timeout:?} waiting until {what}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// A port that was free a moment ago, for a server that must be started
/// later at a known address.
pub fn free_port() -> u16 {
    testbed::free_port().expect("bind an ephemeral port")
}
