//! Load generation in the two classic shapes, and its latency accounting.
//!
//! **Closed loop** ([`run_closed_loop`]): N workers, each sending its next
//! request when the previous one answered. It finds the saturation
//! throughput; its latencies are those of a client that slows down with the
//! server, so they say little about tail latency.
//!
//! **Open loop** ([`OpenLoop`]): requests are due on a fixed schedule
//! (request k at `start + k / rate`), sent whether or not earlier ones have
//! answered, and each latency is measured from the request's *intended* send
//! time. A server stall therefore shows up in every request that was due
//! during it, not only in the one request a closed-loop client had in flight
//! (coordinated omission). The schedule is kept by a task that sleeps on a
//! kernel timer ([`PreciseTimer`]: tokio's own timer rounds to a
//! millisecond), wakes at most every [`OpenLoop::send_granularity`] and
//! spawns each due request on the runtime it runs on. Requests arrive one
//! at a time, so on a machine shared with the servers the sender's own CPU
//! per request matters: each wake-up and each hand-over to another thread
//! costs microseconds the servers then lack.
//!
//! Requests started during the warm-up are sent but not recorded.
use std::{
    collections::BTreeMap,
    future::Future,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

/// Latencies above a minute are recorded as a minute.
const HIGHEST_TRACKABLE_MICROS: u64 = 60_000_000;

/// When request k is due: `start + k / rate`, computed from k (not by adding
/// intervals), so the schedule never drifts.
#[derive(Debug, Clone, Copy)]
pub struct Schedule {
    start: Instant,
    rate: f64,
}

impl Schedule {
    /// `None` unless `rate` (requests per second) is positive and finite.
    pub fn new(start: Instant, rate: f64) -> Option<Self> {
        (rate.is_finite() && rate > 0.0).then_some(Self { start, rate })
    }

    pub fn intended(&self, request: u64) -> Instant {
        self.start + Duration::from_secs_f64(request as f64 / self.rate)
    }

    /// How many requests are due strictly before `start + offset`.
    pub fn due_before(&self, offset: Duration) -> u64 {
        (offset.as_secs_f64() * self.rate).ceil() as u64
    }
}

/// Latencies of successful requests and the count of failed ones by status.
#[derive(Debug, Clone)]
pub struct Tally {
    latencies_micros: Histogram<u64>,
    errors: BTreeMap<String, u64>,
}

impl Default for Tally {
    fn default() -> Self {
        Self {
            latencies_micros: Histogram::new_with_bounds(1, HIGHEST_TRACKABLE_MICROS, 3)
                .expect("constant histogram bounds are valid"),
            errors: BTreeMap::new(),
        }
    }
}

impl Tally {
    /// Records one request: its latency when it succeeded, its status code
    /// name when it failed (a fast failure must not flatter the latencies).
    pub fn record(&mut self, latency: Duration, outcome: Result<(), tonic::Code>) {
        match outcome {
            Ok(()) => {
                let micros = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX).max(1);
                self.latencies_micros.saturating_record(micros);
            }
            Err(code) => *self.errors.entry(format!("{code:?}")).or_default() += 1,
        }
    }

    pub fn merge(&mut self, other: &Tally) {
        // Both histograms have the same bounds, so adding cannot fail.
        let _ = self.latencies_micros.add(&other.latencies_micros);
        for (code, count) in &other.errors {
            *self.errors.entry(code.clone()).or_default() += count;
        }
    }

    pub fn ok(&self) -> u64 {
        self.latencies_micros.len()
    }

    pub fn failed(&self) -> u64 {
        self.errors.values().sum()
    }

    pub fn requests(&self) -> u64 {
        self.ok() + self.failed()
    }

    /// The latency at `quantile` (0..=1) in microseconds.
    pub fn quantile_micros(&self, quantile: f64) -> u64 {
        self.latencies_micros.value_at_quantile(quantile)
    }

    pub fn max_micros(&self) -> u64 {
        self.latencies_micros.max()
    }

    pub fn errors(&self) -> &BTreeMap<String, u64> {
        &self.errors
    }
}

