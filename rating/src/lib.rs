//! The rating service: stores one rating per (record type, record id, user)
//! and serves each record's average over gRPC as `RatingService`.
//!
//! Layers: [`handler`] (gRPC mapping) → [`controller`] (rules) →
//! [`repository`] (storage), over the domain types of [`model`]. With Kafka
//! configured, [`event_log`] consumes the ratings topic into the store and
//! carries the service's own writes through it.

pub mod controller;
pub mod event_log;
pub mod handler;
pub mod model;
pub mod repository;

use std::{net::SocketAddr, sync::Arc, time::Duration};

use anyhow::Context;
use contract::{api::rating_service_server::RatingServiceServer, rating::RatingRangeArgs, service::RATING};
use event_log::{AppliedOffsets, EventLogArgs, EventLogSettings, consumer::EventConsumer, writer::KafkaEventLog};
use platform::{
    config::{DiscoveryArgs, ServerArgs},
    discovery::{Registry, StaticRegistry},
    server::{BoundServer, ServiceSettings},
    shutdown::CancellationToken,
};
use repository::memory::MemoryRepository;
use tonic::{server::NamedService, service::Routes};

use crate::{controller::RatingController, model::RatingRange};

/// Settings of the rating service, from flags or environment variables.
#[derive(Debug, Clone, clap::Parser)]
#[command(
    name = "rating",
    version,
    about = "Stores ratings and serves each record's average over gRPC (RatingService)."
)]
pub struct Config {
    /// Address to listen on for gRPC
    #[arg(long, env = "LISTEN_ADDR", default_value = "127.0.0.1:8082")]
    pub listen: SocketAddr,

    #[command(flatten)]
    pub ratings: RatingRangeArgs,

    #[command(flatten)]
    pub event_log: EventLogArgs,

    #[command(flatten)]
    pub server: ServerArgs,

    #[command(flatten)]
    pub discovery: DiscoveryArgs,
}

/// How long ingestion may take to stop after the server has drained.
const INGESTION_STOP_TIMEOUT: Duration = Duration::from_secs(5);

type Handler = handler::RatingHandler<MemoryRepository>;

/// A rating service whose listener is bound: its address is known, and it
/// serves once [`Application::run_until_stopped`] is called.
pub struct Application {
    server: BoundServer,
    registry: Arc<dyn Registry>,
    range: RatingRange,
    event_log: Option<EventLogSettings>,
}

impl Application {
    /// Checks the settings and binds the listener.
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        let range = config.ratings.range()?;
        let registry = config.discovery.registry(StaticRegistry::new())?;
        let served = vec![<RatingServiceServer<Handler> as NamedService>::NAME];
        let settings = ServiceSettings::from_args(RATING, served, config.listen, &config.server, &config.discovery);
        let event_log = config.event_log.settings();
        tracing::info!(listen = %config.listen, discovery = %registry.describe(), ratings = %range,
            kafka = event_log.as_ref().map_or("off", |kafka| kafka.brokers.as_str()),
            topic = %config.event_log.kafka.topic, "starting rating service");
        let server = BoundServer::bind(settings).await?;
        Ok(Self { server, registry, range, event_log })
    }

    /// The address the listener is bound to (the real port when asked for 0).
    pub fn local_address(&self) -> SocketAddr {
        self.server.local_address()
    }

    /// Serves until `shutdown` is cancelled. With Kafka configured, health
    /// turns SERVING once the topic has been replayed, and ingestion stops
    /// after the in-flight RPCs have drained.
    pub async fn run_until_stopped(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let Self { server, registry, range, event_log } = self;
        let Some(settings) = event_log else {
            let controller = Arc::new(RatingController::new(MemoryRepository::default()));
            server.run(routes(controller, range), registry, std::future::ready(()), shutdown).await?;
            return Ok(());
        };
        let applied = Arc::new(AppliedOffsets::default());
        let producer = settings.producer().context("cannot create the Kafka producer")?;
        let writer = Arc::new(KafkaEventLog::new(producer.clone(), &settings, applied.clone()));
        let controller = Arc::new(RatingController::with_event_log(MemoryRepository::default(), writer));
        let (replayed, replay_done) = tokio::sync::oneshot::channel();
        let stop_ingestion = CancellationToken::new();
        let ingestion = tokio::spawn(
            EventConsumer::new(settings, producer, controller.clone(), applied, range)
                .run(replayed, stop_ingestion.clone()),
        );
        let ready = async {
            // The sender only goes away if ingestion stopped, i.e. on shutdown.
            if replay_done.await.is_err() {
                std::future::pending::<()>().await;
            }
        };
        let served = server.run(routes(controller, range), registry, ready, shutdown).await;
        stop_ingestion.cancel();
        if tokio::time::timeout(INGESTION_STOP_TIMEOUT, ingestion).await.is_err() {
            tracing::warn!(timeout = ?INGESTION_STOP_TIMEOUT, "ingestion did not stop in time");
        }
        served?;
        Ok(())
    }
}

/// The gRPC routes of the service.
fn routes(controller: Arc<RatingController<MemoryRepository>>, range: RatingRange) -> Routes {
    Routes::new(RatingServiceServer::new(handler::RatingHandler::new(controller, range)))
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
