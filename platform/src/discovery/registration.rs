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

    use super::*;
    use crate::discovery::{InstanceId, MemoryRegistry, ServiceName};

    fn instance() -> Instance {
        Instance {
            id: InstanceId::new("rating-1"),
            service: ServiceName::new("rating"),
            host: "127.0.0.1".into(),
            port: 1,
        }
    }

    /// A registry that is unreachable for its first `failures` registrations.
    struct Flaky {
        inner: MemoryRegistry,
        failures: AtomicUsize,
    }

    #[async_trait::async_trait]
    impl Registry for Flaky {
        async fn register(&self, instance: &Instance) -> Result<(), DiscoveryError> {
            if self.failures.load(Ordering::SeqCst) > 0 {
                self.failures.fetch_sub(1, Ordering::SeqCst);
                return Err(DiscoveryError::Unreachable { address: "test".into(), source: "down".into() });
            }
            self.inner.register(instance).await
        }
        async fn deregister(&self, instance: &Instance) -> Result<(), DiscoveryError> {
            self.inner.deregister(instance).await
        }
        async fn report_healthy(&self, instance: &Instance) -> Result<(), DiscoveryError> {
            self.inner.report_healthy(instance).await
        }
        async fn healthy_instances(&self, service: &ServiceName) -> Result<Vec<Instance>, DiscoveryError> {
            self.inner.healthy_instances(service).await
        }
        fn describe(&self) -> String {
            "flaky".into()
        }
    }

    async fn wait_until_healthy(registry: &dyn Registry, expected: usize) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while registry.healthy_instances(&ServiceName::new("rating")).await.unwrap().len() != expected {
            assert!(tokio::time::Instant::now() < deadline, "instance count never reached {expected}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    #[tokio::test]
    async fn retries_an_unreachable_registry_then_heartbeats_and_deregisters_on_stop() {
        let registry =
            Arc::new(Flaky { inner: MemoryRegistry::new(Duration::from_millis(300)), failures: AtomicUsize::new(2) });
        let settings = RegistrationSettings { heartbeat_interval: Duration::from_millis(50), ..Default::default() };
        let registration = Registration::start(registry.clone(), instance(), settings);
        wait_until_healthy(registry.as_ref(), 1).await;
        assert_eq!(registry.failures.load(Ordering::SeqCst), 0, "both failed attempts were retried");

        // Heartbeats keep it healthy well past one TTL.
        tokio::time::sleep(Duration::from_millis(700)).await;
        wait_until_healthy(registry.as_ref(), 1).await;

        registration.stop().await;
        wait_until_healthy(registry.as_ref(), 0).await;
    }

    #[tokio::test]
    async fn registers_again_when_the_registry_forgets_the_instance() {
        let registry = Arc::new(MemoryRegistry::new(Duration::from_secs(5)));
        let settings = RegistrationSettings { heartbeat_interval: Duration::from_millis(20), ..Default::default() };
        let registration = Registration::start(registry.clone(), instance(), settings);
        wait_until_healthy(registry.as_ref(), 1).await;
        registry.deregister(&instance()).await.unwrap(); // as if the agent restarted
        wait_until_healthy(registry.as_ref(), 1).await;
        registration.stop().await;
    }
}