/// What a load run measured, printed by `loadgen` as one JSON line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoadSummary {
    pub rpc: String,
    /// `closed` or `open`.
    pub mode: String,
    pub connections: usize,
    /// Workers of a closed-loop run.
    pub concurrency: Option<usize>,
    /// Target rate of an open-loop run, requests per second.
    pub rate: Option<f64>,
    /// Requests recorded (after the warm-up), successful or not.
    pub requests: u64,
    pub ok: u64,
    /// Failed requests by gRPC status code.
    pub errors: BTreeMap<String, u64>,
    /// From the end of the warm-up to the last recorded answer.
    pub elapsed_s: f64,
    pub requests_per_s: f64,
    pub p50_us: u64,
    pub p90_us: u64,
    pub p99_us: u64,
    pub p999_us: u64,
    pub max_us: u64,
    /// Every request sent, warm-up included: what the servers did for the
    /// CPU time they spent during the run.
    pub all_requests: u64,
    /// CPU time (user + system) the load generator itself used, seconds.
    #[serde(default)]
    pub client_cpu_s: f64,
}

impl LoadSummary {
    /// The failed requests, with their status codes when there are any:
    /// `0`, or `3187 (ResourceExhausted 3180, Unavailable 7)`.
    pub fn failures(&self) -> String {
        let failed = self.requests - self.ok;
        if self.errors.is_empty() {
            return failed.to_string();
        }
        let codes: Vec<String> = self.errors.iter().map(|(code, count)| format!("{code} {count}")).collect();
        format!("{failed} ({})", codes.join(", "))
    }
}

/// The raw outcome of a run, before it is labelled.
#[derive(Debug, Clone)]
pub struct LoadResult {
    pub tally: Tally,
    pub elapsed: Duration,
    pub all_requests: u64,
}

impl LoadResult {
    pub fn summary(&self, rpc: &str, mode: &str, connections: usize) -> LoadSummary {
        let elapsed_s = self.elapsed.as_secs_f64();
        let requests = self.tally.requests();
        LoadSummary {
            rpc: rpc.to_owned(),
            mode: mode.to_owned(),
            connections,
            concurrency: None,
            rate: None,
            requests,
            ok: self.tally.ok(),
            errors: self.tally.errors().clone(),
            elapsed_s,
            requests_per_s: if elapsed_s > 0.0 { requests as f64 / elapsed_s } else { 0.0 },
            p50_us: self.tally.quantile_micros(0.5),
            p90_us: self.tally.quantile_micros(0.9),
            p99_us: self.tally.quantile_micros(0.99),
            p999_us: self.tally.quantile_micros(0.999),
            max_us: self.tally.max_micros(),
            all_requests: self.all_requests,
            client_cpu_s: 0.0,
        }
    }
}

/// When a run ends, after its warm-up.
#[derive(Debug, Clone, Copy)]
pub enum Extent {
    Duration(Duration),
    Requests(u64),
}

/// Runs `workers` closed-loop workers. `call(worker)` sends one request.
pub async fn run_closed_loop<F, Fut>(workers: usize, warmup: Duration, extent: Extent, call: F) -> LoadResult
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), tonic::Code>> + Send,
{
    let call = Arc::new(call);
    let start = Instant::now();
    let measure_from = start + warmup;
    let end = match extent {
        Extent::Duration(duration) => Some(measure_from + duration),
        Extent::Requests(_) => None,
    };
    let limit = match extent {
        Extent::Requests(requests) => requests,
        Extent::Duration(_) => u64::MAX,
    };
    let claimed = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::with_capacity(workers);
    for worker in 0..workers {
        let (call, claimed) = (call.clone(), claimed.clone());
        tasks.push(tokio::spawn(async move {
            let mut tally = Tally::default();
            let mut sent_in_all = 0_u64;
            let mut last_answer = measure_from;
            loop {
                let sent = Instant::now();
                if end.is_some_and(|end| sent >= end) {
                    break;
                }
                let measured = sent >= measure_from;
                if measured && claimed.fetch_add(1, Ordering::Relaxed) >= limit {
                    break;
                }
                let outcome = call(worker).await;
                let answered = Instant::now();
                sent_in_all += 1;
                if measured {
                    tally.record(answered - sent, outcome);
                    last_answer = last_answer.max(answered);
                }
            }
            (tally, sent_in_all, last_answer)
        }));
    }
    let mut result = LoadResult { tally: Tally::default(), elapsed: Duration::ZERO, all_requests: 0 };
    for task in tasks {
        if let Ok((tally, sent, last_answer)) = task.await {
            result.tally.merge(&tally);
            result.all_requests += sent;
            result.elapsed = result.elapsed.max(last_answer - measure_from);
        }
    }
    result
}

