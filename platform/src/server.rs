//! The gRPC server every service runs: its own services plus server
//! reflection (v1 and v1alpha) and `grpc.health.v1`, registration in the
//! registry once ready, and the shutdown order
//! NOT_SERVING → deregister → stop accepting → drain (bounded) → return.
use std::{future::Future, net::SocketAddr, sync::Arc, time::Duration};

use contract::api;
use tokio::net::{TcpListener, TcpStream};
use tokio_stream::{Stream, StreamExt, wrappers::TcpListenerStream};
use tokio_util::sync::CancellationToken;
use tonic::service::Routes;
use tonic_health::ServingStatus;

use crate::{
    config::{DiscoveryArgs, ServerArgs},
    discovery::{Instance, InstanceId, Registration, RegistrationSettings, Registry, ServiceName},
};

/// The services every server offers besides its own.
const INFRASTRUCTURE_SERVICES: [&str; 3] =
    ["grpc.health.v1.Health", "grpc.reflection.v1.ServerReflection", "grpc.reflection.v1alpha.ServerReflection"];

/// Everything the bootstrap needs to know about one service instance.
#[derive(Debug, Clone)]
pub struct ServiceSettings {
    /// The name the service registers under, e.g. `metadata`.
    pub service: ServiceName,
    /// The fully qualified gRPC service names it implements, e.g.
    /// `MetadataService`; health reports each of them.
    pub grpc_services: Vec<&'static str>,
    pub listen: SocketAddr,
    pub advertise_host: Option<String>,
    pub instance_id: Option<InstanceId>,
    pub shutdown_timeout: Duration,
    pub registration: RegistrationSettings,
}

