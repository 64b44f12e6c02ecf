//! Clients' side of discovery: the healthy instances of one upstream service,
//! each with one reused gRPC channel ([`Connection`]: one HTTP/2 connection), refreshed from the registry in the
//! background. Calls go to a random instance; an instance that refuses a
//! call (UNAVAILABLE) is dropped from the pool until the registry lists it
//! again, and the call moves on to another one, all within one deadline: the
//! request timeout, or the caller's own deadline when that comes first. When
//! every instance tried refused, the call is made again after a pause
//! (exponential, with jitter) while the deadline leaves time: calls made
//! through it must be reads, which may safely reach an instance twice. A
//! registry that cannot be reached, or lists no instance at all, leaves the
//! pool as it was. An instance dropped from the pool makes it look the
//! registry up at once, in the background, for instances that joined (a
//! pod replacing one that stops); that lookup leaves out the instances
//! dropped since the last periodic refresh, which a registry may still list
//! for a while (DNS does, for a pod that is stopping, as long as its TTL).
use std::{
    future::Future,
    sync::{Arc, Weak},
    time::Duration,
};

use backon::{BackoffBuilder, ExponentialBuilder};
use tokio::sync::{Mutex, watch};

use telemetry::Chain;

use crate::{
    discovery::{Instance, Registry, ServiceName},
    security::ClientTls,
    transport::Deadline,
};

mod connection;
mod timing;
mod unary;
pub use connection::{Connection, ConnectionError, ResponseBody};
use timing::timed_client_call;

#[derive(Debug, Clone)]
pub struct UpstreamSettings {
    /// How often the list of healthy instances is fetched again.
    pub refresh_interval: Duration,
    /// The deadline of one call, retries included.
    pub request_timeout: Duration,
    /// How long opening a connection to an instance may take.
    pub connect_timeout: Duration,
    /// How many distinct instances one round of attempts may try.
    pub max_attempts: usize,
    /// How many more rounds a call may make after every instance refused.
    pub max_retries: usize,
    /// TLS towards every instance (its CA, a client certificate); none:
    /// plaintext.
    pub tls: Option<ClientTls>,
    /// The largest message [`Upstream::unary`] sends or takes, in bytes.
    pub max_message_size: usize,
}

/// The pause before the first retry; each one after doubles it, with jitter.
const RETRY_MIN_DELAY: Duration = Duration::from_millis(25);
const RETRY_MAX_DELAY: Duration = Duration::from_millis(250);

impl Default for UpstreamSettings {
    fn default() -> Self {
        Self {
            refresh_interval: Duration::from_secs(2),
            request_timeout: Duration::from_secs(2),
            connect_timeout: Duration::from_millis(500),
            max_attempts: 3,
            max_retries: 2,
            tls: None,
            max_message_size: 4 * 1024 * 1024,
        }
    }
}

/// Why a call to an upstream service did not produce an answer.
#[derive(Debug, Clone, thiserror::Error)]
pub enum UpstreamError {
    #[error("no healthy instance of the {service} service is registered")]
    NoHealthyInstance { service: ServiceName },
    /// No instance answered; the status is the last refusal.
    #[error("the {service} service is unavailable")]
    Unavailable {
        service: ServiceName,
        #[source]
        status: tonic::Status,
    },
    #[error("the {service} service did not answer within {timeout:?}")]
    DeadlineExceeded { service: ServiceName, timeout: Duration },
    /// The service answered with an error of its own (NOT_FOUND, ...).
    #[error("the {service} service answered with an error")]
    Status {
        service: ServiceName,
        #[source]
        status: tonic::Status,
    },
}

impl UpstreamError {
    /// The status code a caller would see for this error.
    pub fn code(&self) -> tonic::Code {
        match self {
            UpstreamError::NoHealthyInstance { .. } => tonic::Code::Unavailable,
            UpstreamError::Unavailable { status, .. } | UpstreamError::Status { status, .. } => status.code(),
            UpstreamError::DeadlineExceeded { .. } => tonic::Code::DeadlineExceeded,
        }
    }
}