/// Requests per second for how long (the closed loop's counterpart).
#[derive(Debug, Clone, Copy)]
pub struct OpenLoop {
    /// Requests per second.
    pub rate: f64,
    /// Sent, not recorded.
    pub warmup: Duration,
    pub extent: Extent,
    /// At most this many requests outstanding: a request that waits for
    /// room is still timed from its intended send time, so the wait counts
    /// against the server.
    pub max_in_flight: usize,
    /// The sender wakes at most this often and sends every request due by
    /// then: fewer wake-ups, and so less of the machine's CPU, at the cost of
    /// sending a request up to this late. A late request is still timed from
    /// its intended send time, so the granularity can add to the latencies
    /// but never hide a stall.
    pub send_granularity: Duration,
}

impl OpenLoop {
    /// At 20,000 requests/s, about four requests per wake-up: it halves the
    /// sender's CPU per request compared with a wake-up for each.
    pub const SEND_GRANULARITY: Duration = Duration::from_micros(200);

    /// No warm-up, at most 10,000 requests in flight, the default granularity.
    pub fn new(rate: f64, extent: Extent) -> Self {
        Self { rate, warmup: Duration::ZERO, extent, max_in_flight: 10_000, send_granularity: Self::SEND_GRANULARITY }
    }

    /// Sends the requests, `call(k)` sending request k, and waits for every
    /// answer.
    pub async fn run<F, Fut>(self, call: F) -> anyhow::Result<LoadResult>
    where
        F: Fn(u64) -> Fut,
        Fut: Future<Output = Result<(), tonic::Code>> + Send + 'static,
    {
        let Self { rate, warmup, extent, max_in_flight, send_granularity } = self;
        let start = Instant::now();
        let schedule =
            Schedule::new(start, rate).ok_or_else(|| anyhow::anyhow!("the rate must be positive, got {rate}"))?;
        let measure_from = start + warmup;
        let first_measured = schedule.due_before(warmup);
        let total = match extent {
            Extent::Duration(duration) => schedule.due_before(warmup + duration),
            Extent::Requests(requests) => first_measured + requests,
        };
        let max_in_flight = u32::try_from(max_in_flight.max(1)).unwrap_or(u32::MAX);
        let in_flight = Arc::new(tokio::sync::Semaphore::new(max_in_flight as usize));
        let recorded = Arc::new(Mutex::new((Tally::default(), measure_from)));
        let timer = PreciseTimer::new()?;

        let mut sent = 0_u64;
        let mut next_wake = start;
        for request in 0..total {
            let intended = schedule.intended(request);
            if intended > Instant::now() {
                timer.sleep_until(intended.max(next_wake)).await?;
                next_wake = Instant::now() + send_granularity;
            }
            let permit = in_flight.clone().acquire_owned().await?;
            let (outcome, recorded) = (call(request), recorded.clone());
            tokio::spawn(async move {
                let outcome = outcome.await;
                let answered = Instant::now();
                if intended >= measure_from {
                    let mut recorded = recorded.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
                    recorded.0.record(answered - intended, outcome);
                    recorded.1 = recorded.1.max(answered);
                }
                // Released only once recorded: holding every permit means every request is in.
                drop(permit);
            });
            sent += 1;
        }
        let _all_answered = in_flight.acquire_many(max_in_flight).await?;
        let (tally, last_answer) = recorded.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).clone();
        Ok(LoadResult { tally, elapsed: last_answer - measure_from, all_requests: sent })
    }
}

/// A one-shot timer with the kernel's resolution (a Linux `timerfd`),
/// awaited on the runtime's own poller: a sleep of 50µs wakes after about
/// 50µs, where tokio's timer wheel would round it up to a millisecond and
/// `std::thread::sleep` would need a thread of its own.
struct PreciseTimer {
    fd: tokio::io::unix::AsyncFd<TimerFd>,
}

/// `AsyncFd` wants `AsRawFd`; nix's `TimerFd` offers `AsFd`.
struct TimerFd(nix::sys::timerfd::TimerFd);

