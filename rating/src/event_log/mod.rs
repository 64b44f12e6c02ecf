//! The ratings topic as this service's event log.
//!
//! * [`consumer`]: consumes the topic into the store, in batches recorded
//!   with their positions in the topic, and dead-letters what it refuses;
//! * [`writer`]: PutRating/DeleteRating appended to the topic, returning once
//!   the event is in the store (read your writes);
//! * [`topics`]: creates the topic and its dead-letter topic when missing;
//! * [`applied`]: which offsets have been applied, what the writer waits on;
//! * [`ingestion`]: the consumer running beside the server, from start to stop.
mod applied;
pub mod consumer;
pub mod ingestion;
pub mod topics;
pub mod writer;

use std::time::Duration;

pub use applied::AppliedOffsets;
use contract::{
    event::KeyPolicy,
    kafka::{KafkaArgs, KafkaProperty, client_config, producer_config, with_properties},
};
use rdkafka::{
    ClientConfig,
    consumer::{ConsumerContext, StreamConsumer},
    error::KafkaError,
    producer::FutureProducer,
};

use crate::repository::Sharing;

/// The header of a dead-lettered message that says why it was refused.
pub const DLQ_REASON_HEADER: &str = "x-dlq-reason";

/// The name of this service's Kafka clients in the broker's logs.
const CLIENT_ID: &str = "rating";
/// How far a [`Prefetch::Lean`] consumer fetches ahead of what it
/// applied: messages per partition (`queued.min.messages`), kilobytes in
/// all (`queued.max.messages.kbytes`), and the bytes of one fetch response
/// (`fetch.max.bytes`, compressed: LZ4 packs about ten events into the
/// space of one).
const QUEUED_MESSAGES: &str = "10000";
const QUEUED_KBYTES: &str = "16384";
const FETCH_BYTES: &str = "4194304";

/// How far the consumer reads ahead of what it applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Prefetch {
    /// librdkafka's defaults (100,000 messages per partition, 64 MB, 50 MB
    /// per fetch): the fastest replay, for the memory store, which holds
    /// every rating in memory anyway.
    Full,
    /// Bounded: a database applies more slowly than this still delivers,
    /// and what is fetched ahead no longer makes most of the instance's
    /// memory (BENCHMARKS.md, "Settings chosen by measurement").
    Lean,
}

impl Prefetch {
    /// Full for a store in memory, lean for a database.
    pub fn for_store(sharing: &Sharing) -> Self {
        match sharing {
            Sharing::OwnInMemory => Self::Full,
            Sharing::OwnFile | Sharing::Shared(_) => Self::Lean,
        }
    }
}

/// The rating service's Kafka settings: the shared connection plus what only
/// this service decides (the dead-letter topic, how topics are created, how
/// long a write may take).
#[derive(Debug, Clone, clap::Args)]
pub struct EventLogArgs {
    #[command(flatten)]
    pub kafka: KafkaArgs,

    /// Topic that receives events that cannot be decoded or validated, with the reason in the x-dlq-reason header
    #[arg(long, env = "RATINGS_DLQ_TOPIC", default_value = "ratings.dlq")]
    pub dlq_topic: String,

    /// Partitions of the ratings topic and of its dead-letter topic when this service creates them
    #[arg(long, env = "RATINGS_TOPIC_PARTITIONS", default_value_t = 3)]
    pub topic_partitions: i32,

    /// With a PostgreSQL store: the Kafka consumer group the ingesting replicas join to split the partitions between them (empty: every replica reads every partition, and the first to reach an event applies it). Memory and SQLite stores read every partition
    #[arg(long, env = "RATINGS_CONSUMER_GROUP", default_value = "rating")]
    pub consumer_group: String,

    /// How long PutRating/DeleteRating wait for the broker's ack and for the event to be applied here
    #[arg(long, env = "WRITE_TIMEOUT", default_value = "5s", value_parser = humantime::parse_duration)]
    pub write_timeout: Duration,

    /// Dead-letter events whose message key is not recordType/recordId/userId (no key, or another) instead of applying them
    #[arg(long, env = "STRICT_EVENT_KEYS")]
    pub strict_event_keys: bool,
}

impl EventLogArgs {
    /// The settings of the event log, or `None` when no brokers are
    /// configured (writes then go straight to the store).
    pub fn settings(&self) -> Option<EventLogSettings> {
        self.kafka.brokers.as_ref().map(|brokers| EventLogSettings {
            brokers: brokers.clone(),
            topic: self.kafka.topic.clone(),
            dlq_topic: self.dlq_topic.clone(),
            consumer_group: Some(self.consumer_group.clone()).filter(|group| !group.is_empty()),
            partitions: self.topic_partitions,
            replication: 1,
            write_timeout: self.write_timeout,
            keys: if self.strict_event_keys { KeyPolicy::Canonical } else { KeyPolicy::Any },
            properties: self.kafka.properties.clone(),
        })
    }
}

/// Where the ratings live in Kafka.
#[derive(Debug, Clone)]
pub struct EventLogSettings {
    /// `host:port[,host:port...]`
    pub brokers: String,
    pub topic: String,
    pub dlq_topic: String,
    /// The consumer group of replicas that share a store, if they split
    /// the partitions through one.
    pub consumer_group: Option<String>,
    /// Partitions of each topic when this service creates it.
    pub partitions: i32,
    pub replication: i32,
    /// How long PutRating/DeleteRating wait for the broker and for the
    /// event to be applied here.
    pub write_timeout: Duration,
    /// Which message keys the consumer accepts.
    pub keys: KeyPolicy,
    /// librdkafka properties from the settings, set last on every client.
    pub properties: Vec<KafkaProperty>,
}

impl EventLogSettings {
    fn client_config(&self) -> ClientConfig {
        let mut config = client_config(&self.brokers, CLIENT_ID);
        with_properties(&mut config, &self.properties);
        config
    }

    /// The process's one producer, for writes and dead letters.
    pub fn producer(&self) -> Result<FutureProducer, KafkaError> {
        let mut config = producer_config(&self.brokers, CLIENT_ID, self.write_timeout);
        with_properties(config.set("linger.ms", "1"), &self.properties).create()
    }

    /// A consumer that commits nothing by itself (the store keeps the
    /// positions; a member of a group commits what the store holds): a
    /// member of `group`, or, without one, a reader that assigns itself
    /// partitions (its group id is then only a label).
    fn consumer<C: ConsumerContext + 'static>(
        &self,
        context: C,
        group: Option<&str>,
        prefetch: Prefetch,
    ) -> Result<StreamConsumer<C>, KafkaError> {
        let mut config = self.client_config();
        if prefetch == Prefetch::Lean {
            config
                .set("queued.min.messages", QUEUED_MESSAGES)
                .set("queued.max.messages.kbytes", QUEUED_KBYTES)
                .set("fetch.max.bytes", FETCH_BYTES);
        }
        if group.is_some() {
            // A replica that dies without leaving loses its partitions to
            // the others after this long; a rebalance moves only the
            // partitions that change hands, the others keep being applied.
            config
                .set("session.timeout.ms", "10000")
                .set("heartbeat.interval.ms", "1000")
                .set("partition.assignment.strategy", "cooperative-sticky");
        }
        config
            .set("group.id", group.unwrap_or("rating-replay"))
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            .set("enable.partition.eof", "false")
            .set("fetch.wait.max.ms", "50")
            // Statistics every few seconds: the consumer lag per partition.
            .set("statistics.interval.ms", "5000");
        with_properties(&mut config, &self.properties).create_with_context(context)
    }
}
