//! The discovery settings every service shares: Consul, static or DNS peers,
//! Consul's address, token and health-check timing, and the DNS server.
use std::{net::SocketAddr, sync::Arc, time::Duration};

use super::{
    ConsulRegistry, ConsulSettings, DiscoveryError, DnsRegistry, RegistrationSettings, Registry, StaticRegistry,
};
use crate::security::Token;

/// How a service finds its peers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum DiscoveryMode {
    /// Register with Consul and look peers up there.
    Consul,
    /// Peer addresses come from flags or environment variables.
    Static,
    /// Peer host names come from flags or environment variables, each
    /// resolved to every address behind it at each refresh (a Kubernetes
    /// headless Service); nothing registers.
    Dns,
}

#[derive(Debug, Clone, clap::Args)]
pub struct DiscoveryArgs {
    /// Service discovery mode [default: consul when a Consul address is set, static otherwise]
    #[arg(long, env = "DISCOVERY", value_enum)]
    pub discovery: Option<DiscoveryMode>,

    /// Consul agent HTTP address, e.g. http://127.0.0.1:8500 (read from CONSUL_HTTP_ADDR, like Consul's own tools)
    #[arg(long = "consul-addr", env = "CONSUL_HTTP_ADDR")]
    pub consul_address: Option<String>,

    /// Consul ACL token sent with every request (read from CONSUL_HTTP_TOKEN, like Consul's own tools) [default: none]
    #[arg(long = "consul-token", env = "CONSUL_HTTP_TOKEN", hide_env_values = true)]
    pub consul_token: Option<Token>,

    /// TTL of this instance's Consul health check; heartbeats are sent every third of it
    #[arg(long, env = "CONSUL_CHECK_TTL", default_value = "10s", value_parser = humantime::parse_duration)]
    pub consul_check_ttl: Duration,

    /// Consul removes an instance whose check stays critical this long (e.g. after a crash)
    #[arg(long, env = "CONSUL_DEREGISTER_AFTER", default_value = "1m", value_parser = humantime::parse_duration)]
    pub consul_deregister_after: Duration,

    /// With dns discovery, the DNS server to ask (ip:port) [default: the system's resolver configuration, /etc/resolv.conf, with its search domains and ndots]
    #[arg(long, env = "DNS_SERVER")]
    pub dns_server: Option<SocketAddr>,
}

impl DiscoveryArgs {
    pub fn mode(&self) -> DiscoveryMode {
        self.discovery.unwrap_or(if self.consul_address.is_some() {
            DiscoveryMode::Consul
        } else {
            DiscoveryMode::Static
        })
    }

    /// The registry these settings describe; `static_registry` holds the peer
    /// addresses used in static mode, and the names resolved in dns mode.
    pub fn registry(&self, static_registry: StaticRegistry) -> Result<Arc<dyn Registry>, DiscoveryError> {
        Ok(match self.mode() {
            DiscoveryMode::Static => Arc::new(static_registry),
            DiscoveryMode::Dns => Arc::new(DnsRegistry::new(self.dns_server, &static_registry)?),
            DiscoveryMode::Consul => Arc::new(ConsulRegistry::new(ConsulSettings {
                address: self.consul_address.clone().unwrap_or_else(|| "http://127.0.0.1:8500".into()),
                token: self.consul_token.clone(),
                check_ttl: self.consul_check_ttl,
                deregister_critical_after: self.consul_deregister_after,
            })?),
        })
    }

    pub fn registration(&self) -> RegistrationSettings {
        RegistrationSettings { heartbeat_interval: self.consul_check_ttl / 3, ..Default::default() }
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Probe {
        #[command(flatten)]
        discovery: DiscoveryArgs,
    }

    #[test]
    fn discovery_defaults_to_static_without_a_consul_address() {
        let probe = Probe::try_parse_from(["probe"]).unwrap();
        assert_eq!(probe.discovery.mode(), DiscoveryMode::Static);
        let probe = Probe::try_parse_from(["probe", "--consul-addr", "127.0.0.1:8500"]).unwrap();
        assert_eq!(probe.discovery.mode(), DiscoveryMode::Consul);
        let probe = Probe::try_parse_from(["probe", "--consul-addr", "x:1", "--discovery", "static"]).unwrap();
        assert_eq!(probe.discovery.mode(), DiscoveryMode::Static);
    }

    #[tokio::test]
    async fn dns_mode_resolves_the_static_peers_names_and_takes_no_registrations() {
        let probe = Probe::try_parse_from(["probe", "--discovery", "dns", "--dns-server", "127.0.0.1:5353"]).unwrap();
        assert_eq!(probe.discovery.mode(), DiscoveryMode::Dns);
        let peers = StaticRegistry::new()
            .with_service(super::super::ServiceName::new("rating"), &["rating-headless:8082".into()])
            .unwrap();
        let registry = probe.discovery.registry(peers).unwrap();
        assert_eq!(registry.describe(), "dns [rating=rating-headless:8082 via 127.0.0.1:5353]");
        assert!(!registry.accepts_registrations());
        assert!(Probe::try_parse_from(["probe", "--dns-server", "localhost"]).is_err(), "ip:port only");
    }

    #[test]
    fn heartbeats_go_out_every_third_of_the_ttl() {
        let probe = Probe::try_parse_from(["probe", "--consul-check-ttl", "9s"]).unwrap();
        assert_eq!(probe.discovery.registration().heartbeat_interval, Duration::from_secs(3));
    }
}
