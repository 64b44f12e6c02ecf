//! The rating service: stores one rating per (record type, record id, user)
//! and serves each record's average over gRPC as `RatingService`.
//!
//! Layers: [`handler`] (gRPC mapping) → [`controller`] (rules) →
//! [`repository`] (storage), over the domain types of [`model`].

pub mod controller;
pub mod handler;
pub mod model;
pub mod repository;

use std::{net::SocketAddr, sync::Arc};

use anyhow::Context;
use platform::{
    api::rating_service_server::RatingServiceServer,
    config::{DiscoveryArgs, ServerArgs},
    discovery::StaticRegistry,
    server::{BoundServer, ServiceSettings},
    shutdown::CancellationToken,
};
use repository::memory::MemoryRepository;
use tonic::{server::NamedService, service::Routes};

use crate::model::RatingRange;

/// The name this service registers under in discovery.
pub const SERVICE_NAME: &str = "rating";

/// Settings of the rating service, from flags or environment variables.
#[derive(Debug, Clone, clap::Parser)]
#[command(name = "rating", version, about = "Stores ratings and serves each record's average over gRPC (RatingService).")]
pub struct Config {
    /// Address to listen on for gRPC
    #[arg(long, env = "LISTEN_ADDR", default_value = "127.0.0.1:8082")]
    pub listen: SocketAddr,

    /// Lowest accepted rating value
    #[arg(long, env = "RATING_MIN", default_value_t = 1, allow_negative_numbers = true)]
    pub min_rating: i32,

    /// Highest accepted rating value (e.g. 10 for IMDb-style providers)
    #[arg(long, env = "RATING_MAX", default_value_t = 5, allow_negative_numbers = true)]
    pub max_rating: i32,

    #[command(flatten)]
    pub server: ServerArgs,

    #[command(flatten)]
    pub discovery: DiscoveryArgs,
}

impl Config {
    pub fn rating_range(&self) -> anyhow::Result<RatingRange> {
        RatingRange::new(self.min_rating, self.max_rating).context("invalid --min-rating/--max-rating")
    }
}

/// The gRPC routes of the service over an in-memory store.
pub fn routes(range: RatingRange) -> Routes {
    let controller = controller::RatingController::new(MemoryRepository::default());
    Routes::new(RatingServiceServer::new(handler::RatingHandler::new(Arc::new(controller), range)))
}

/// Binds the listener, then serves until `shutdown` is cancelled.
pub async fn run(config: Config, shutdown: CancellationToken) -> anyhow::Result<()> {
    let range = config.rating_range()?;
    let registry = config.discovery.registry(StaticRegistry::new())?;
    let grpc_services = vec![<RatingServiceServer<handler::RatingHandler<MemoryRepository>> as NamedService>::NAME];
    let settings = ServiceSettings::from_args(SERVICE_NAME, grpc_services, config.listen, &config.server, &config.discovery);
    tracing::info!(listen = %config.listen, discovery = %registry.describe(), ratings = %range, "starting rating service");
    let server = BoundServer::bind(settings).await?;
    server.run(routes(range), registry, std::future::ready(()), shutdown).await?;
    Ok(())
}