#[derive(Clone)]
struct Member {
    instance: Instance,
    channel: Connection,
}

struct Inner {
    service: ServiceName,
    registry: Arc<dyn Registry>,
    settings: UpstreamSettings,
    /// The instances calls go to; a watch, so a change can be waited for.
    members: watch::Sender<Arc<Vec<Member>>>,
    /// Instances dropped after refusing a call since the last full refresh.
    left_out: std::sync::Mutex<Vec<Instance>>,
    refresh_lock: Mutex<()>,
}

/// Which instances a refresh puts in the pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refresh {
    /// Every instance the registry lists.
    Full,
    /// Those listed, except the ones that refused calls since the last full
    /// refresh: the refresh an instance's refusal sets off.
    LeavingOutRefused,
}

/// The instances of one upstream service. Cheap to clone; the background
/// refresh ends when the last clone is dropped.
#[derive(Clone)]
pub struct Upstream {
    inner: Arc<Inner>,
}

impl Upstream {
    pub fn new(service: ServiceName, registry: Arc<dyn Registry>, settings: UpstreamSettings) -> Self {
        let inner = Arc::new(Inner {
            service,
            registry,
            settings,
            members: watch::Sender::new(Arc::new(Vec::new())),
            left_out: std::sync::Mutex::default(),
            refresh_lock: Mutex::new(()),
        });
        tokio::spawn(refresh_periodically(Arc::downgrade(&inner)));
        Self { inner }
    }

    pub fn service(&self) -> &ServiceName {
        &self.inner.service
    }

    /// The instances calls currently go to.
    pub fn instances(&self) -> Vec<Instance> {
        self.inner.snapshot().iter().map(|member| member.instance.clone()).collect()
    }

    /// Runs `call` against a healthy instance's channel, trying other
    /// instances when one is unavailable, and every instance again after a
    /// pause when all refused, within the request timeout or by `deadline`
    /// (the caller's), whichever comes first. `call` gets the time left, for
    /// the `grpc-timeout` of its request. For reads only: `call` may run more
    /// than once, and a write must not be repeated blindly.
    pub async fn call<T, F, Fut>(&self, deadline: Option<Deadline>, mut call: F) -> Result<T, UpstreamError>
    where
        F: FnMut(Connection, &Instance, Duration) -> Fut,
        Fut: Future<Output = Result<T, tonic::Status>>,
    {
        let inner = &self.inner;
        let own = Deadline::after(inner.settings.request_timeout);
        let (deadline, timeout) = match deadline {
            Some(caller) if caller < own => (caller, whole_milliseconds(caller.remaining())),
            _ => (own, inner.settings.request_timeout),
        };
        let deadline_exceeded = || UpstreamError::DeadlineExceeded { service: inner.service.clone(), timeout };
        let attempt_all = async {
            let mut pauses = ExponentialBuilder::default()
                .with_min_delay(RETRY_MIN_DELAY)
                .with_max_delay(RETRY_MAX_DELAY)
                .with_jitter()
                .with_max_times(inner.settings.max_retries)
                .build();
            loop {
                let refused = match inner.round(&mut call, deadline).await {
                    Round::Finished(result) => return result,
                    Round::DeadlineExceeded => return Err(deadline_exceeded()),
                    Round::Refused(error) => error,
                };
                // Pause, then ask the registry again, only if time is left for
                // another round after the pause.
                match pauses.next() {
                    Some(pause) if pause < deadline.remaining() => {
                        tracing::debug!(service = %inner.service, ?pause, "no instance answered; trying again after a pause");
                        tokio::time::sleep(pause).await;
                        inner.refresh(Refresh::Full).await;
                    }
                    _ => return Err(refused),
                }
            }
        };
        match tokio::time::timeout_at(deadline.instant(), attempt_all).await {
            Ok(result) => result,
            Err(_) => Err(deadline_exceeded()),
        }
    }
}

