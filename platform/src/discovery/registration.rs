//! Keeps one instance registered and reported healthy for as long as the
//! process serves: registers with backoff while the registry is unreachable,
//! heartbeats well inside the TTL, registers again if the registry forgot the
//! instance (an agent restart), and deregisters when stopped.
use std::{sync::Arc, time::Duration};

use backon::{BackoffBuilder, ExponentialBuilder};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::{DiscoveryError, Instance, Registry};

#[derive(Debug, Clone)]
pub struct RegistrationSettings {
    /// Time between two heartbeats; a third of the check TTL is customary.
    pub heartbeat_interval: Duration,
    /// The longest wait between two attempts to reach an unreachable registry.
    pub max_retry_delay: Duration,
    /// How long deregistration may take on shutdown before it is abandoned.
    pub deregister_timeout: Duration,
}

impl Default for RegistrationSettings {
    fn default() -> Self {
        Self {
            heartbeat_interval: Duration::from_secs(3),
            max_retry_delay: Duration::from_secs(10),
            deregister_timeout: Duration::from_secs(3),
        }
    }
}

/// A running registration. Dropping it stops the heartbeats without
/// deregistering; call [`Registration::stop`] to leave cleanly.
pub struct Registration {
    registry: Arc<dyn Registry>,
    instance: Instance,
    settings: RegistrationSettings,
    stop: CancellationToken,
    task: JoinHandle<()>,
}

impl Registration {
    /// Registers `instance` and starts heartbeating in the background.
    pub fn start(registry: Arc<dyn Registry>, instance: Instance, settings: RegistrationSettings) -> Self {
        let stop = CancellationToken::new();
        let task = tokio::spawn(keep_registered(registry.clone(), instance.clone(), settings.clone(), stop.clone()));
        Self { registry, instance, settings, stop, task }
    }

