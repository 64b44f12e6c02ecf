//! A registry whose instances are fixed by configuration (flags or
//! environment), as in the book's first chapters: three `cargo run`s in three
//! terminals find each other with no Consul.
use std::{collections::HashMap, num::ParseIntError};

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
                let (host, port) = split_host_port(address).map_err(|port| DiscoveryError::InvalidAddress {
                    service: service.clone(),
                    address: address.clone(),
                    port,
                })?;
                Ok(Instance {
                    id: InstanceId::new(format!("{service}@{address}")),
                    service: service.clone(),
                    host,
                    port,
                    metrics_port: None,
                    server_name: None,
                })
            })
            .collect::<Result<Vec<_>, DiscoveryError>>()?;
        self.services.entry(service).or_default().extend(instances);
        Ok(self)
    }

    /// The configured instances of `service` (a host name or an IP address
    /// each, and a port); none for a service not configured.
    pub(super) fn configured(&self, service: &ServiceName) -> &[Instance] {
        self.services.get(service).map_or(&[], Vec::as_slice)
    }

    /// Each service's configured addresses, `service=host:port,...`, sorted
    /// by service: what `describe` shows.
    pub(super) fn listing(&self) -> Vec<String> {
        let mut parts: Vec<String> = self
            .services
            .iter()
            .map(|(name, instances)| {
                let addresses: Vec<String> = instances.iter().map(Instance::authority).collect();
                format!("{name}={}", addresses.join(","))
            })
            .collect();
        parts.sort();
        parts
    }
}

/// The host and port of `host:port`; the error is the port's parse error,
/// or none when the host or the colon is missing.
fn split_host_port(address: &str) -> Result<(String, u16), Option<ParseIntError>> {
    let (host, port) = address.trim().rsplit_once(':').ok_or(None)?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() {
        return Err(None);
    }
    let port = port.parse().map_err(Some)?;
    Ok((host.to_string(), port))
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
        Ok(self.configured(service).to_vec())
    }

    fn describe(&self) -> String {
        format!("static addresses [{}]", self.listing().join(" "))
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
        assert!(std::error::Error::source(&error).is_none(), "no port, nothing to parse");
        assert!(StaticRegistry::new().with_service(ServiceName::new("rating"), &[":80".into()]).is_err());

        let error =
            StaticRegistry::new().with_service(ServiceName::new("rating"), &["localhost:http".into()]).unwrap_err();
        assert!(error.to_string().contains("\"localhost:http\""), "{error}");
        let port_error = std::error::Error::source(&error).expect("the port's parse error");
        assert!(port_error.is::<ParseIntError>(), "{port_error}");
    }
}
