//! A registry whose instances are fixed by configuration (flags or
//! environment), as in the book's first chapters: three `cargo run`s in three
//! terminals find each other with no Consul.
use std::collections::HashMap;

use super::{DiscoveryError, Instance, InstanceId, Registry, ServiceName};

#[derive(Debug, Clone, Default)]
pub struct StaticRegistry {
    services: HashMap<ServiceName, Vec<Instance>>,
}

impl StaticRegistry {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds the instances of `service` at the given `host:port` addresses.
    pub fn with_service(mut self, service: ServiceName, addresses: &[String]) -> Result<Self, DiscoveryError> {
        let instances = addresses
            .iter()
            .map(|address| {
                let (host, port) = split_host_port(address).ok_or_else(|| {
                    DiscoveryError::Rejected(format!(
                        "address {address:?} of service {service} is not of the form host:port"
                    ))
                })?;
                Ok(Instance {
                    id: InstanceId::new(format!("{service}@{address}")),
                    service: service.clone(),
                    host,
                    port,
                })
            })
            .collect::<Result<Vec<_>, DiscoveryError>>()?;
        self.services.entry(service).or_default().extend(instances);
        Ok(self)
    }
}

fn split_host_port(address: &str) -> Option<(String, u16)> {
    let (host, port) = address.trim().rsplit_once(':')?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() {
        return None;
    }
    Some((host.to_string(), port.parse().ok()?))
}

#[async_trait::async_trait]
impl Registry for StaticRegistry {
    async fn register(&self, instance: &Instance) -> Result<(), DiscoveryError> {
        tracing::debug!(instance = %instance.id, "static discovery: nothing to register");
        Ok(())
    }

    async fn deregister(&self, _instance: &Instance) -> Result<(), DiscoveryError> {
        Ok(())
    }

    async fn report_healthy(&self, _instance: &Instance) -> Result<(), DiscoveryError> {
        Ok(())
    }

    async fn healthy_instances(&self, service: &ServiceName) -> Result<Vec<Instance>, DiscoveryError> {
        Ok(self.services.get(service).cloned().unwrap_or_default())
    }

    fn describe(&self) -> String {
        let mut parts: Vec<String> = self
            .services
            .iter()
            .map(|(name, instances)| {
                let addresses: Vec<String> = instances.iter().map(Instance::authority).collect();
                format!("{name}={}", addresses.join(","))
            })
            .collect();
        parts.sort();
        format!("static addresses [{}]", parts.join(" "))
    }

    fn accepts_registrations(&self) -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn serves_the_configured_addresses() {
        let registry = StaticRegistry::new()
            .with_service(ServiceName::new("rating"), &["127.0.0.1:8082".into(), "[::1]:9000".into()])
            .unwrap();
        let instances = registry.healthy_instances(&ServiceName::new("rating")).await.unwrap();
        let authorities: Vec<String> = instances.iter().map(Instance::authority).collect();
        assert_eq!(authorities, ["127.0.0.1:8082", "[::1]:9000"]);
        assert!(registry.healthy_instances(&ServiceName::new("metadata")).await.unwrap().is_empty());
    }

    #[test]
    fn refuses_addresses_without_a_port() {
        let error = StaticRegistry::new().with_service(ServiceName::new("rating"), &["localhost".into()]).unwrap_err();
        assert!(error.to_string().contains("\"localhost\""), "{error}");
        assert!(StaticRegistry::new().with_service(ServiceName::new("rating"), &[":80".into()]).is_err());
    }
}