impl ServiceSettings {
    /// Settings from the flags every service shares.
    pub fn from_args(
        service: &str,
        grpc_services: Vec<&'static str>,
        listen: SocketAddr,
        server: &ServerArgs,
        discovery: &DiscoveryArgs,
    ) -> Self {
        Self {
            service: ServiceName::new(service),
            grpc_services,
            listen,
            advertise_host: server.advertise_host.clone(),
            instance_id: server.instance_id(),
            shutdown_timeout: server.shutdown_timeout,
            registration: discovery.registration(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("cannot listen on {address}: {source}")]
    Bind { address: SocketAddr, source: std::io::Error },
    #[error("cannot build the reflection service: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
    #[error("the gRPC server failed: {0}")]
    Transport(#[from] tonic::transport::Error),
    #[error("the gRPC server task ended abnormally: {0}")]
    Task(#[from] tokio::task::JoinError),
}

/// A service whose listener is bound, so its real address (after asking for
/// port 0) is known before it runs.
pub struct BoundServer {
    settings: ServiceSettings,
    listener: TcpListener,
    local_address: SocketAddr,
}

impl BoundServer {
    pub async fn bind(settings: ServiceSettings) -> Result<Self, ServeError> {
        let listener = TcpListener::bind(settings.listen)
            .await
            .map_err(|source| ServeError::Bind { address: settings.listen, source })?;
        let local_address =
            listener.local_addr().map_err(|source| ServeError::Bind { address: settings.listen, source })?;
        Ok(Self { settings, listener, local_address })
    }

    pub fn local_address(&self) -> SocketAddr {
        self.local_address
    }

    /// The registry entry of this instance: the advertised host (or one
    /// derived from the listen address) and the bound port.
    pub async fn instance(&self) -> Instance {
        let settings = &self.settings;
        let host = match &settings.advertise_host {
            Some(host) => host.clone(),
            None if self.local_address.ip().is_unspecified() => advertise_host_for_all_interfaces().await,
            None => self.local_address.ip().to_string(),
        };
        Instance {
            id: settings.instance_id.clone().unwrap_or_else(|| InstanceId::generate(&settings.service)),
            service: settings.service.clone(),
            host,
            port: self.local_address.port(),
        }
    }

    /// Serves `routes` until `shutdown` is cancelled. Health turns SERVING and
    /// the instance registers once `ready` completes.
    pub async fn run(
        self,
        routes: Routes,
        registry: Arc<dyn Registry>,
        ready: impl Future<Output = ()> + Send,
        shutdown: CancellationToken,
    ) -> Result<(), ServeError> {
        let instance = self.instance().await;
        let settings = self.settings;
        let (health, health_service) = tonic_health::server::health_reporter();
        let set_health = |status: ServingStatus| {
            let health = health.clone();
            let names = settings.grpc_services.clone();
            async move {
                health.set_service_status("", status).await;
                for name in names {
                    health.set_service_status(name, status).await;
                }
            }
        };
        set_health(ServingStatus::NotServing).await;

        // Reflection lists only what this server serves, though the
        // descriptor set describes every service of the suite.
        let advertised: Vec<&str> = settings.grpc_services.iter().copied().chain(INFRASTRUCTURE_SERVICES).collect();
        let reflection = || {
            advertised.iter().fold(
                tonic_reflection::server::Builder::configure()
                    .register_encoded_file_descriptor_set(api::FILE_DESCRIPTOR_SET)
                    .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET),
                |builder, name| builder.with_service_name(*name),
            )
        };
        let routes = routes
            .add_service(health_service)
            .add_service(reflection().build_v1()?)
            .add_service(reflection().build_v1alpha()?);

        let stop_accepting = CancellationToken::new();
        let server = tonic::transport::Server::builder().add_routes(routes).serve_with_incoming_shutdown(
            accepted_without_delay(self.listener),
            stop_accepting.clone().cancelled_owned(),
        );
        let mut server = tokio::spawn(server);
        tracing::info!(service = %settings.service, instance = %instance.id, address = %self.local_address, "listening");

        let mut registration = tokio::select! {
            _ = ready => {
                set_health(ServingStatus::Serving).await;
                tracing::info!(service = %settings.service, "ready: health reports SERVING");
                if registry.accepts_registrations() {
                    Some(Registration::start(registry, instance, settings.registration.clone()))
                } else {
                    tracing::info!(service = %settings.service, "static discovery: peers are configured with this instance's address");
                    None
                }
            }
            _ = shutdown.cancelled() => None,
            result = &mut server => return result?.map_err(ServeError::from),
        };

        if !shutdown.is_cancelled() {
            tokio::select! {
                _ = shutdown.cancelled() => {}
                result = &mut server => {
                    if let Some(registration) = registration.take() {
                        registration.stop().await;
                    }
                    return result?.map_err(ServeError::from);
                }
            }
        }

        tracing::info!(service = %settings.service, "shutting down: NOT_SERVING, deregistering, draining in-flight RPCs");
        set_health(ServingStatus::NotServing).await;
        if let Some(registration) = registration {
            registration.stop().await;
        }
        stop_accepting.cancel();
        match tokio::time::timeout(settings.shutdown_timeout, &mut server).await {
            Ok(result) => {
                result??;
                tracing::info!(service = %settings.service, "stopped cleanly");
            }
            Err(_) => {
                server.abort();
                tracing::warn!(service = %settings.service, timeout = ?settings.shutdown_timeout,
                    "in-flight RPCs still running after the shutdown timeout; stopping anyway");
            }
        }
        Ok(())
    }
}

/// Connections accepted on `listener`, with Nagle's algorithm off. gRPC
/// writes small frames; with Nagle on, a response can sit waiting for the
/// peer's delayed ACK (40 ms on Linux), which caps a connection at a few
/// dozen calls a second under concurrency. The server builder's
/// `tcp_nodelay` applies only to listeners tonic binds itself.
fn accepted_without_delay(listener: TcpListener) -> impl Stream<Item = std::io::Result<TcpStream>> {
    TcpListenerStream::new(listener).map(|accepted| {
        let stream = accepted?;
        if let Err(error) = stream.set_nodelay(true) {
            tracing::warn!(%error, "cannot turn Nagle's algorithm off on an accepted connection");
        }
        Ok(stream)
    })
}

/// The address peers should use for an instance that listens on every
/// interface: the host name's own non-loopback IP when it resolves to one (in
/// a container, its address on the container network, which every replica
/// has its own of), else the host name itself, else loopback.
async fn advertise_host_for_all_interfaces() -> String {
    let Some(name) = host_name() else {
        return "127.0.0.1".into();
    };
    let resolved = tokio::net::lookup_host((name.as_str(), 0)).await.map(|addresses| addresses.collect::<Vec<_>>());
    match resolved {
        Ok(addresses) => match routable_ip(&addresses) {
            Some(ip) => ip.to_string(),
            None => name,
        },
        Err(error) => {
            tracing::warn!(host = %name, %error, "cannot resolve the host name; advertising it unresolved");
            name
        }
    }
}

/// The first non-loopback address, IPv4 preferred.
fn routable_ip(addresses: &[SocketAddr]) -> Option<std::net::IpAddr> {
    let routable = || addresses.iter().map(SocketAddr::ip).filter(|ip| !ip.is_loopback() && !ip.is_unspecified());
    routable().find(std::net::IpAddr::is_ipv4).or_else(|| routable().next())
}

fn host_name() -> Option<String> {
    std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|name| name.trim().to_string())
        .filter(|name| !name.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn accepted_connections_have_nagle_off() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let incoming = accepted_without_delay(listener);
        tokio::pin!(incoming);
        let _client = TcpStream::connect(address).await.unwrap();
        let accepted = incoming.next().await.expect("a connection").expect("accepted");
        assert!(accepted.nodelay().unwrap(), "TCP_NODELAY is set on the accepted connection");
    }

    fn addresses(list: &[&str]) -> Vec<SocketAddr> {
        list.iter().map(|address| address.parse().unwrap()).collect()
    }

    #[test]
    fn a_container_advertises_its_network_address_not_loopback() {
        let resolved = addresses(&["127.0.0.1:0", "[::1]:0", "[fd00::5]:0", "172.18.0.5:0"]);
        assert_eq!(routable_ip(&resolved), Some("172.18.0.5".parse().unwrap()));
    }

    #[test]
    fn an_ipv6_only_host_advertises_its_ipv6_address() {
        assert_eq!(routable_ip(&addresses(&["[::1]:0", "[fd00::5]:0"])), Some("fd00::5".parse().unwrap()));
    }

    #[test]
    fn a_host_name_that_resolves_only_to_loopback_is_not_routable() {
        assert_eq!(routable_ip(&addresses(&["127.0.1.1:0", "[::1]:0"])), None);
    }
}