impl std::os::fd::AsRawFd for TimerFd {
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        use std::os::fd::AsFd;
        self.0.as_fd().as_raw_fd()
    }
}

impl PreciseTimer {
    /// Must be called inside a runtime with I/O enabled.
    fn new() -> std::io::Result<Self> {
        use nix::sys::timerfd::{ClockId, TimerFlags};
        use tokio::io::Interest;
        let fd = nix::sys::timerfd::TimerFd::new(
            ClockId::CLOCK_MONOTONIC,
            TimerFlags::TFD_NONBLOCK | TimerFlags::TFD_CLOEXEC,
        )?;
        // SAFETY: `TimerFd` owns its descriptor, which stays open until the `AsyncFd` drops it, and
        // `as_raw_fd` always returns that one descriptor.
        let fd = unsafe { tokio::io::unix::AsyncFd::register_with_interest(TimerFd(fd), Interest::READABLE) }
            .map_err(std::io::Error::from)?;
        Ok(Self { fd })
    }

    /// Returns at once when `deadline` has passed (without yielding, so
    /// requests that fell behind the schedule go out back to back).
    async fn sleep_until(&self, deadline: Instant) -> std::io::Result<()> {
        use nix::sys::{
            time::TimeSpec,
            timerfd::{Expiration, TimerSetTimeFlags},
        };
        let Some(wait) = deadline.checked_duration_since(Instant::now()).filter(|wait| !wait.is_zero()) else {
            return Ok(());
        };
        self.fd.get_ref().0.set(Expiration::OneShot(TimeSpec::from_duration(wait)), TimerSetTimeFlags::empty())?;
        loop {
            let mut ready = self.fd.readable().await?;
            // Reading the expiry count disarms the readiness; until the timer fires it is EAGAIN.
            match ready.try_io(|fd| {
                use std::os::fd::AsFd;
                nix::unistd::read(fd.get_ref().0.as_fd(), &mut [0_u8; 8]).map_err(std::io::Error::from)
            }) {
                Ok(expired) => return expired.map(drop),
                Err(_not_yet) => continue,
            }
        }
    }
}

/// The ids requests ask for: `FIRST..END` (numbers as strings, END
/// excluded) or a comma-separated list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdSet(Vec<String>);

impl IdSet {
    pub fn ids(&self) -> &[String] {
        &self.0
    }

    /// A uniformly chosen id.
    pub fn pick(&self, rng: &mut impl rand::Rng) -> &str {
        &self.0[rng.random_range(0..self.0.len())]
    }
}

