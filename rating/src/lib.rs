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
    AppliedOffsets, EventLogArgs, EventLogSettings, Prefetch,
    consumer::{EventConsumer, Sharing},
    writer::KafkaEventLog,
};
use platform::{
    discovery::{DiscoveryArgs, Registry, StaticRegistry},
    security::{AuthArgs, ProtectedCall},
    server::{BoundServer, ServerArgs, ServiceSettings, ready_after},
    shutdown::CancellationToken,
};
use repository::{MIGRATIONS, Store};
use sql_store::{DatabaseArgs, prepare_or_stop};
use telemetry::Chain;
use tokio::sync::oneshot;
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
        let database = store.database();
        let Some(settings) = event_log else {
            let controller = Arc::new(RatingController::new(store));
            let (ready, mut failure) = ready_after(prepare_or_stop(RATING, database, &MIGRATIONS, &stop));
            server.run(routes(controller, range, max_message_size), registry, ready, stop.clone()).await?;
            return failure.try_recv().map_or(Ok(()), |error| Err(error.into()));
        };
        let prefetch = if database.is_some() { Prefetch::Lean } else { Prefetch::Full };
        let settings = EventLogSettings { prefetch, ..settings };
        let shares_store = store.is_shared();
        let shared = match &store {
            Store::Postgres(repository) => Some(repository.clone()),
            Store::Memory(_) | Store::Sqlite(_) => None,
        };
        let applied = Arc::new(AppliedOffsets::default());
        let producer = settings.producer().context("cannot create the Kafka producer")?;
        let writer = Arc::new(KafkaEventLog::new(producer.clone(), &settings, applied.clone(), shared.clone()));
        let controller = Arc::new(RatingController::with_event_log(store, writer));
        let sharing = match (shared, settings.consumer_group.clone()) {
            (Some(repository), Some(group)) => {
                Sharing::Group { group, positions: Arc::new(move |topic: &str| repository.positions_blocking(topic)) }
            }
            _ => Sharing::EveryPartition,
        };
        let (caught_up, ready) = oneshot::channel();
        let stop_ingestion = CancellationToken::new();
        let consumer = EventConsumer::new(settings, sharing, producer, controller.clone(), applied, range);
        let ingestion = tokio::spawn({
            let (stop, stop_ingestion) = (stop.clone(), stop_ingestion.clone());
            async move {
                tokio::select! {
                    prepared = prepare_or_stop(RATING, database, &MIGRATIONS, &stop) => prepared?,
                    _ = stop_ingestion.cancelled() => return Ok(()),
                }
                // Replicas that share a store have nothing to catch up with:
                // the store holds what the topic held.
                let caught_up = if shares_store {
                    let _ = caught_up.send(());
                    oneshot::channel().0
                } else {
                    caught_up
                };
                consumer.run(caught_up, stop_ingestion).await.map_err(|error| {
                    tracing::error!(error = %Chain(&error), "ingestion cannot go on; stopping");
                    stop.cancel();
                    anyhow::Error::new(error).context("the rating service cannot ingest the ratings topic")
                })
            }
        });
        let ready = async {
            // The sender only goes away if ingestion stopped, i.e. on shutdown.
            if ready.await.is_err() {
                std::future::pending::<()>().await;
            }
        };
        let served = server.run(routes(controller, range, max_message_size), registry, ready, stop).await;
        stop_ingestion.cancel();
        let ingested = match tokio::time::timeout(INGESTION_STOP_TIMEOUT, ingestion).await {
            Ok(Ok(result)) => result,
            Ok(Err(panicked)) => Err(anyhow::Error::new(panicked).context("ingestion failed")),
            Err(_) => {
                tracing::warn!(timeout = ?INGESTION_STOP_TIMEOUT, "ingestion did not stop in time");
                Ok(())
            }
        };
        served?;
        ingested
    }
}

/// The gRPC routes of the service, taking and sending messages of at most
/// `max_message_size` bytes.
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
