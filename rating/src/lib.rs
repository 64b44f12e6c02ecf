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

use std::{future::Future, net::SocketAddr, sync::Arc, time::Duration};

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
use sql_store::{DatabaseArgs, UnusableDatabase, prepare_or_stop};
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

    /// Which of the service's jobs this instance does: `serve` RatingService (writes go through the topic and wait until an ingesting replica applied them), `ingest` the topic into the store (serving only health and metrics), or `all`. `serve` and `ingest` share a PostgreSQL store
    #[arg(long, env = "ROLE", value_enum, default_value = "all")]
    pub role: Role,

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

/// Which of the service's two jobs an instance does, so that each can be
/// scaled on its own: reads and writes with the load, ingestion with the
/// topic's partitions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Role {
    /// RatingService only: reads from the store, writes through the topic.
    Serve,
    /// The topic into the store only; the listener serves health (and
    /// reflection) for probes, and the instance registers nowhere.
    Ingest,
    /// Both.
    All,
}

impl Role {
    fn serves(self) -> bool {
        self != Self::Ingest
    }

    fn ingests(self) -> bool {
        self != Self::Serve
    }
}

/// Why the settings cannot make a rating instance.
#[derive(Debug, thiserror::Error)]
pub enum RoleError {
    #[error("--role ingest (ROLE) needs Kafka: set --kafka-brokers (KAFKA_BROKERS)")]
    IngestWithoutKafka,
    #[error(
        "--role {role} (ROLE) needs a store shared with the other role's replicas: a PostgreSQL --database-url \
         (DATABASE_URL); {store} is this instance's own"
    )]
    OwnStore { role: &'static str, store: String },
}

/// The calls that need a bearer token when a key is configured (`--auth-*`).
pub const PROTECTED_CALLS: &[ProtectedCall] = &[
    ProtectedCall { path: "/RatingService/PutRating", scope: "ratings:write" },
    ProtectedCall { path: "/RatingService/DeleteRating", scope: "ratings:write" },
];

/// How long ingestion may take to stop: after the server has drained, or,
/// on a shared store, before it drains (leaving the consumer group). A
/// shutdown takes up to this plus `--shutdown-timeout`.
pub const INGESTION_STOP_TIMEOUT: Duration = Duration::from_secs(5);

type Handler = handler::RatingHandler<Store>;

/// A rating service whose listener is bound: its address is known, and it
/// serves once [`Application::run_until_stopped`] is called.
pub struct Application {
    server: BoundServer,
    registry: Arc<dyn Registry>,
    role: Role,
    range: RatingRange,
    event_log: Option<EventLogSettings>,
    store: Store,
    max_message_size: usize,
}

impl Application {
    /// Checks the settings and binds the listener.
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        let range = config.ratings.range()?;
        let role = config.role;
        let event_log = config.event_log.settings();
        let store = Store::open(&config.database)?;
        check_role(role, event_log.is_some(), &store)?;
        // An ingesting instance serves no RatingService: nothing to register
        // for clients to find.
        let registry = match role {
            Role::Ingest => Arc::new(StaticRegistry::new()),
            Role::Serve | Role::All => config.discovery.registry(StaticRegistry::new())?,
        };
        let served =
            if role.serves() { vec![<RatingServiceServer<Handler> as NamedService>::NAME] } else { Vec::new() };
        let settings = ServiceSettings {
            authorization: config.auth.authorization(PROTECTED_CALLS)?,
            ..ServiceSettings::from_args(RATING, served, config.listen, &config.server, &config.discovery)
        };
        tracing::info!(listen = %config.listen, role = ?role, discovery = %registry.describe(), ratings = %range,
            kafka = event_log.as_ref().map_or("off", |kafka| kafka.brokers.as_str()),
            topic = %config.event_log.kafka.topic, store = %store.describe(), "starting rating service");
        let server = BoundServer::bind(settings).await?;
        Ok(Self { server, registry, role, range, event_log, store, max_message_size: config.server.max_message_size() })
    }

    /// The address the listener is bound to (the real port when asked for 0).
    pub fn local_address(&self) -> SocketAddr {
        self.server.local_address()
    }

    /// Serves until `shutdown` is cancelled. Health turns SERVING once the
    /// store is connected and migrated and, with Kafka configured and a store
    /// of its own (memory, SQLite), once this instance holds everything the
    /// topic held when it started. A store that cannot be prepared, or
    /// ingestion that cannot go on, stops the service with the reason.
    ///
    /// On shutdown, an instance with a store of its own stops ingesting
    /// after its in-flight RPCs have drained (their writes wait to be
    /// applied here). One on a shared store stops ingesting first, leaving
    /// its consumer group before its listener closes, so that its
    /// partitions move to the other replicas at once rather than after the
    /// group's session timeout; its in-flight writes are applied by whichever
    /// replica takes them over.
    pub async fn run_until_stopped(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let Self { server, registry, role, range, event_log, store, max_message_size } = self;
        let stop = shutdown.child_token();
        let prepared = {
            let (database, stop) = (store.database(), stop.clone());
            async move { prepare_or_stop(RATING, database, &MIGRATIONS, &stop).await }
        };
        let Some(settings) = event_log else {
            let routes = routes(Arc::new(RatingController::new(store)), range, max_message_size);
            return serve_without_ingesting(server, routes, registry, prepared, stop).await;
        };
        let sharing = Sharing::of(&store);
        let leave_first = sharing.shared().is_some();
        let applied = Arc::new(AppliedOffsets::default());
        let producer = settings.producer().context("cannot create the Kafka producer")?;
        let writer = KafkaEventLog::new(producer.clone(), &settings, applied.clone(), sharing.shared());
        let controller = Arc::new(RatingController::with_event_log(store, Arc::new(writer)));
        let routes =
            if role.serves() { routes(controller.clone(), range, max_message_size) } else { Routes::default() };
        if !role.ingests() {
            return serve_without_ingesting(server, routes, registry, prepared, stop).await;
        }
        let consumer = EventConsumer::new(settings, sharing, producer, controller, applied, range);
        let ingestion = Ingestion::start(consumer, prepared, stop.clone());
        if leave_first {
            serve_leaving_first(server, routes, registry, ingestion, stop).await
        } else {
            let served = server.run(routes, registry, ingestion.caught_up(), stop).await;
            let ingested = ingestion.stop(INGESTION_STOP_TIMEOUT).await;
            served?;
            Ok(ingested?)
        }
    }
}