    /// Stops the heartbeats and deregisters, within the deregister timeout.
    pub async fn stop(mut self) {
        self.stop.cancel();
        let _ = (&mut self.task).await;
        let instance = &self.instance;
        match tokio::time::timeout(self.settings.deregister_timeout, self.registry.deregister(instance)).await {
            Ok(Ok(())) => tracing::info!(instance = %instance.id, registry = %self.registry.describe(), "deregistered"),
            Ok(Err(error)) => {
                tracing::warn!(instance = %instance.id, error = &error as &dyn std::error::Error, "deregistration failed")
            }
            Err(_) => {
                tracing::warn!(instance = %instance.id, timeout = ?self.settings.deregister_timeout, "deregistration timed out")
            }
        }
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

async fn keep_registered(
    registry: Arc<dyn Registry>,
    instance: Instance,
    settings: RegistrationSettings,
    stop: CancellationToken,
) {
    let new_backoff = || {
        ExponentialBuilder::default()
            .with_min_delay(Duration::from_millis(200))
            .with_max_delay(settings.max_retry_delay)
            .with_jitter()
            .without_max_times()
            .build()
    };
    let mut backoff = new_backoff();
    let mut registered = false;
    let mut healthy_reported = false;
    loop {
        let outcome = if registered {
            registry.report_healthy(&instance).await
        } else {
            match registry.register(&instance).await {
                Ok(()) => {
                    registered = true;
                    tracing::info!(instance = %instance.id, address = %instance.authority(), registry = %registry.describe(), "registered");
                    registry.report_healthy(&instance).await
                }
                Err(error) => Err(error),
            }
        };
        let wait = match outcome {
            Ok(()) => {
                if !healthy_reported {
                    tracing::info!(instance = %instance.id, every = ?settings.heartbeat_interval, "reporting healthy");
                    healthy_reported = true;
                }
                backoff = new_backoff();
                settings.heartbeat_interval
            }
            Err(DiscoveryError::UnknownInstance(_)) => {
                tracing::warn!(instance = %instance.id, "the registry no longer knows this instance; registering again");
                registered = false;
                healthy_reported = false;
                Duration::ZERO
            }
            Err(error) => {
                let delay = backoff
                    .next()
                    .unwrap_or(settings.max_retry_delay)
                    .min(settings.heartbeat_interval.max(settings.max_retry_delay));
                let action = if registered { "heartbeat" } else { "registration" };
                metrics::counter!("discovery_heartbeat_failures_total").increment(1);
                tracing::warn!(instance = %instance.id, error = &error as &dyn std::error::Error, retry_in = ?delay,
                    "{action} failed; still serving");
                healthy_reported = false;
                delay
            }
        };
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use tokio::{sync::watch, time::Instant};

    use super::*;
    use crate::discovery::{InstanceId, MemoryRegistry, ServiceName};

    fn instance() -> Instance {
        Instance {
            id: InstanceId::new("rating-1"),
            service: ServiceName::new("rating"),
            host: "127.0.0.1".into(),
            port: 1,
            metrics_port: None,
            server_name: None,
        }
    }

    /// The calls that reached the registry: all of them, and those that succeeded.
    #[derive(Debug, Default, Clone, Copy)]
    struct Calls {
        attempts: usize,
        registrations: usize,
        heartbeats: usize,
        deregistrations: usize,
    }

    /// An in-memory registry that is unreachable for its first `failures`
    /// registrations, and that publishes the calls it receives so a test
    /// can wait for them.
    struct Observed {
        inner: MemoryRegistry,
        failures: AtomicUsize,
        calls: watch::Sender<Calls>,
    }

    impl Observed {
        fn new(ttl: Duration, failures: usize) -> Arc<Self> {
            Arc::new(Self {
                inner: MemoryRegistry::new(ttl),
                failures: AtomicUsize::new(failures),
                calls: watch::Sender::default(),
            })
        }

        /// Waits until the calls so far satisfy `condition`, for at most a
        /// minute of paused time. Paused time stands still while a task is
        /// always busy, so a registration loop that spins without waiting
        /// fails on its number of calls instead.
        async fn until(&self, mut condition: impl FnMut(&Calls) -> bool) -> Calls {
            let mut calls = self.calls.subscribe();
            let budget = calls.borrow().attempts + 1_000;
            let within_budget = |calls: &Calls| {
                assert!(calls.attempts < budget, "the registration loop spins: {calls:?}");
                condition(calls)
            };
            let reached = tokio::time::timeout(Duration::from_secs(60), calls.wait_for(within_budget)).await;
            *reached.expect("the registry calls never satisfied the condition").expect("the registry is alive")
        }

        async fn healthy(&self) -> usize {
            self.inner.healthy_instances(&ServiceName::new("rating")).await.unwrap().len()
        }
    }

    #[async_trait::async_trait]
    impl Registry for Observed {
        async fn register(&self, instance: &Instance) -> Result<(), DiscoveryError> {
            self.calls.send_modify(|calls| calls.attempts += 1);
            if self.failures.load(Ordering::SeqCst) > 0 {
                self.failures.fetch_sub(1, Ordering::SeqCst);
                return Err(DiscoveryError::Unreachable { address: "test".into(), source: "down".into() });
            }
            self.inner.register(instance).await?;
            self.calls.send_modify(|calls| calls.registrations += 1);
            Ok(())
        }
        async fn deregister(&self, instance: &Instance) -> Result<(), DiscoveryError> {
            self.calls.send_modify(|calls| calls.attempts += 1);
            self.inner.deregister(instance).await?;
            self.calls.send_modify(|calls| calls.deregistrations += 1);
            Ok(())
        }
        async fn report_healthy(&self, instance: &Instance) -> Result<(), DiscoveryError> {
            self.calls.send_modify(|calls| calls.attempts += 1);
            self.inner.report_healthy(instance).await?;
            self.calls.send_modify(|calls| calls.heartbeats += 1);
            Ok(())
        }
        async fn healthy_instances(&self, service: &ServiceName) -> Result<Vec<Instance>, DiscoveryError> {
            self.inner.healthy_instances(service).await
        }
        fn describe(&self) -> String {
            "observed".into()
        }
    }

    #[tokio::test(start_paused = true)]
    async fn retries_an_unreachable_registry_then_heartbeats_and_deregisters_on_stop() {
        let ttl = Duration::from_secs(9);
        let registry = Observed::new(ttl, 2);
        let settings = RegistrationSettings { heartbeat_interval: ttl / 3, ..Default::default() };
        let registration = Registration::start(registry.clone(), instance(), settings);
        registry.until(|calls| calls.heartbeats == 1).await;
        assert_eq!(registry.failures.load(Ordering::SeqCst), 0, "both failed attempts were retried");
        assert_eq!(registry.healthy().await, 1);

        // Heartbeats keep it healthy for ten TTLs, looked at every second of
        // paused time (which jumps from one timer to the next, so the
        // heartbeats go out at their own times), one heartbeat per interval.
        let mut every_second =
            tokio::time::interval_at(Instant::now() + Duration::from_secs(1), Duration::from_secs(1));
        for second in 1..=90 {
            every_second.tick().await;
            assert_eq!(registry.healthy().await, 1, "unhealthy {second}s after the first heartbeat");
        }
        let heartbeats = registry.calls.borrow().heartbeats;
        assert!((30..=31).contains(&heartbeats), "{heartbeats} heartbeats in 90s, one every 3s expected");

        registration.stop().await;
        assert_eq!(registry.calls.borrow().deregistrations, 1);
        assert_eq!(registry.healthy().await, 0);
    }

    #[tokio::test(start_paused = true)]
    async fn registers_again_when_the_registry_forgets_the_instance() {
        let heartbeat_interval = Duration::from_secs(3);
        let registry = Observed::new(heartbeat_interval * 3, 0);
        let settings = RegistrationSettings { heartbeat_interval, ..Default::default() };
        let registration = Registration::start(registry.clone(), instance(), settings);
        let before = registry.until(|calls| calls.heartbeats == 1).await;

        registry.inner.deregister(&instance()).await.unwrap(); // as if the agent restarted
        let forgotten_at = Instant::now();
        registry.until(|calls| calls.registrations == 2 && calls.heartbeats > before.heartbeats).await;
        assert!(forgotten_at.elapsed() <= heartbeat_interval, "registered again at the next heartbeat");
        assert_eq!(registry.healthy().await, 1);
        registration.stop().await;
    }
}
