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
use event_log::{
    AppliedOffsets, EventLogArgs, EventLogSettings, consumer::EventConsumer, ingestion::Ingestion,
    writer::KafkaEventLog,
};
use platform::{
    discovery::{DiscoveryArgs, Registry, StaticRegistry},
    security::{AuthArgs, ProtectedCall},
    server::{BoundServer, ServerArgs, ServiceSettings, ready_after},
    shutdown::CancellationToken,
};
use repository::{MIGRATIONS, Sharing, Store};
use sql_store::{DatabaseArgs, prepare_or_stop};
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

    #[command(flatten)]
    pub database: DatabaseArgs,

    #[command(flatten)]
    pub auth: AuthArgs,
}

/// The calls that need a bearer token when a key is configured (`--auth-*`).
pub const PROTECTED_CALLS: &[ProtectedCall] = &[
    ProtectedCall { path: "/RatingService/PutRating", scope: "ratings:write" },
    ProtectedCall { path: "/RatingService/DeleteRating", scope: "ratings:write" },
];

/// How long ingestion may take to stop after the server has drained.
const INGESTION_STOP_TIMEOUT: Duration = Duration::from_secs(5);

type Handler = handler::RatingHandler<Store>;

/// A rating service whose listener is bound: its address is known, and it
/// serves once [`Application::run_until_stopped`] is called.
pub struct Application {
    server: BoundServer,
    registry: Arc<dyn Registry>,
    range: RatingRange,
    event_log: Option<EventLogSettings>,
    store: Store,
    max_message_size: usize,
}

impl Application {
    /// Checks the settings and binds the listener.
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        let range = config.ratings.range()?;
        let registry = config.discovery.registry(StaticRegistry::new())?;
        let served = vec![<RatingServiceServer<Handler> as NamedService>::NAME];
        let settings = ServiceSettings {
            authorization: config.auth.authorization(PROTECTED_CALLS)?,
            ..ServiceSettings::from_args(RATING, served, config.listen, &config.server, &config.discovery)
        };
        let event_log = config.event_log.settings();
        let store = Store::open(&config.database)?;
        tracing::info!(listen = %config.listen, discovery = %registry.describe(), ratings = %range,
            kafka = event_log.as_ref().map_or("off", |kafka| kafka.brokers.as_str()),
            topic = %config.event_log.kafka.topic, store = %store.describe(), "starting rating service");
        let server = BoundServer::bind(settings).await?;
        Ok(Self { server, registry, range, event_log, store, max_message_size: config.server.max_message_size() })
    }

    /// The address the listener is bound to (the real port when asked for 0).
    pub fn local_address(&self) -> SocketAddr {
        self.server.local_address()
    }

    /// Serves until `shutdown` is cancelled. Health turns SERVING once the
    /// store is connected and migrated and, with Kafka configured and a store
    /// of its own (memory, SQLite), once this instance holds everything the
    /// topic held when it started. Ingestion stops after the in-flight RPCs
    /// have drained. A store that cannot be prepared, or ingestion that
    /// cannot go on, stops the service with the reason.
    pub async fn run_until_stopped(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let Self { server, registry, range, event_log, store, max_message_size } = self;
        let stop = shutdown.child_token();
        let prepared = {
            let (database, stop) = (store.database(), stop.clone());
            async move { prepare_or_stop(RATING, database, &MIGRATIONS, &stop).await }
        };
        let Some(settings) = event_log else {
            let controller = Arc::new(RatingController::new(store));
            let (ready, mut failure) = ready_after(prepared);
            server.run(routes(controller, range, max_message_size), registry, ready, stop.clone()).await?;
            return failure.try_recv().map_or(Ok(()), |error| Err(error.into()));
        };
        let sharing = Sharing::of(&store);
        let applied = Arc::new(AppliedOffsets::default());
        let producer = settings.producer().context("cannot create the Kafka producer")?;
        let writer = KafkaEventLog::new(producer.clone(), &settings, applied.clone(), sharing.shared());
        let controller = Arc::new(RatingController::with_event_log(store, Arc::new(writer)));
        let consumer = EventConsumer::new(settings, sharing, producer, controller.clone(), applied, range);
        let ingestion = Ingestion::start(consumer, prepared, stop.clone());
        let routes = routes(controller, range, max_message_size);
        let served = server.run(routes, registry, ingestion.caught_up(), stop).await;
        let ingested = ingestion.stop(INGESTION_STOP_TIMEOUT).await;
        served?;
        Ok(ingested?)
    }
}

fn routes(controller: Arc<RatingController<Store>>, range: RatingRange, max_message_size: usize) -> Routes {
    let server = RatingServiceServer::new(handler::RatingHandler::new(controller, range))
        .max_decoding_message_size(max_message_size)
        .max_encoding_message_size(max_message_size);
    Routes::new(server)
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
