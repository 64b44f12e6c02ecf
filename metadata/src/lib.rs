//! The metadata service: stores movie metadata (title, description,
//! director) and serves it over gRPC as `MetadataService`.
//!
//! Layers: [`handler`] (gRPC mapping) → [`controller`] (rules) →
//! [`repository`] (storage), over the domain types of [`model`].

pub mod controller;
pub mod handler;
pub mod model;
pub mod repository;

use std::net::SocketAddr;

use contract::api::metadata_service_server::MetadataServiceServer;
use contract::service::METADATA;
use platform::{
    config::{DiscoveryArgs, ServerArgs},
    discovery::{Registry, StaticRegistry},
    server::{BoundServer, ServiceSettings},
    shutdown::CancellationToken,
};
use repository::memory::MemoryRepository;
use tonic::{server::NamedService, service::Routes};

/// Settings of the metadata service, from flags or environment variables.
#[derive(Debug, Clone, clap::Parser)]
#[command(name = "metadata", version, about = "Stores and serves movie metadata over gRPC (MetadataService).")]
pub struct Config {
    /// Address to listen on for gRPC
    #[arg(long, env = "LISTEN_ADDR", default_value = "127.0.0.1:8081")]
    pub listen: SocketAddr,

    #[command(flatten)]
    pub server: ServerArgs,

    #[command(flatten)]
    pub discovery: DiscoveryArgs,
}

type Handler = handler::MetadataHandler<MemoryRepository>;

/// The gRPC routes of the service over an in-memory store.
pub fn routes() -> Routes {
    let controller = controller::MetadataController::new(MemoryRepository::default());
    Routes::new(MetadataServiceServer::new(Handler::new(std::sync::Arc::new(controller))))
}

/// A metadata service whose listener is bound: its address is known, and it
/// serves once [`Application::run_until_stopped`] is called.
pub struct Application {
    server: BoundServer,
    registry: std::sync::Arc<dyn Registry>,
}

impl Application {
    /// Checks the settings and binds the listener.
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        let registry = config.discovery.registry(StaticRegistry::new())?;
        let served = vec![<MetadataServiceServer<Handler> as NamedService>::NAME];
        let settings = ServiceSettings::from_args(METADATA, served, config.listen, &config.server, &config.discovery);
        tracing::info!(listen = %config.listen, discovery = %registry.describe(), "starting metadata service");
        let server = BoundServer::bind(settings).await?;
        Ok(Self { server, registry })
    }

    /// The address the listener is bound to (the real port when asked for 0).
    pub fn local_address(&self) -> SocketAddr {
        self.server.local_address()
    }

    /// Serves until `shutdown` is cancelled.
    pub async fn run_until_stopped(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        self.server.run(routes(), self.registry, std::future::ready(()), shutdown).await?;
        Ok(())
    }
}

impl platform::entry::ServiceConfig for Config {
    fn server(&self) -> &ServerArgs {
        &self.server
    }
}

/// Builds the service, then serves until `shutdown` is cancelled.
pub async fn run(config: Config, shutdown: CancellationToken) -> anyhow::Result<()> {
    Application::build(config).await?.run_until_stopped(shutdown).await
}
