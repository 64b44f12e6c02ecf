//! A registry that resolves each peer's DNS name to every address behind it (a Kubernetes headless Service).
use std::net::{IpAddr, SocketAddr};

use hickory_resolver::{
    ResolveError, TokioResolver,
    config::{NameServerConfigGroup, ResolveHosts, ResolverConfig},
    name_server::TokioConnectionProvider,
    proto::{ProtoError, ProtoErrorKind, op::ResponseCode},
};

use super::{DiscoveryError, Instance, InstanceId, Registry, ServiceName, StaticRegistry};

/// Where the system's resolver configuration is read from, for logs.
const SYSTEM_CONFIGURATION: &str = "/etc/resolv.conf";

/// Looks each configured `host:port` up at every refresh; registration is
/// the orchestrator's business (Kubernetes keeps a Service's Endpoints), so
/// instances register nothing here.
pub struct DnsRegistry {
    resolver: TokioResolver,
    /// Who answers: the DNS server given, or the system's configuration.
    server: String,
    /// Each service's configured hosts and ports.
    peers: StaticRegistry,
}

impl DnsRegistry {
    /// A registry asking `server`, or with none the servers, search domains
    /// and `ndots` of the system's resolver configuration (which Kubernetes
    /// writes for each pod), for the hosts configured in `peers`.
    pub fn new(server: Option<SocketAddr>, peers: &StaticRegistry) -> Result<Self, DiscoveryError> {
        let (builder, described) = match server {
            Some(address) => {
                let servers = NameServerConfigGroup::from_ips_clear(&[address.ip()], address.port(), true);
                let mut builder = TokioResolver::builder_with_config(
                    ResolverConfig::from_parts(None, Vec::new(), servers),
                    TokioConnectionProvider::default(),
                );
                // The server given is the one to ask, not /etc/hosts.
                builder.options_mut().use_hosts_file = ResolveHosts::Never;
                (builder, address.to_string())
            }
            None => {
                let builder = TokioResolver::builder_tokio().map_err(|error| DiscoveryError::InvalidSettings {
                    address: SYSTEM_CONFIGURATION.into(),
                    source: Box::new(error),
                })?;
                (builder, SYSTEM_CONFIGURATION.to_owned())
            }
        };
        Ok(Self { resolver: builder.build(), server: described, peers: peers.clone() })
    }

    /// Every address `host` has, IPv4 and IPv6; none when the name does not
    /// exist or has no address.
    async fn addresses(&self, host: &str) -> Result<Vec<IpAddr>, ResolveError> {
        if let Ok(address) = host.parse::<IpAddr>() {
            return Ok(vec![address]);
        }
        // Two lookups rather than hickory's combined one, which makes a
        // failure of either look like an answer with no address.
        let (v4, v6) = tokio::join!(self.resolver.ipv4_lookup(host), self.resolver.ipv6_lookup(host));
        let mut addresses: Vec<IpAddr> =
            none_if_absent(v4)?.iter().flat_map(|found| found.iter()).map(|a| a.0.into()).collect();
        addresses.extend(none_if_absent(v6)?.iter().flat_map(|found| found.iter()).map(|aaaa| IpAddr::from(aaaa.0)));
        Ok(addresses)
    }
}

/// A lookup's answer, with "no such name" (NXDOMAIN) and "no such record"
/// (an empty NOERROR) as no answer rather than an error: the name of a
/// headless Service with no ready pod. hickory reports a server's failure
/// (SERVFAIL, REFUSED) as "no records found" too: that one stays an error.
fn none_if_absent<T>(lookup: Result<T, ResolveError>) -> Result<Option<T>, ResolveError> {
    match lookup {
        Ok(found) => Ok(Some(found)),
        Err(error) if is_absent(&error) => Ok(None),
        Err(error) => Err(error),
    }
}

