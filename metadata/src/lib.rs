//! The metadata service: stores movie metadata (title, description,
//! director) and serves it over gRPC as `MetadataService`.
//!
//! Layers: [`handler`] (gRPC mapping) → [`controller`] (rules) →
//! [`repository`] (storage: memory, SQLite or PostgreSQL, as
//! `--database-url` says), over the domain types of [`model`].

pub mod controller;
pub mod handler;
pub mod model;
pub mod repository;

use std::net::SocketAddr;

use contract::api::metadata_service_server::MetadataServiceServer;
use contract::service::METADATA;
use platform::{
    discovery::{DiscoveryArgs, Registry, StaticRegistry},
    security::{AuthArgs, ProtectedCall},
    server::{BoundServer, ServerArgs, ServiceSettings, ready_after},
    shutdown::CancellationToken,
};
use repository::{MIGRATIONS, Store};
use sql_store::{DatabaseArgs, prepare_or_stop};
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

    #[command(flatten)]
    pub database: DatabaseArgs,

    #[command(flatten)]
    pub auth: AuthArgs,
}

/// The calls that need a bearer token when a key is configured (`--auth-*`).
pub const PROTECTED_CALLS: &[ProtectedCall] =
    &[ProtectedCall { path: "/MetadataService/PutMetadata", scope: "metadata:write" }];

type Handler = handler::MetadataHandler<Store>;

/// The gRPC routes of the service over `store`, taking and sending messages
/// of at most `max_message_size` bytes.
pub fn routes(store: Store, max_message_size: usize) -> Routes {
    let controller = controller::MetadataController::new(store);
    let server = MetadataServiceServer::new(Handler::new(std::sync::Arc::new(controller)))
        .max_decoding_message_size(max_message_size)
        .max_encoding_message_size(max_message_size);
    Routes::new(server)
}

/// A metadata service whose listener is bound: its address is known, and it
/// serves once [`Application::run_until_stopped`] is called.
pub struct Application {
    server: BoundServer,
    registry: std::sync::Arc<dyn Registry>,
    store: Store,
    max_message_size: usize,
}

impl Application {
    /// Checks the settings and binds the listener.
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        let registry = config.discovery.registry(StaticRegistry::new())?;
        let store = Store::open(&config.database)?;
        let served = vec![<MetadataServiceServer<Handler> as NamedService>::NAME];
        let settings = ServiceSettings {
            authorization: config.auth.authorization(PROTECTED_CALLS)?,
            ..ServiceSettings::from_args(METADATA, served, config.listen, &config.server, &config.discovery)
        };
        tracing::info!(listen = %config.listen, discovery = %registry.describe(), store = %store.describe(),
            "starting metadata service");
        let server = BoundServer::bind(settings).await?;
        Ok(Self { server, registry, store, max_message_size: config.server.max_message_size() })
    }

    /// The address the listener is bound to (the real port when asked for 0).
    pub fn local_address(&self) -> SocketAddr {
        self.server.local_address()
    }

    /// Serves until `shutdown` is cancelled. Health reports NOT_SERVING
    /// until the store is connected and migrated; a store that cannot be
    /// prepared (a failed migration, a SQLite file that cannot be opened)
    /// stops the service with that error.
    pub async fn run_until_stopped(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let Self { server, registry, store, max_message_size } = self;
        let stop = shutdown.child_token();
        let (ready, mut failure) = ready_after(prepare_or_stop(METADATA, store.database(), &MIGRATIONS, &stop));
        server.run(routes(store, max_message_size), registry, ready, stop.clone()).await?;
        failure.try_recv().map_or(Ok(()), |error| Err(error.into()))
    }
}

impl platform::entry::ServiceConfig for Config {
    const TRACED_CRATES: &'static [&'static str] = &[env!("CARGO_CRATE_NAME"), "sql_store"];

    fn server(&self) -> &ServerArgs {
        &self.server
    }
}

/// Builds the service, then serves until `shutdown` is cancelled.
pub async fn run(config: Config, shutdown: CancellationToken) -> anyhow::Result<()> {
    Application::build(config).await?.run_until_stopped(shutdown).await
}