impl std::str::FromStr for IdSet {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let ids: Vec<String> = if let Some((first, end)) = text.split_once("..") {
            let parse = |bound: &str| {
                bound.trim().parse::<u64>().map_err(|_| format!("{bound:?} in {text:?} is not a whole number"))
            };
            (parse(first)?..parse(end)?).map(|id| id.to_string()).collect()
        } else {
            text.split(',').map(str::trim).filter(|id| !id.is_empty()).map(str::to_owned).collect()
        };
        if ids.is_empty() {
            Err(format!("{text:?} names no id: give FIRST..END or a list a,b,c"))
        } else {
            Ok(Self(ids))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_schedule_is_computed_from_the_request_number_and_does_not_drift() {
        let start = Instant::now();
        let schedule = Schedule::new(start, 3.0).unwrap();
        assert_eq!(schedule.intended(0), start);
        assert_eq!(schedule.intended(3), start + Duration::from_secs(1));
        assert_eq!(schedule.intended(3_000_000), start + Duration::from_secs(1_000_000));
        let fast = Schedule::new(start, 20_000.0).unwrap();
        assert_eq!(fast.intended(1) - start, Duration::from_micros(50));
        assert_eq!(fast.intended(20_000 * 600) - start, Duration::from_secs(600));
    }

    #[test]
    fn requests_due_before_an_offset_are_counted_up_to_it() {
        let schedule = Schedule::new(Instant::now(), 100.0).unwrap();
        assert_eq!(schedule.due_before(Duration::ZERO), 0);
        // Requests 0..=99 are due before 1s; request 100 is due at 1s.
        assert_eq!(schedule.due_before(Duration::from_secs(1)), 100);
        assert_eq!(schedule.due_before(Duration::from_millis(1005)), 101);
    }

    #[test]
    fn a_rate_must_be_positive() {
        for rate in [0.0, -5.0, f64::NAN, f64::INFINITY] {
            assert!(Schedule::new(Instant::now(), rate).is_none(), "{rate}");
        }
    }

    #[test]
    fn failures_are_counted_by_code_and_kept_out_of_the_latencies() {
        let mut tally = Tally::default();
        tally.record(Duration::from_micros(100), Ok(()));
        tally.record(Duration::from_micros(300), Ok(()));
        tally.record(Duration::from_nanos(1), Err(tonic::Code::Unavailable));
        let mut other = Tally::default();
        other.record(Duration::from_millis(2), Ok(()));
        other.record(Duration::from_nanos(1), Err(tonic::Code::Unavailable));
        other.record(Duration::from_nanos(1), Err(tonic::Code::NotFound));
        tally.merge(&other);
        assert_eq!((tally.ok(), tally.failed(), tally.requests()), (3, 3, 6));
        assert_eq!(tally.errors(), &BTreeMap::from([("NotFound".to_owned(), 1), ("Unavailable".to_owned(), 2)]));
        assert_eq!(tally.quantile_micros(0.0), 100);
        assert!((1999..=2001).contains(&tally.max_micros()), "{}", tally.max_micros());
    }

    #[test]
    fn the_summary_rate_counts_recorded_requests_over_the_measured_time() {
        let mut tally = Tally::default();
        for micros in 1..=1000 {
            tally.record(Duration::from_micros(micros), Ok(()));
        }
        tally.record(Duration::ZERO, Err(tonic::Code::Internal));
        let result = LoadResult { tally, elapsed: Duration::from_millis(500), all_requests: 1201 };
        let summary = result.summary("GetMetadata", "closed", 2);
        assert_eq!((summary.requests, summary.ok, summary.all_requests), (1001, 1000, 1201));
        assert_eq!(summary.requests_per_s, 2002.0);
        assert_eq!((summary.p50_us, summary.p90_us, summary.p99_us, summary.max_us), (500, 900, 990, 1000));
        assert_eq!(summary.failures(), "1 (Internal 1)");
        let clean = LoadSummary { requests: 1000, errors: BTreeMap::new(), ..summary };
        assert_eq!(clean.failures(), "0");
    }

    /// A server that takes `service` per request, one at a time in arrival
    /// order, and stalls for `stall` on the request it gets at `stall_at`
    /// after it started.
    #[derive(Clone)]
    struct StallingServer {
        lock: Arc<tokio::sync::Mutex<()>>,
        started: Instant,
        service: Duration,
        stall_at: Duration,
        stall: Duration,
        stalled: Arc<std::sync::atomic::AtomicBool>,
    }

    impl StallingServer {
        fn new(service: Duration, stall_at: Duration, stall: Duration) -> Self {
            Self { lock: Arc::default(), started: Instant::now(), service, stall_at, stall, stalled: Arc::default() }
        }

        async fn call(&self) -> Result<(), tonic::Code> {
            let _serving = self.lock.lock().await;
            if self.started.elapsed() >= self.stall_at && !self.stalled.swap(true, Ordering::Relaxed) {
                tokio::time::sleep(self.stall).await;
            }
            tokio::time::sleep(self.service).await;
            Ok(())
        }
    }

    /// The point of the open loop: a one-second stall hits every request
    /// that was due during it. A closed-loop client with one request in
    /// flight records it once, and its p99 hides it.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_stall_shows_in_the_open_loop_tail_and_hides_in_the_closed_loop_one() {
        let stall = Duration::from_secs(1);
        let run = Extent::Duration(Duration::from_millis(2500));

        let server = StallingServer::new(Duration::from_millis(1), Duration::from_millis(500), stall);
        let open = OpenLoop::new(200.0, run)
            .run(move |_| {
                let server = server.clone();
                async move { server.call().await }
            })
            .await
            .unwrap();

        let server = StallingServer::new(Duration::from_millis(1), Duration::from_millis(500), stall);
        let closed = run_closed_loop(1, Duration::ZERO, run, move |_| {
            let server = server.clone();
            async move { server.call().await }
        })
        .await;

        assert_eq!(open.all_requests, 500);
        assert_eq!(open.tally.requests(), 500);
        // About 200 requests were due during the stall, waiting up to 1s.
        assert!(open.tally.quantile_micros(0.99) >= 800_000, "open p99 {}µs", open.tally.quantile_micros(0.99));
        assert!(open.tally.quantile_micros(0.9) >= 400_000, "open p90 {}µs", open.tally.quantile_micros(0.9));
        assert!(open.tally.max_micros() >= 1_000_000);
        // The closed loop saw the stall once, in one request of hundreds.
        assert!(closed.tally.max_micros() >= 1_000_000);
        assert!(closed.tally.requests() > 200, "{}", closed.tally.requests());
        assert!(closed.tally.quantile_micros(0.99) < 250_000, "closed p99 {}µs", closed.tally.quantile_micros(0.99));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_warm_up_is_sent_but_not_recorded() {
        let open = OpenLoop { warmup: Duration::from_millis(100), ..OpenLoop::new(1000.0, Extent::Requests(50)) }
            .run(|_| async { Ok::<(), tonic::Code>(()) })
            .await
            .unwrap();
        assert_eq!((open.all_requests, open.tally.requests()), (150, 50));

        let closed = run_closed_loop(4, Duration::from_millis(50), Extent::Requests(200), |_| async {
            tokio::time::sleep(Duration::from_millis(1)).await;
            Ok::<(), tonic::Code>(())
        })
        .await;
        assert_eq!(closed.tally.requests(), 200);
        assert!(closed.all_requests > 200, "{}", closed.all_requests);
    }

    /// Never early, and finer than tokio's millisecond timer: 200 sleeps of
    /// 50µs would take at least 200ms rounded up to milliseconds.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_precise_timer_wakes_at_its_deadline_and_not_a_millisecond_later() {
        let timer = PreciseTimer::new().unwrap();
        let start = Instant::now();
        for _ in 0..200 {
            let deadline = Instant::now() + Duration::from_micros(50);
            timer.sleep_until(deadline).await.unwrap();
            let woke = Instant::now();
            assert!(woke >= deadline, "woke {:?} early", deadline - woke);
        }
        let took = start.elapsed();
        assert!(took < Duration::from_millis(150), "200 sleeps of 50µs took {took:?}");
        // A deadline that has passed returns at once.
        timer.sleep_until(start).await.unwrap();
    }

