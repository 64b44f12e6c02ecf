//! A steady load for the fault tests: calls started at a fixed rate, each
//! with its own deadline, from a thread and runtime of their own, so the
//! test can break things meanwhile. Every call is recorded (when it
//! started, how long it took, its status code), and the figures of any
//! stretch of the run are read from the records.
use std::{
    collections::BTreeMap,
    future::Future,
    sync::{Arc, Mutex},
    thread::JoinHandle,
    time::{Duration, Instant},
};

use contract::api::{GetMovieDetailsRequest, movie_service_client::MovieServiceClient};
use platform::shutdown::CancellationToken;
use serde_json::{Value, json};
use tokio::task::JoinSet;
use tonic::{Code, transport::Endpoint};

/// One call of the load.
#[derive(Debug, Clone, Copy)]
pub struct CallRecord {
    /// When the call started, from the start of the load.
    pub started: Duration,
    pub latency: Duration,
    pub code: Code,
}

/// A load running in the background until [`SteadyLoad::stop`].
pub struct SteadyLoad {
    origin: Instant,
    records: Arc<Mutex<Vec<CallRecord>>>,
    stop: CancellationToken,
    thread: Option<JoinHandle<()>>,
}

/// A call is abandoned (and recorded as CANCELLED) this long past its own
/// deadline, so that a call that never ends cannot hang the test. (tonic's
/// own timer, at the deadline, also ends a call as CANCELLED: either way
/// the caller's deadline passed.)
const HANG_GRACE: Duration = Duration::from_secs(2);

impl SteadyLoad {
    /// Starts `rate` calls a second. `setup` runs once inside the load's
    /// runtime (where channels can be made) and returns the call: it gets
    /// the deadline and answers with the call's status code.
    pub fn start<S, F, Fut>(rate: u32, deadline: Duration, setup: S) -> Self
    where
        S: FnOnce() -> F + Send + 'static,
        F: FnMut(Duration) -> Fut + Send + 'static,
        Fut: Future<Output = Code> + Send + 'static,
    {
        let origin = Instant::now();
        let records = Arc::new(Mutex::new(Vec::new()));
        let stop = CancellationToken::new();
        let (kept, stopped) = (records.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("the load's runtime");
            runtime.block_on(async move {
                let mut call = setup();
                let mut ticks = tokio::time::interval(Duration::from_secs(1) / rate);
                ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                let mut calls = JoinSet::new();
                loop {
                    tokio::select! {
                        () = stopped.cancelled() => break,
                        _ = ticks.tick() => {}
                    }
                    let pending = call(deadline);
                    let kept = kept.clone();
                    calls.spawn(async move {
                        let started = Instant::now();
                        let code =
                            tokio::time::timeout(deadline + HANG_GRACE, pending).await.unwrap_or(Code::Cancelled);
                        let record = CallRecord { started: started - origin, latency: started.elapsed(), code };
                        kept.lock().expect("not poisoned").push(record);
                    });
                    while calls.try_join_next().is_some() {}
                }
                while calls.join_next().await.is_some() {}
            });
        });
        Self { origin, records, stop, thread: Some(thread) }
    }

    /// GetMovieDetails of `movie_id` at `authority` (a movie service).
    pub fn movie_details(authority: &str, movie_id: &str, rate: u32, deadline: Duration) -> Self {
        let (endpoint, movie_id) = (format!("http://{authority}"), movie_id.to_owned());
        Self::start(rate, deadline, move || {
            let channel = Endpoint::from_shared(endpoint).expect("a valid endpoint").connect_lazy();
            let client = MovieServiceClient::new(channel);
            move |deadline| {
                let mut client = client.clone();
                let mut request = tonic::Request::new(GetMovieDetailsRequest { movie_id: movie_id.clone() });
                request.set_timeout(deadline);
                async move { client.get_movie_details(request).await.map_or_else(|status| status.code(), |_| Code::Ok) }
            }
        })
    }

    /// The time since the load started, to mark when something happened.
    pub fn now(&self) -> Duration {
        self.origin.elapsed()
    }

    /// How many calls have ended so far.
    pub fn ended(&self) -> usize {
        self.records.lock().expect("not poisoned").len()
    }

    /// Stops starting calls, waits for those in flight, and returns every
    /// call in the order it started.
    pub fn stop(mut self) -> Vec<CallRecord> {
        self.stop.cancel();
        if let Some(thread) = self.thread.take() {
            thread.join().expect("the load's thread ran");
        }
        let mut records = std::mem::take(&mut *self.records.lock().expect("not poisoned"));
        records.sort_by_key(|record| record.started);
        records
    }
}

impl Drop for SteadyLoad {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// The figures of a set of calls.
#[derive(Debug, Clone, PartialEq)]
pub struct LoadFigures {
    pub sent: usize,
    /// Calls per status code, by the code's name (`Ok`, `Unavailable`, ...).
    pub by_code: BTreeMap<String, usize>,
    pub p99: Duration,
    pub max: Duration,
}

impl LoadFigures {
    /// The figures of the calls that started within `from..to`.
    pub fn of(records: &[CallRecord], from: Duration, to: Duration) -> Self {
        let chosen: Vec<&CallRecord> =
            records.iter().filter(|record| record.started >= from && record.started < to).collect();
        let mut by_code = BTreeMap::new();
        for record in &chosen {
            *by_code.entry(format!("{:?}", record.code)).or_default() += 1;
        }
        let mut latencies: Vec<Duration> = chosen.iter().map(|record| record.latency).collect();
        latencies.sort();
        let p99 = latencies.get((latencies.len() * 99).div_ceil(100).saturating_sub(1)).copied().unwrap_or_default();
        Self { sent: chosen.len(), by_code, p99, max: latencies.last().copied().unwrap_or_default() }
    }

    /// The figures of every call.
    pub fn all(records: &[CallRecord]) -> Self {
        Self::of(records, Duration::ZERO, Duration::MAX)
    }

    pub fn count(&self, code: Code) -> usize {
        self.by_code.get(&format!("{code:?}")).copied().unwrap_or(0)
    }

    /// Calls that did not end OK.
    pub fn failed(&self) -> usize {
        self.sent - self.count(Code::Ok)
    }

    pub fn to_json(&self) -> Value {
        json!({
            "sent": self.sent,
            "by_code": self.by_code,
            "failed": self.failed(),
            "p99_ms": millis(self.p99),
            "max_ms": millis(self.max),
        })
    }
}

/// A duration in milliseconds, to a tenth, for figures.
pub fn millis(duration: Duration) -> f64 {
    (duration.as_secs_f64() * 10_000.0).round() / 10.0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(started_ms: u64, latency_ms: u64, code: Code) -> CallRecord {
        CallRecord { started: Duration::from_millis(started_ms), latency: Duration::from_millis(latency_ms), code }
    }

    #[test]
    fn figures_count_codes_and_take_the_99th_percentile_of_a_stretch() {
        let mut records: Vec<CallRecord> = (0..100).map(|i| call(i, i + 1, Code::Ok)).collect();
        records.push(call(100, 500, Code::Unavailable));
        let all = LoadFigures::all(&records);
        assert_eq!((all.sent, all.failed(), all.count(Code::Unavailable)), (101, 1, 1));
        assert_eq!((all.p99, all.max), (Duration::from_millis(100), Duration::from_millis(500)));
        let late = LoadFigures::of(&records, Duration::from_millis(90), Duration::from_millis(100));
        assert_eq!((late.sent, late.failed(), late.max), (10, 0, Duration::from_millis(100)));
    }
}
