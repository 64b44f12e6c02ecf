//! The metadata service: stores movie metadata (title, description,
//! director) and serves it over gRPC as `MetadataService`.
//!
//! Layers: [`handler`] (gRPC mapping) → [`controller`] (rules) →
//! [`repository`] (storage), over the domain types of [`model`].

pub mod controller;
pub mod handler;
pub mod model;
pub mod repository;

use std::{net::SocketAddr, sync::Arc};

use platform::{
    api::metadata_service_server::MetadataServiceServer,
    config::{DiscoveryArgs, ServerArgs},
    discovery::StaticRegistry,
    server::{BoundServer, ServiceSettings},
    shutdown::CancellationToken,
};
use repository::memory::MemoryRepository;
use tonic::{server::NamedService, service::Routes};

/// The name this service registers under in discovery.
pub const SERVICE_NAME: &str = "metadata";

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

/// The gRPC routes of the service over an in-memory store.
pub fn routes() -> Routes {
    let controller = controller::MetadataController::new(MemoryRepository::default());
    Routes::new(MetadataServiceServer::new(handler::MetadataHandler::new(Arc::new(controller))))
}

/// Binds the listener, then serves until `shutdown` is cancelled.
pub async fn run(config: Config, shutdown: CancellationToken) -> anyhow::Result<()> {
    let registry = config.discovery.registry(StaticRegistry::new())?;
    let grpc_services = vec![<MetadataServiceServer<handler::MetadataHandler<MemoryRepository>> as NamedService>::NAME];
    let settings =
        ServiceSettings::from_args(SERVICE_NAME, grpc_services, config.listen, &config.server, &config.discovery);
    tracing::info!(listen = %config.listen, discovery = %registry.describe(), "starting metadata service");
    let server = BoundServer::bind(settings).await?;
    server.run(routes(), registry, std::future::ready(()), shutdown).await?;
    Ok(())
}