/// Serves, ready once the store is `prepared`; a store that cannot be
/// prepared stops the server and is the error.
async fn serve_without_ingesting(
    server: BoundServer,
    routes: Routes,
    registry: Arc<dyn Registry>,
    prepared: impl Future<Output = Result<(), UnusableDatabase>> + Send,
    stop: CancellationToken,
) -> anyhow::Result<()> {
    let (ready, mut failure) = ready_after(prepared);
    server.run(routes, registry, ready, stop).await?;
    failure.try_recv().map_or(Ok(()), |error| Err(error.into()))
}

/// Serves beside `ingestion` on a shared store: on `stop`, ingestion stops
/// first (its consumer leaves the group), then the server drains; if the
/// server ends on its own, ingestion stops after it.
async fn serve_leaving_first(
    server: BoundServer,
    routes: Routes,
    registry: Arc<dyn Registry>,
    ingestion: Ingestion,
    stop: CancellationToken,
) -> anyhow::Result<()> {
    let server_stop = CancellationToken::new();
    let serving = server.run(routes, registry, ingestion.caught_up(), server_stop.clone());
    tokio::pin!(serving);
    let (served, ingested) = tokio::select! {
        served = &mut serving => {
            stop.cancel();
            (served, ingestion.stop(INGESTION_STOP_TIMEOUT).await)
        }
        () = stop.cancelled() => {
            let ingested = ingestion.stop(INGESTION_STOP_TIMEOUT).await;
            tracing::info!("left the consumer group; the server drains now");
            server_stop.cancel();
            (serving.await, ingested)
        }
    };
    served?;
    Ok(ingested?)
}

/// Refuses a role the settings cannot carry out: ingesting needs Kafka,
/// and either role alone needs a store the other role's replicas share
/// (writes through the topic wait until some replica applied them there).
fn check_role(role: Role, kafka: bool, store: &Store) -> Result<(), RoleError> {
    let role_name = match role {
        Role::All => return Ok(()),
        Role::Ingest if !kafka => return Err(RoleError::IngestWithoutKafka),
        // Without Kafka, writes go straight into the store: serving alone is
        // serving everything.
        Role::Serve if !kafka => return Ok(()),
        Role::Serve => "serve",
        Role::Ingest => "ingest",
    };
    match Sharing::of(store) {
        Sharing::Shared(_) => Ok(()),
        Sharing::OwnInMemory | Sharing::OwnFile => {
            Err(RoleError::OwnStore { role: role_name, store: store.describe() })
        }
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

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    async fn build(args: &[&str]) -> anyhow::Result<Application> {
        let mut argv = vec!["rating", "--listen", "127.0.0.1:0"];
        argv.extend_from_slice(args);
        Application::build(Config::try_parse_from(argv).unwrap()).await
    }

    #[tokio::test]
    async fn each_role_alone_needs_what_it_shares_with_the_other() {
        let error = build(&["--role", "ingest"]).await.err().expect("ingesting needs Kafka");
        assert_eq!(error.to_string(), "--role ingest (ROLE) needs Kafka: set --kafka-brokers (KAFKA_BROKERS)");

        for role in ["serve", "ingest"] {
            let error =
                build(&["--role", role, "--kafka-brokers", "127.0.0.1:9"]).await.err().expect("a store of its own");
            assert_eq!(
                error.to_string(),
                format!(
                    "--role {role} (ROLE) needs a store shared with the other role's replicas: a PostgreSQL \
                     --database-url (DATABASE_URL); memory is this instance's own"
                )
            );
        }

        // Without Kafka, writes go straight into the store: serving alone
        // serves everything.
        assert!(build(&["--role", "serve"]).await.is_ok());
        assert!(build(&["--kafka-brokers", "127.0.0.1:9"]).await.is_ok(), "the default role is all");
    }
}
