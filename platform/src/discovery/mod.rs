//! Service discovery: a [`Registry`] where instances register themselves and
//! where clients look up the healthy instances of a service.
//!
//! Four implementations:
//! * [`ConsulRegistry`]: Consul's agent HTTP API (TTL checks, passing-only lookups);
//! * [`StaticRegistry`]: addresses fixed by configuration, the default for a
//!   laptop with no Consul;
//! * [`DnsRegistry`]: the configured names resolved to every address behind
//!   them at each lookup (Kubernetes headless Services), registering nothing;
//! * [`MemoryRegistry`]: in-process, for tests and for several services in one process.
//!
//! [`Registration`] keeps one instance registered and its health reported
//! for as long as the process serves.

mod args;
mod consul;
mod consul_health;
mod dns;
mod memory;
mod registration;
mod static_list;

pub use args::{DiscoveryArgs, DiscoveryMode};
pub use consul::{ConsulRegistry, ConsulSettings};
pub use dns::DnsRegistry;
pub use memory::MemoryRegistry;
pub use registration::{Registration, RegistrationSettings};
pub use static_list::StaticRegistry;

use std::sync::Arc;

contract::string_id!(
    /// The name a service registers under and is looked up by, e.g. `rating`.
    ServiceName
);

contract::string_id!(
    /// The unique id of one running instance of a service, e.g. `rating-3f9c1a`.
    InstanceId
);

impl ServiceName {
    /// A name the suite itself chose (`contract::service`) or a registry
    /// reported; configuration goes through `parse`.
    pub fn new(name: impl AsRef<str>) -> Self {
        Self(Arc::from(name.as_ref()))
    }
}

impl InstanceId {
    /// An id the suite itself made or a registry reported; configuration
    /// goes through `parse`.
    pub fn new(id: impl AsRef<str>) -> Self {
        Self(Arc::from(id.as_ref()))
    }

    /// A fresh id: the service name and a random suffix, so that several
    /// instances on one host never collide.
    pub fn generate(service: &ServiceName) -> Self {
        Self::new(format!("{service}-{:08x}", rand::random::<u32>()))
    }
}

/// One instance of a service and the address others reach it at.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Instance {
    pub id: InstanceId,
    pub service: ServiceName,
    /// Host name or IP address that other processes can connect to.
    pub host: String,
    pub port: u16,
    /// Where the instance serves Prometheus metrics (same host), if it does;
    /// registered in Consul as the service meta `metrics_port`.
    pub metrics_port: Option<u16>,
    /// The name the instance was found under when `host` is an address that
    /// name resolved to (DNS discovery): what a TLS client checks its
    /// certificate against, since a pod's address is in no certificate.
    pub server_name: Option<String>,
}

impl Instance {
    /// `host:port`, bracketing IPv6 literals.
    pub fn authority(&self) -> String {
        if self.host.contains(':') && !self.host.starts_with('[') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

/// Why the registry could not do what was asked. The causes are kept as
/// sources, boxed because each registry has a client of its own.
#[derive(Debug, thiserror::Error)]
pub enum DiscoveryError {
    /// No answer: the connection failed, timed out, or the answer was unreadable.
    #[error("service registry at {address} is unreachable")]
    Unreachable {
        address: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The registry answered, refusing the request.
    #[error("service registry at {address} refused the request: {message}")]
    Rejected {
        address: String,
        /// The registry's own explanation.
        message: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The settings cannot make a client or a request of the registry.
    #[error("the settings for the service registry at {address} are unusable")]
    InvalidSettings {
        address: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A configured address has no host or no port; the port's parse error, if any, is the source.
    #[error("address {address:?} of service {service} is not of the form host:port")]
    InvalidAddress {
        service: ServiceName,
        address: String,
        #[source]
        port: Option<std::num::ParseIntError>,
    },
    #[error("instance {0} is not registered")]
    UnknownInstance(InstanceId),
}

/// Where instances register and where their peers find them.
#[async_trait::async_trait]
pub trait Registry: Send + Sync + 'static {
    /// Registers an instance. Until [`Registry::report_healthy`] is called it
    /// may be considered unhealthy (Consul's TTL checks start critical).
    async fn register(&self, instance: &Instance) -> Result<(), DiscoveryError>;

    /// Removes an instance; removing an unknown instance is not an error.
    async fn deregister(&self, instance: &Instance) -> Result<(), DiscoveryError>;

    /// Reports that an instance is alive and ready (a TTL heartbeat).
    async fn report_healthy(&self, instance: &Instance) -> Result<(), DiscoveryError>;

    /// The instances of a service that are currently healthy.
    async fn healthy_instances(&self, service: &ServiceName) -> Result<Vec<Instance>, DiscoveryError>;

    /// A short description for logs, e.g. `consul at http://127.0.0.1:8500`.
    fn describe(&self) -> String;

    /// Whether instances register here at all (static addresses do not).
    fn accepts_registrations(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn authority_brackets_ipv6_hosts_only() {
        let mut instance = Instance {
            id: InstanceId::new("rating-1"),
            service: ServiceName::new("rating"),
            host: "127.0.0.1".into(),
            port: 8082,
            metrics_port: None,
            server_name: None,
        };
        assert_eq!(instance.authority(), "127.0.0.1:8082");
        instance.host = "::1".into();
        assert_eq!(instance.authority(), "[::1]:8082");
        instance.host = "rating".into();
        assert_eq!(instance.authority(), "rating:8082");
    }

    #[test]
    fn generated_instance_ids_are_unique_and_name_the_service() {
        let service = ServiceName::new("movie");
        let a = InstanceId::generate(&service);
        let b = InstanceId::generate(&service);
        assert!(a.as_str().starts_with("movie-"));
        assert_ne!(a, b);
    }
}