/// What one round of attempts came to.
enum Round<T> {
    /// An answer, or an error that another attempt would not change.
    Finished(Result<T, UpstreamError>),
    DeadlineExceeded,
    /// Every instance tried refused the call, or none is listed.
    Refused(UpstreamError),
}

/// A call whose connection broke after its answer began (the instance went
/// away mid-response) comes back from tonic with the HTTP/2 error as its
/// source, as UNKNOWN (a status the instance sent has no source): for
/// routing and for callers the instance is UNAVAILABLE. A connection that
/// failed before the answer began is UNAVAILABLE already ([`Connection`]).
fn unreachable_as_unavailable(status: tonic::Status) -> tonic::Status {
    let broken = std::error::Error::source(&status)
        .and_then(|source| source.downcast_ref::<h2::Error>())
        .filter(|error| error.is_io() || error.is_go_away())
        .map(|error| format!("the connection failed: {}", Chain(error)));
    match broken {
        Some(reason) => tonic::Status::unavailable(reason),
        None => status,
    }
}

impl Inner {
    /// Tries distinct instances, from a random one on, until one answers or
    /// `max_attempts` refused.
    async fn round<T, F, Fut>(self: &Arc<Self>, call: &mut F, deadline: Deadline) -> Round<T>
    where
        F: FnMut(Connection, &Instance, Duration) -> Fut,
        Fut: Future<Output = Result<T, tonic::Status>>,
    {
        let mut members = self.snapshot();
        if members.is_empty() {
            self.refresh(Refresh::Full).await;
            members = self.snapshot();
        }
        if members.is_empty() {
            return Round::Refused(UpstreamError::NoHealthyInstance { service: self.service.clone() });
        }
        let start = rand::random_range(0..members.len());
        let attempts = members.len().min(self.settings.max_attempts.max(1));
        let mut last_status = None;
        for offset in 0..attempts {
            let member = &members[(start + offset) % members.len()];
            match call(member.channel.clone(), &member.instance, deadline.remaining())
                .await
                .map_err(unreachable_as_unavailable)
            {
                Ok(value) => return Round::Finished(Ok(value)),
                // The instance's timer, or the channel's, ended the call at
                // the deadline: CANCELLED or DEADLINE_EXCEEDED.
                Err(_) if deadline.remaining().is_zero() => return Round::DeadlineExceeded,
                Err(status) if status.code() == tonic::Code::Unavailable => {
                    // Said once per instance left out, not by every call that
                    // was on its connection when it broke.
                    if self.evict(&member.instance) {
                        tracing::warn!(service = %self.service, instance = %member.instance.id,
                            address = %member.instance.authority(), error = %status.message(),
                            "instance unavailable; leaving it out until the registry lists it again");
                        let inner = self.clone();
                        tokio::spawn(async move { inner.refresh(Refresh::LeavingOutRefused).await });
                    } else {
                        tracing::debug!(service = %self.service, instance = %member.instance.id,
                            error = %status.message(), "instance unavailable; already left out");
                    }
                    last_status = Some(status);
                }
                Err(status) if status.code() == tonic::Code::DeadlineExceeded => return Round::DeadlineExceeded,
                Err(status) => {
                    return Round::Finished(Err(UpstreamError::Status { service: self.service.clone(), status }));
                }
            }
        }
        Round::Refused(UpstreamError::Unavailable {
            service: self.service.clone(),
            status: last_status.unwrap_or_else(|| tonic::Status::unavailable("no instance answered")),
        })
    }

    fn snapshot(&self) -> Arc<Vec<Member>> {
        self.members.borrow().clone()
    }

    fn replace(&self, members: Vec<Member>) {
        self.count(members.len());
        self.members.send_replace(Arc::new(members));
    }

    fn count(&self, members: usize) {
        metrics::gauge!("discovery_instances", "service" => self.service.to_string()).set(members as f64);
    }

