//! The rating service: stores one rating per (record type, record id, user)
//! and serves each record's average over gRPC as `RatingService`.
//!
//! Layers: [`handler`] (gRPC mapping) → [`controller`] (rules) →
//! [`repository`] (storage), over the domain types of [`model`].

pub mod controller;
pub mod event;
pub mod handler;
pub mod ingester;
pub mod model;
pub mod repository;

use std::{net::SocketAddr, sync::Arc, time::Duration};

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

use crate::{
    controller::{RatingController, WritePath},
    model::RatingRange,
};

/// The name this service registers under in discovery.
pub const SERVICE_NAME: &str = "rating";

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

    /// Lowest accepted rating value
    #[arg(long, env = "RATING_MIN", default_value_t = 1, allow_negative_numbers = true)]
    pub min_rating: i32,

    /// Highest accepted rating value (e.g. 10 for IMDb-style providers)
    #[arg(long, env = "RATING_MAX", default_value_t = 5, allow_negative_numbers = true)]
    pub max_rating: i32,

    #[command(flatten)]
    pub kafka: KafkaArgs,

    #[command(flatten)]
    pub server: ServerArgs,

    #[command(flatten)]
    pub discovery: DiscoveryArgs,
}

/// Kafka ingestion; off unless brokers are given.
#[derive(Debug, Clone, clap::Args)]
pub struct KafkaArgs {
    /// Kafka bootstrap servers (host:port,...). When set, ratings are ingested from the topic and PutRating/DeleteRating write through it
    #[arg(long, env = "KAFKA_BROKERS")]
    pub kafka_brokers: Option<String>,

    /// Topic of rating events
    #[arg(long, env = "RATINGS_TOPIC", default_value = "ratings")]
    pub topic: String,

    /// Topic that receives events that cannot be decoded or validated, with the reason in the x-dlq-reason header
    #[arg(long, env = "RATINGS_DLQ_TOPIC", default_value = "ratings.dlq")]
    pub dlq_topic: String,

    /// Partitions of the ratings topic when this service creates it
    #[arg(long, env = "RATINGS_TOPIC_PARTITIONS", default_value_t = 3)]
    pub topic_partitions: i32,

    /// How long PutRating/DeleteRating wait for the broker's ack and for the event to be applied here
    #[arg(long, env = "WRITE_TIMEOUT", default_value = "5s", value_parser = humantime::parse_duration)]
    pub write_timeout: Duration,
}

impl KafkaArgs {
    pub fn settings(&self) -> Option<ingester::KafkaSettings> {
        self.kafka_brokers.as_ref().map(|brokers| ingester::KafkaSettings {
            brokers: brokers.clone(),
            topic: self.topic.clone(),
            dlq_topic: self.dlq_topic.clone(),
            partitions: self.topic_partitions,
            replication: 1,
            write_timeout: self.write_timeout,
        })
    }
}

impl Config {
    pub fn rating_range(&self) -> anyhow::Result<RatingRange> {
        RatingRange::new(self.min_rating, self.max_rating).context("invalid --min-rating/--max-rating")
    }
}

/// How long ingestion may take to stop after the server has drained.
const INGESTION_STOP_TIMEOUT: Duration = Duration::from_secs(5);

/// The gRPC routes of the service.
pub fn routes(controller: Arc<RatingController<MemoryRepository>>, range: RatingRange) -> Routes {
    Routes::new(RatingServiceServer::new(handler::RatingHandler::new(controller, range)))
}

/// Binds the listener, then serves until `shutdown` is cancelled. With Kafka
/// configured, health turns SERVING once the topic has been replayed, and
/// ingestion stops after the in-flight RPCs have drained.
pub async fn run(config: Config, shutdown: CancellationToken) -> anyhow::Result<()> {
    let range = config.rating_range()?;
    let registry = config.discovery.registry(StaticRegistry::new())?;
    let grpc_services = vec![<RatingServiceServer<handler::RatingHandler<MemoryRepository>> as NamedService>::NAME];
    let settings =
        ServiceSettings::from_args(SERVICE_NAME, grpc_services, config.listen, &config.server, &config.discovery);
    let kafka = config.kafka.settings();
    tracing::info!(listen = %config.listen, discovery = %registry.describe(), ratings = %range,
        kafka = kafka.as_ref().map_or("off", |kafka| kafka.brokers.as_str()), topic = %config.kafka.topic, "starting rating service");
    let server = BoundServer::bind(settings).await?;

    let Some(kafka) = kafka else {
        let controller = Arc::new(RatingController::new(MemoryRepository::default()));
        server.run(routes(controller, range), registry, std::future::ready(()), shutdown).await?;
        return Ok(());
    };
    let applied = Arc::new(ingester::AppliedOffsets::default());
    let producer = kafka.producer().context("cannot create the Kafka producer")?;
    let publisher = ingester::publisher::EventPublisher::new(producer.clone(), &kafka, applied.clone());
    let controller =
        Arc::new(RatingController::with_writes(MemoryRepository::default(), WritePath::EventLog(publisher)));
    let (replayed, replay_done) = tokio::sync::oneshot::channel();
    let stop_ingestion = CancellationToken::new();
    let ingestion = tokio::spawn(
        ingester::Ingester::new(kafka, producer, controller.clone(), applied, range)
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