    /// With a granularity, requests due between two wake-ups go out
    /// together: 2,000 requests over 200ms at most every 5ms are about 40
    /// groups, where a wake-up per request would make them 2,000, 100µs
    /// apart. None goes out before its time.
    #[tokio::test(flavor = "current_thread")]
    async fn requests_due_between_two_wake_ups_are_sent_together_and_never_early() {
        let rate = 10_000.0;
        let sent_at = Arc::new(Mutex::new(Vec::new()));
        let open =
            OpenLoop { send_granularity: Duration::from_millis(5), ..OpenLoop::new(rate, Extent::Requests(2_000)) };
        let started = Instant::now();
        let result = open
            .run({
                let sent_at = sent_at.clone();
                move |k| {
                    sent_at.lock().unwrap().push((k, Instant::now()));
                    async { Ok::<(), tonic::Code>(()) }
                }
            })
            .await
            .unwrap();
        assert_eq!(result.all_requests, 2_000);
        let sent_at = sent_at.lock().unwrap();
        for &(k, at) in sent_at.iter() {
            // `started` precedes the schedule's start, so this bound is loose by the set-up time only.
            assert!(at >= started + Duration::from_secs_f64(k as f64 / rate), "request {k} went out early");
        }
        let groups = 1 + sent_at.windows(2).filter(|pair| pair[1].1 - pair[0].1 > Duration::from_millis(1)).count();
        assert!((20..=60).contains(&groups), "{groups} groups");
    }

    #[test]
    fn ids_are_a_range_or_a_list() {
        assert_eq!("0..3".parse::<IdSet>().unwrap().ids(), ["0", "1", "2"]);
        assert_eq!("7, 9,x".parse::<IdSet>().unwrap().ids(), ["7", "9", "x"]);
        assert!("5..5".parse::<IdSet>().is_err());
        assert!("a..9".parse::<IdSet>().is_err());
        assert!(",".parse::<IdSet>().is_err());
    }
}