    /// Leaves `instance` out of the pool, and out of the refreshes its
    /// refusals set off; false when it was not in the pool (an earlier call
    /// left it out already). One step under the pool's lock, so that
    /// concurrent evictions lose none of each other's.
    fn evict(&self, instance: &Instance) -> bool {
        let mut left = None;
        self.members.send_if_modified(|members| {
            if !members.iter().any(|member| &member.instance == instance) {
                return false;
            }
            *members = Arc::new(members.iter().filter(|member| &member.instance != instance).cloned().collect());
            left = Some(members.len());
            true
        });
        let evicted = left.inspect(|&members| self.count(members)).is_some();
        if evicted {
            self.lock_left_out().push(instance.clone());
        }
        evicted
    }

    fn lock_left_out(&self) -> std::sync::MutexGuard<'_, Vec<Instance>> {
        // Every update is one push or one clear: a panic cannot leave it
        // half-made, so poisoning is ignored.
        self.left_out.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Fetches the healthy instances again. Keeps the last known list when the
    /// registry cannot be reached, or lists none at all (a registry that
    /// came back without its state lists nothing until the instances
    /// register again, and an empty pool would fail every call meanwhile):
    /// instances that really left are dropped at their first refusal. Reuses
    /// the channel of every instance that is still listed. A full refresh
    /// takes back the instances that refused calls, if they are listed.
    async fn refresh(&self, kind: Refresh) {
        let _single_flight = self.refresh_lock.lock().await;
        if kind == Refresh::Full {
            self.lock_left_out().clear();
        }
        let listed = match self.registry.healthy_instances(&self.service).await {
            Ok(listed) if kind == Refresh::LeavingOutRefused => {
                let left_out = self.lock_left_out();
                listed.into_iter().filter(|instance| !left_out.contains(instance)).collect()
            }
            Ok(listed) => listed,
            Err(error) => {
                tracing::warn!(service = %self.service, error = &error as &dyn std::error::Error,
                    "cannot refresh instances; keeping the last known ones");
                return;
            }
        };
        let current = self.snapshot();
        if listed.is_empty() && !current.is_empty() {
            tracing::warn!(service = %self.service, kept = current.len(),
                "the registry lists no healthy instance; keeping the last known ones until they refuse a call");
            return;
        }
        let mut members = Vec::with_capacity(listed.len());
        for instance in listed {
            if let Some(known) = current.iter().find(|member| member.instance == instance) {
                members.push(known.clone());
                continue;
            }
            match self.connect(&instance) {
                Ok(channel) => {
                    tracing::info!(service = %self.service, instance = %instance.id, address = %instance.authority(), "instance added");
                    members.push(Member { instance, channel });
                }
                Err(error) => {
                    tracing::warn!(service = %self.service, instance = %instance.id,
                        error = &error as &dyn std::error::Error, "instance address is unusable")
                }
            }
        }
        for gone in current.iter().filter(|member| !members.iter().any(|kept| kept.instance == member.instance)) {
            tracing::info!(service = %self.service, instance = %gone.instance.id, "instance removed");
        }
        self.replace(members);
    }

    fn connect(&self, instance: &Instance) -> Result<Connection, ConnectionError> {
        // An address found under a name (DNS discovery) is checked against
        // that name: the certificate carries the Service's name, not the
        // pod's address.
        let tls = match (&self.settings.tls, &instance.server_name) {
            (Some(tls), Some(name)) => Some(tls.or_server_name(name)),
            (tls, _) => tls.clone(),
        };
        Connection::new(&instance.authority(), tls.as_ref(), self.settings.connect_timeout)
    }
}

/// `duration` without its fraction of a millisecond, for error messages.
fn whole_milliseconds(duration: Duration) -> Duration {
    Duration::from_millis(u64::try_from(duration.as_millis()).unwrap_or(u64::MAX))
}

