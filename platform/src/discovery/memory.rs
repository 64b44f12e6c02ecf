//! An in-process registry with TTL semantics like Consul's: an instance is
//! healthy only while its last heartbeat is younger than the TTL.
//!
//! Ages are measured on tokio's clock, so tests can let a TTL lapse with
//! paused time.
use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use tokio::time::Instant;

use super::{DiscoveryError, Instance, InstanceId, Registry, ServiceName};

#[derive(Clone)]
pub struct MemoryRegistry {
    ttl: Duration,
    instances: Arc<Mutex<HashMap<InstanceId, Entry>>>,
}

struct Entry {
    instance: Instance,
    last_heartbeat: Option<Instant>,
}

impl MemoryRegistry {
    /// A registry where an instance stays healthy for `ttl` after each heartbeat.
    pub fn new(ttl: Duration) -> Self {
        Self { ttl, instances: Arc::default() }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<InstanceId, Entry>> {
        // A panic while holding this lock cannot leave the map half-updated
        // (every update is a single insert or remove), so poisoning is ignored.
        self.instances.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Default for MemoryRegistry {
    fn default() -> Self {
        Self::new(Duration::from_secs(5))
    }
}

#[async_trait::async_trait]
impl Registry for MemoryRegistry {
    async fn register(&self, instance: &Instance) -> Result<(), DiscoveryError> {
        self.lock().insert(instance.id.clone(), Entry { instance: instance.clone(), last_heartbeat: None });
        Ok(())
    }

    async fn deregister(&self, instance: &Instance) -> Result<(), DiscoveryError> {
        self.lock().remove(&instance.id);
        Ok(())
    }

    async fn report_healthy(&self, instance: &Instance) -> Result<(), DiscoveryError> {
        match self.lock().get_mut(&instance.id) {
            Some(entry) => {
                entry.last_heartbeat = Some(Instant::now());
                Ok(())
            }
            None => Err(DiscoveryError::UnknownInstance(instance.id.clone())),
        }
    }

    async fn healthy_instances(&self, service: &ServiceName) -> Result<Vec<Instance>, DiscoveryError> {
        let now = Instant::now();
        let mut healthy: Vec<Instance> = self
            .lock()
            .values()
            .filter(|entry| &entry.instance.service == service)
            .filter(|entry| entry.last_heartbeat.is_some_and(|at| now.duration_since(at) < self.ttl))
            .map(|entry| entry.instance.clone())
            .collect();
        healthy.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(healthy)
    }

    fn describe(&self) -> String {
        "in-memory registry".into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn instance(id: &str, service: &str) -> Instance {
        Instance {
            id: InstanceId::new(id),
            service: ServiceName::new(service),
            host: "127.0.0.1".into(),
            port: 1,
            metrics_port: None,
            server_name: None,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn only_instances_with_a_fresh_heartbeat_are_healthy() {
        let registry = MemoryRegistry::new(Duration::from_millis(200));
        let (a, b) = (instance("rating-a", "rating"), instance("rating-b", "rating"));
        registry.register(&a).await.unwrap();
        registry.register(&b).await.unwrap();
        registry.register(&instance("metadata-a", "metadata")).await.unwrap();
        assert!(registry.healthy_instances(&ServiceName::new("rating")).await.unwrap().is_empty());

        registry.report_healthy(&a).await.unwrap();
        assert_eq!(registry.healthy_instances(&ServiceName::new("rating")).await.unwrap(), vec![a.clone()]);

        tokio::time::advance(Duration::from_millis(199)).await;
        assert_eq!(registry.healthy_instances(&ServiceName::new("rating")).await.unwrap(), vec![a.clone()]);
        tokio::time::advance(Duration::from_millis(1)).await; // the TTL lapses
        assert!(registry.healthy_instances(&ServiceName::new("rating")).await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn deregistered_instances_disappear_and_cannot_heartbeat() {
        let registry = MemoryRegistry::default();
        let a = instance("rating-a", "rating");
        registry.register(&a).await.unwrap();
        registry.report_healthy(&a).await.unwrap();
        registry.deregister(&a).await.unwrap();
        assert!(registry.healthy_instances(&ServiceName::new("rating")).await.unwrap().is_empty());
        assert!(matches!(registry.report_healthy(&a).await, Err(DiscoveryError::UnknownInstance(_))));
    }
}