fn is_absent(error: &ResolveError) -> bool {
    matches!(
        error.proto().map(ProtoError::kind),
        Some(ProtoErrorKind::NoRecordsFound { response_code: ResponseCode::NXDomain | ResponseCode::NoError, .. })
    )
}

#[async_trait::async_trait]
impl Registry for DnsRegistry {
    async fn register(&self, instance: &Instance) -> Result<(), DiscoveryError> {
        tracing::debug!(instance = %instance.id, "dns discovery: nothing to register, the orchestrator lists instances in DNS");
        Ok(())
    }

    async fn deregister(&self, instance: &Instance) -> Result<(), DiscoveryError> {
        tracing::debug!(instance = %instance.id, "dns discovery: nothing to deregister");
        Ok(())
    }

    async fn report_healthy(&self, instance: &Instance) -> Result<(), DiscoveryError> {
        tracing::debug!(instance = %instance.id, "dns discovery: no health to report");
        Ok(())
    }

    /// One instance per address of each configured host, with the host's
    /// configured port.
    async fn healthy_instances(&self, service: &ServiceName) -> Result<Vec<Instance>, DiscoveryError> {
        let hosts = self.peers.configured(service);
        if hosts.is_empty() {
            return Ok(Vec::new());
        }
        // Every refresh asks the server: a cached answer would hide a new
        // instance, or keep one that left, for as long as its TTL.
        self.resolver.clear_cache();
        let mut instances: Vec<Instance> = Vec::new();
        for configured in hosts {
            let port = configured.port;
            let addresses = self.addresses(&configured.host).await.map_err(|error| DiscoveryError::Unreachable {
                address: self.server.clone(),
                source: Box::new(error),
            })?;
            for address in addresses {
                let authority = SocketAddr::new(address, port).to_string();
                let id = InstanceId::new(format!("{service}@{authority}"));
                if instances.iter().any(|known| known.id == id) {
                    continue;
                }
                instances.push(Instance {
                    id,
                    service: service.clone(),
                    host: address.to_string(),
                    port,
                    metrics_port: None,
                    // An address given as such names itself.
                    server_name: configured.host.parse::<IpAddr>().is_err().then(|| configured.host.clone()),
                });
            }
        }
        tracing::debug!(%service, instances = instances.len(), "resolved");
        Ok(instances)
    }

    fn describe(&self) -> String {
        let mut parts = self.peers.listing();
        parts.push(format!("via {}", self.server));
        format!("dns [{}]", parts.join(" "))
    }

    fn accepts_registrations(&self) -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peers(addresses: &[&str]) -> StaticRegistry {
        let addresses: Vec<String> = addresses.iter().map(|address| address.to_string()).collect();
        StaticRegistry::new().with_service(ServiceName::new("rating"), &addresses).unwrap()
    }

    #[tokio::test]
    async fn ip_addresses_are_taken_as_they_are_and_registration_is_a_no_op() {
        let server: SocketAddr = "127.0.0.1:9".parse().unwrap();
        let registry =
            DnsRegistry::new(Some(server), &peers(&["127.0.0.2:8082", "[::1]:8082", "127.0.0.2:8082"])).unwrap();
        let instances = registry.healthy_instances(&ServiceName::new("rating")).await.unwrap();
        let authorities: Vec<String> = instances.iter().map(Instance::authority).collect();
        assert_eq!(authorities, ["127.0.0.2:8082", "[::1]:8082"], "each address once");
        assert_eq!(instances[0].id.as_str(), "rating@127.0.0.2:8082");
        assert!(registry.healthy_instances(&ServiceName::new("metadata")).await.unwrap().is_empty());

        registry.register(&instances[0]).await.unwrap();
        registry.report_healthy(&instances[0]).await.unwrap();
        registry.deregister(&instances[0]).await.unwrap();
        assert!(!registry.accepts_registrations());
        assert_eq!(registry.describe(), "dns [rating=127.0.0.2:8082,[::1]:8082,127.0.0.2:8082 via 127.0.0.1:9]");
    }
}