async fn refresh_periodically(inner: Weak<Inner>) {
    loop {
        let Some(strong) = inner.upgrade() else { return };
        let interval = strong.settings.refresh_interval;
        strong.refresh(Refresh::Full).await;
        drop(strong);
        tokio::time::sleep(interval).await;
    }
}

#[cfg(test)]
mod tests {
    use tokio::time::Instant;

    use super::*;
    use crate::discovery::{InstanceId, MemoryRegistry};

    fn instance(id: &str, port: u16) -> Instance {
        Instance {
            id: InstanceId::new(id),
            service: ServiceName::new("rating"),
            host: "127.0.0.1".into(),
            port,
            metrics_port: None,
            server_name: None,
        }
    }

    /// Waits until the pool holds exactly the instances `expected`, for at
    /// most a minute of (paused) time.
    async fn until_pool_is(upstream: &Upstream, expected: &[&str]) {
        let mut members = upstream.inner.members.subscribe();
        let is_expected = |members: &Arc<Vec<Member>>| {
            members.iter().map(|member| member.instance.id.as_str()).eq(expected.iter().copied())
        };
        let reached = tokio::time::timeout(Duration::from_secs(60), members.wait_for(is_expected)).await;
        if reached.is_err() {
            panic!("the pool never became {expected:?}: {:?}", upstream.instances());
        }
    }

    fn settings() -> UpstreamSettings {
        UpstreamSettings {
            refresh_interval: Duration::from_millis(20),
            request_timeout: Duration::from_secs(2),
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn no_instance_is_an_error_naming_the_service() {
        let upstream = Upstream::new(ServiceName::new("rating"), Arc::new(MemoryRegistry::default()), settings());
        let error = upstream.call(None, |_, _, _| async { Ok::<_, tonic::Status>(()) }).await.unwrap_err();
        assert!(matches!(error, UpstreamError::NoHealthyInstance { .. }));
        assert_eq!(error.to_string(), "no healthy instance of the rating service is registered");
    }

    #[tokio::test(start_paused = true)]
    async fn unavailable_instances_are_routed_around_and_evicted() {
        let registry = registry_of(&[("rating-a", 1), ("rating-b", 2)]).await;
        let upstream = Upstream::new(
            ServiceName::new("rating"),
            registry.clone(),
            UpstreamSettings { refresh_interval: Duration::from_secs(3600), ..settings() },
        );
        // Let the background task's first refresh complete (its next one is an
        // hour away), so nothing re-adds rating-a behind the test's back.
        until_pool_is(&upstream, &["rating-a", "rating-b"]).await;
        // rating-a (port 1) refuses: every call ends on rating-b, and rating-a
        // is dropped once a call has tried it. Calls start at a random
        // instance, so call until one has tried it (a hundred calls that all
        // start at rating-b: odds of 2^-100), then five more.
        let refused = std::sync::atomic::AtomicUsize::new(0);
        let call = || {
            upstream.call(None, |_, instance, _| {
                let port = instance.port;
                if port == 1 {
                    refused.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
                async move { if port == 1 { Err(tonic::Status::unavailable("connection refused")) } else { Ok(port) } }
            })
        };
        for _ in 0..100 {
            assert_eq!(call().await.unwrap(), 2);
            if refused.load(std::sync::atomic::Ordering::Relaxed) > 0 {
                break;
            }
        }
        for _ in 0..5 {
            assert_eq!(call().await.unwrap(), 2);
        }
        assert_eq!(refused.into_inner(), 1, "rating-a was tried once, then left out");
        let left: Vec<String> = upstream.instances().iter().map(Instance::authority).collect();
        assert_eq!(left, ["127.0.0.1:2"]);
    }

    /// An instance that refuses a call makes the pool look the registry up
    /// at once rather than at its next refresh, so that an instance that
    /// joined meanwhile takes its share; the one that refused stays out,
    /// though the registry still lists it (DNS does, for a pod that is
    /// stopping), until a periodic refresh lists it again.
    #[tokio::test(start_paused = true)]
    async fn a_refusal_looks_the_registry_up_at_once_leaving_the_refused_instance_out() {
        // Heartbeats that outlive the test's hours of paused time.
        let registry = Arc::new(MemoryRegistry::new(Duration::from_secs(24 * 3600)));
        for (id, port) in [("rating-a", 1), ("rating-b", 2)] {
            list(&registry, id, port).await;
        }
        let refresh_interval = Duration::from_secs(3600);
        let upstream = Upstream::new(
            ServiceName::new("rating"),
            registry.clone(),
            UpstreamSettings { refresh_interval, ..settings() },
        );
        until_pool_is(&upstream, &["rating-a", "rating-b"]).await;
        list(&registry, "rating-c", 3).await;

        // rating-a refuses; calls start at a random instance, so call until
        // one has tried it.
        let refused = std::sync::atomic::AtomicUsize::new(0);
        for _ in 0..100 {
            let answer = upstream
                .call(None, |_, instance, _| {
                    let port = instance.port;
                    if port == 1 {
                        refused.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                    async move { if port == 1 { Err(tonic::Status::unavailable("shutting down")) } else { Ok(port) } }
                })
                .await;
            assert_ne!(answer.unwrap(), 1);
            if refused.load(std::sync::atomic::Ordering::Relaxed) > 0 {
                break;
            }
        }
        assert_eq!(refused.into_inner(), 1);
        // Within a minute of paused time, the periodic refresh an hour away.
        until_pool_is(&upstream, &["rating-b", "rating-c"]).await;

        tokio::time::sleep(refresh_interval).await;
        until_pool_is(&upstream, &["rating-a", "rating-b", "rating-c"]).await;
    }

    /// A connection that breaks under a hundred calls leaves its instance
    /// out once, and says so once.
    #[tokio::test]
    async fn an_instance_failing_many_calls_at_once_is_left_out_and_reported_once() {
        const CALLS: usize = 100;
        let logs = telemetry::test_support::CapturedLogs::start();
        let registry = registry_of(&[("rating-a", 1)]).await;
        let settings = UpstreamSettings { refresh_interval: Duration::from_secs(3600), max_retries: 0, ..settings() };
        let upstream = Upstream::new(ServiceName::new("rating"), registry, settings);
        until_pool_is(&upstream, &["rating-a"]).await;
        // Every call fails once all of them are on the instance.
        let all_in = tokio::sync::Barrier::new(CALLS);
        let calls = (0..CALLS).map(|_| {
            upstream.call(None, |_, _, _| async {
                all_in.wait().await;
                Err::<(), _>(tonic::Status::unavailable("the connection broke"))
            })
        });
        let failed = futures::future::join_all(calls).await;
        assert!(failed.iter().all(|call| matches!(call, Err(UpstreamError::Unavailable { .. }))), "{failed:?}");
        let message = "instance unavailable; leaving it out until the registry lists it again";
        let warned = logs.events(tracing::Level::WARN, message);
        assert_eq!(warned.len(), 1, "one warning for the instance: {}", logs.text());
        assert_eq!(warned[0].field("instance"), Some("rating-a"));
        assert!(upstream.instances().is_empty(), "left out: {:?}", upstream.instances());
    }

    #[tokio::test]
    async fn application_errors_are_not_retried() {
        let registry = registry_of(&[("rating-a", 1), ("rating-b", 2)]).await;
        let upstream = Upstream::new(ServiceName::new("rating"), registry, settings());
        let attempts = std::sync::atomic::AtomicUsize::new(0);
        let error = upstream
            .call(None, |_, _, _| {
                attempts.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                async { Err::<(), _>(tonic::Status::not_found("no ratings")) }
            })
            .await
            .unwrap_err();
        assert!(matches!(error, UpstreamError::Status { ref status, .. } if status.code() == tonic::Code::NotFound));
        assert_eq!(error.to_string(), "the rating service answered with an error");
        let source = std::error::Error::source(&error).and_then(|source| source.downcast_ref::<tonic::Status>());
        assert_eq!(source.map(tonic::Status::message), Some("no ratings"));
        assert_eq!(attempts.load(std::sync::atomic::Ordering::SeqCst), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn slow_calls_fail_with_deadline_exceeded() {
        let registry = registry_of(&[("rating-a", 1)]).await;
        let request_timeout = Duration::from_millis(50);
        let upstream =
            Upstream::new(ServiceName::new("rating"), registry, UpstreamSettings { request_timeout, ..settings() });
        let started = Instant::now();
        let never_answered = upstream.call(None, |_, _, _| std::future::pending::<Result<(), tonic::Status>>());
        let error = tokio::time::timeout(Duration::from_secs(60), never_answered)
            .await
            .expect("the call gave up by itself")
            .unwrap_err();
        assert!(
            matches!(error, UpstreamError::DeadlineExceeded { timeout, .. } if timeout == request_timeout),
            "{error}"
        );
        let waited = started.elapsed();
        assert!(waited >= request_timeout && waited < request_timeout * 2, "gave up after {waited:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_caller_deadline_sooner_than_the_request_timeout_is_the_one_kept() {
        let registry = registry_of(&[("rating-a", 1)]).await;
        let upstream = Upstream::new(ServiceName::new("rating"), registry, settings());
        let caller = Duration::from_millis(100);
        let started = Instant::now();
        let given = std::sync::Mutex::new(Vec::new());
        // The instance's own timer ends the call at the deadline, as a
        // `grpc-timeout` would: CANCELLED, which is the deadline all the same.
        let error = upstream
            .call(Some(Deadline::after(caller)), |_, _, left| {
                given.lock().unwrap().push(left);
                async move {
                    tokio::time::sleep(left).await;
                    Err::<(), _>(tonic::Status::cancelled("Timeout expired"))
                }
            })
            .await
            .unwrap_err();
        assert!(matches!(error, UpstreamError::DeadlineExceeded { timeout, .. } if timeout == caller), "{error}");
        assert_eq!(error.to_string(), "the rating service did not answer within 100ms");
        let waited = started.elapsed();
        assert!(waited >= caller && waited < caller * 2, "gave up after {waited:?}");
        assert_eq!(given.into_inner().unwrap(), [caller], "the attempt was told the time left");
    }

    /// Lists `id` at `port` in `registry`, healthy.
    async fn list(registry: &MemoryRegistry, id: &str, port: u16) {
        registry.register(&instance(id, port)).await.unwrap();
        registry.report_healthy(&instance(id, port)).await.unwrap();
    }

    /// A registry listing `instances` (id, port), healthy.
    async fn registry_of(instances: &[(&str, u16)]) -> Arc<MemoryRegistry> {
        let registry = Arc::new(MemoryRegistry::default());
        for &(id, port) in instances {
            list(&registry, id, port).await;
        }
        registry
    }

    /// A registry listing one instance, `rating-a` on port 1.
    async fn one_instance() -> Arc<MemoryRegistry> {
        registry_of(&[("rating-a", 1)]).await
    }

    #[tokio::test(start_paused = true)]
    async fn a_refused_read_is_tried_again_after_growing_pauses() {
        let upstream = Upstream::new(ServiceName::new("rating"), one_instance().await, settings());
        let attempts = std::sync::Mutex::new(Vec::new());
        let answer = upstream
            .call(None, |_, _, _| {
                let mut attempts = attempts.lock().unwrap();
                attempts.push(Instant::now());
                let refused = attempts.len() <= 2;
                async move { if refused { Err(tonic::Status::unavailable("connection refused")) } else { Ok(7) } }
            })
            .await;
        assert_eq!(answer.unwrap(), 7);
        let attempts = attempts.into_inner().unwrap();
        assert_eq!(attempts.len(), 3);
        let pauses: Vec<Duration> = attempts.windows(2).map(|pair| pair[1] - pair[0]).collect();
        // Each pause is the delay plus a jitter below it; tokio's timer
        // rounds a sleep up to its next millisecond, so a pause just under
        // twice the delay is measured as exactly twice.
        assert!(pauses[0] >= RETRY_MIN_DELAY && pauses[0] <= RETRY_MIN_DELAY * 2, "{pauses:?}");
        assert!(pauses[1] >= RETRY_MIN_DELAY * 2 && pauses[1] <= RETRY_MIN_DELAY * 4, "{pauses:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_lasting_refusal_is_unavailable_after_the_retries_well_before_the_deadline() {
        let upstream = Upstream::new(ServiceName::new("rating"), one_instance().await, settings());
        let attempts = std::sync::atomic::AtomicUsize::new(0);
        let started = Instant::now();
        let error = upstream
            .call(None, |_, _, _| {
                attempts.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                async { Err::<(), _>(tonic::Status::unavailable("connection refused")) }
            })
            .await
            .unwrap_err();
        assert!(matches!(error, UpstreamError::Unavailable { .. }), "{error}");
        assert_eq!(attempts.into_inner(), 3, "one try and two retries");
        assert!(started.elapsed() < Duration::from_secs(1), "gave up after {:?}", started.elapsed());
    }

    #[tokio::test(start_paused = true)]
    async fn no_retry_starts_that_the_deadline_would_cut_short() {
        let settings = UpstreamSettings { request_timeout: RETRY_MIN_DELAY / 2, ..settings() };
        let upstream = Upstream::new(ServiceName::new("rating"), one_instance().await, settings);
        let attempts = std::sync::atomic::AtomicUsize::new(0);
        let error = upstream
            .call(None, |_, _, _| {
                attempts.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                async { Err::<(), _>(tonic::Status::unavailable("connection refused")) }
            })
            .await
            .unwrap_err();
        assert!(matches!(error, UpstreamError::Unavailable { .. }), "{error}");
        assert_eq!(attempts.into_inner(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn an_empty_listing_keeps_the_last_known_instances_until_they_refuse() {
        let registry = registry_of(&[("rating-a", 1), ("rating-b", 2)]).await;
        let upstream = Upstream::new(ServiceName::new("rating"), registry.clone(), settings());
        until_pool_is(&upstream, &["rating-a", "rating-b"]).await;
        // The registry forgets every instance, as a Consul agent restarted
        // without its state does until they register again.
        for (id, port) in [("rating-a", 1), ("rating-b", 2)] {
            registry.deregister(&instance(id, port)).await.unwrap();
        }
        tokio::time::sleep(settings().refresh_interval * 10).await;
        assert_eq!(upstream.instances().len(), 2, "the last known instances are kept");
        // rating-a has really gone: its first refusal drops it, and the call
        // is answered by rating-b.
        for _ in 0..20 {
            let answer =
                upstream
                    .call(None, |_, instance, _| {
                        let port = instance.port;
                        async move {
                            if port == 1 { Err(tonic::Status::unavailable("connection refused")) } else { Ok(port) }
                        }
                    })
                    .await;
            assert_eq!(answer.unwrap(), 2);
        }
        until_pool_is(&upstream, &["rating-b"]).await;
    }

    #[tokio::test(start_paused = true)]
    async fn deregistered_instances_leave_the_pool_and_new_ones_join() {
        let registry = registry_of(&[("rating-a", 1)]).await;
        let upstream = Upstream::new(ServiceName::new("rating"), registry.clone(), settings());
        upstream.call(None, |_, _, _| async { Ok::<_, tonic::Status>(()) }).await.unwrap();
        registry.deregister(&instance("rating-a", 1)).await.unwrap();
        list(&registry, "rating-b", 2).await;
        until_pool_is(&upstream, &["rating-b"]).await;
    }
}
