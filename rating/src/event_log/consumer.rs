//! The consumer of the ratings topic: applies its events to this instance's
//! store.
//!
//! Every rating instance holds every rating: the consumer assigns itself
//! *all* partitions of the ratings topic and replays them from the
//! beginning at each start, reporting ready once it has applied everything
//! that was in the topic when it started. It commits no consumer-group
//! offsets (a restart replays everything anyway); instead it records each
//! offset as applied only after its event is in the store, which is what
//! read-your-writes waits on. Applying an event twice changes nothing
//! (puts are upserts per user, deletes are idempotent), so redelivery is
//! harmless.
//!
//! A message that cannot be decoded or validated (a poison pill) is logged
//! with its topic, partition and offset, copied to the dead-letter topic
//! with the reason in the `x-dlq-reason` header, counted, and skipped.
use std::{
    collections::HashMap,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use backon::{BackoffBuilder, ExponentialBuilder};
use platform::shutdown::CancellationToken;
use rdkafka::{
    ClientContext, Message, Offset, Statistics, TopicPartitionList,
    consumer::{Consumer, ConsumerContext, StreamConsumer},
    error::KafkaError,
    message::{BorrowedMessage, Header, OwnedHeaders},
    producer::{FutureProducer, FutureRecord},
    util::Timeout,
};
use tokio::sync::oneshot;
use tracing::Instrument;

use super::{AppliedOffsets, DLQ_REASON_HEADER, EventLogSettings, topics::ensure_topics};
use crate::{
    controller::RatingController,
    model::{RatingEvent, RatingRange},
    repository::RatingRepository,
};

/// Reports how far behind the topic this instance is, per partition, from
/// librdkafka's periodic statistics: the partition's high watermark minus
/// the next offset this instance will apply.
pub struct LagReporter {
    topic: String,
    applied: Arc<AppliedOffsets>,
}

impl ClientContext for LagReporter {
    fn stats(&self, statistics: Statistics) {
        let Some(topic) = statistics.topics.get(&self.topic) else { return };
        for (&partition, figures) in &topic.partitions {
            // librdkafka lists an internal partition -1 for unassigned messages.
            if partition < 0 {
                continue;
            }
            let lag = (figures.hi_offset - self.applied.next_offset(partition)).max(0);
            metrics::gauge!("rating_consumer_lag", "partition" => partition.to_string()).set(lag as f64);
        }
    }
}

impl ConsumerContext for LagReporter {}

/// What the consumer has done so far.
#[derive(Debug, Default)]
pub struct ConsumerStats {
    pub applied: AtomicU64,
    pub dead_lettered: AtomicU64,
}

pub struct EventConsumer<R> {
    settings: EventLogSettings,
    /// Shared with the write path: one producer per process.
    dead_letters: FutureProducer,
    controller: Arc<RatingController<R>>,
    applied: Arc<AppliedOffsets>,
    stats: Arc<ConsumerStats>,
    range: RatingRange,
}

impl<R: RatingRepository> EventConsumer<R> {
    pub fn new(
        settings: EventLogSettings,
        dead_letters: FutureProducer,
        controller: Arc<RatingController<R>>,
        applied: Arc<AppliedOffsets>,
        range: RatingRange,
    ) -> Self {
        Self { settings, dead_letters, controller, applied, stats: Arc::default(), range }
    }

    /// Ingests until `stop` is cancelled. `ready` fires once the events that
    /// were in the topic at start have all been applied. Retries with backoff
    /// while the broker cannot be reached.
    pub async fn run(self, ready: oneshot::Sender<()>, stop: CancellationToken) {
        let mut ready = Some(ready);
        metrics::gauge!("rating_consumer_caught_up").set(0.0);
        let mut backoff = ExponentialBuilder::default()
            .with_min_delay(Duration::from_millis(200))
            .with_max_delay(Duration::from_secs(5))
            .without_max_times()
            .build();
        let (consumer, targets) = loop {
            match self.connect().await {
                Ok(connected) => break connected,
                Err(error) => {
                    let delay = backoff.next().unwrap_or(Duration::from_secs(5));
                    tracing::warn!(brokers = %self.settings.brokers, %error, retry_in = ?delay, "cannot reach Kafka; reads are served, ingestion waits");
                    tokio::select! {
                        _ = stop.cancelled() => return,
                        _ = tokio::time::sleep(delay) => {}
                    }
                }
            }
        };
        let total: i64 = targets.values().sum();
        tracing::info!(topic = %self.settings.topic, partitions = targets.len(), events = total, "replaying the topic from the beginning");
        let started = Instant::now();
        let mut last_progress = Instant::now();
        let mut error_backoff = Duration::from_millis(100);
        loop {
            if ready.is_some() && self.caught_up(&targets) {
                tracing::info!(events = self.stats.applied.load(Ordering::Relaxed),
                    dead_lettered = self.stats.dead_lettered.load(Ordering::Relaxed),
                    took = ?started.elapsed(), "replay complete; ingesting new events");
                if let Some(ready) = ready.take() {
                    let _ = ready.send(());
                }
                metrics::gauge!("rating_consumer_caught_up").set(1.0);
            }
            let message = tokio::select! {
                _ = stop.cancelled() => break,
                message = consumer.recv() => message,
            };
            match message {
                Ok(message) => {
                    error_backoff = Duration::from_millis(100);
                    self.handle(&message).await;
                    if ready.is_some() && last_progress.elapsed() >= Duration::from_secs(2) {
                        last_progress = Instant::now();
                        tracing::info!(applied = self.stats.applied.load(Ordering::Relaxed), of = total, "catching up");
                    }
                }
                Err(error) => {
                    tracing::warn!(%error, retry_in = ?error_backoff, "Kafka consumer error; retrying");
                    tokio::select! {
                        _ = stop.cancelled() => break,
                        _ = tokio::time::sleep(error_backoff) => {}
                    }
                    error_backoff = (error_backoff * 2).min(Duration::from_secs(5));
                }
            }
        }
        tracing::info!(
            applied = self.stats.applied.load(Ordering::Relaxed),
            dead_lettered = self.stats.dead_lettered.load(Ordering::Relaxed),
            "ingestion stopped"
        );
    }

    /// Creates the topics if needed, assigns every partition from the
    /// beginning, and returns each partition's end offset at this moment.
    async fn connect(&self) -> Result<(StreamConsumer<LagReporter>, HashMap<i32, i64>), KafkaError> {
        ensure_topics(&self.settings).await?;
        let lag = LagReporter { topic: self.settings.topic.clone(), applied: self.applied.clone() };
        let consumer = self.settings.consumer(lag)?;
        let topic = self.settings.topic.clone();
        let (consumer, targets) = tokio::task::spawn_blocking(move || -> Result<_, KafkaError> {
            let timeout = Duration::from_secs(10);
            let metadata = consumer.fetch_metadata(Some(&topic), timeout)?;
            let partitions: Vec<i32> = metadata
                .topics()
                .iter()
                .filter(|found| found.name() == topic)
                .flat_map(|found| found.partitions().iter().map(|partition| partition.id()))
                .collect();
            if partitions.is_empty() {
                return Err(KafkaError::MetadataFetch(rdkafka::types::RDKafkaErrorCode::UnknownTopicOrPartition));
            }
            let mut assignment = TopicPartitionList::new();
            let mut targets = HashMap::new();
            for partition in partitions {
                let (_low, high) = consumer.fetch_watermarks(&topic, partition, timeout)?;
                targets.insert(partition, high);
                assignment.add_partition_offset(&topic, partition, Offset::Beginning)?;
            }
            consumer.assign(&assignment)?;
            Ok((consumer, targets))
        })
        .await
        .map_err(|_| KafkaError::Canceled)??;
        Ok((consumer, targets))
    }

    fn caught_up(&self, targets: &HashMap<i32, i64>) -> bool {
        targets.iter().all(|(partition, end)| self.applied.next_offset(*partition) >= *end)
    }

    async fn handle(&self, message: &BorrowedMessage<'_>) {
        let (partition, offset) = (message.partition(), message.offset());
        let outcome = match message.payload() {
            Some(payload) => {
                RatingEvent::from_json(payload, self.range).map_err(|error| (error.kind(), error.to_string()))
            }
            None => Err(("no_payload", "the message has no payload".to_string())),
        };
        match outcome {
            Ok(event) => {
                tracing::debug!(partition, offset, %event, "applying");
                let event_type = event.event_type();
                let span = if platform::telemetry::exporting_traces() {
                    let headers = contract::kafka::text_headers(message.headers());
                    platform::trace_context::consumer_span("ratings apply", message.topic(), headers)
                } else {
                    tracing::Span::none()
                };
                self.controller.apply(event).instrument(span).await;
                self.stats.applied.fetch_add(1, Ordering::Relaxed);
                metrics::counter!("rating_events_applied_total", "event_type" => event_type).increment(1);
            }
            Err((kind, reason)) => {
                metrics::counter!("rating_events_dead_lettered_total", "reason" => kind).increment(1);
                self.dead_letter(message, &reason).await
            }
        }
        self.applied.applied(partition, offset);
    }

    async fn dead_letter(&self, message: &BorrowedMessage<'_>, reason: &str) {
        let count = self.stats.dead_lettered.fetch_add(1, Ordering::Relaxed) + 1;
        let (topic, partition, offset) = (message.topic(), message.partition(), message.offset());
        tracing::warn!(
            topic,
            partition,
            offset,
            reason,
            dead_lettered = count,
            "refused event moved to the dead-letter topic"
        );
        let (partition_text, offset_text) = (partition.to_string(), offset.to_string());
        let headers = OwnedHeaders::new()
            .insert(Header { key: DLQ_REASON_HEADER, value: Some(reason) })
            .insert(Header { key: "x-original-topic", value: Some(topic) })
            .insert(Header { key: "x-original-partition", value: Some(&partition_text) })
            .insert(Header { key: "x-original-offset", value: Some(&offset_text) });
        let mut record = FutureRecord::<[u8], [u8]>::to(&self.settings.dlq_topic).headers(headers);
        if let Some(key) = message.key() {
            record = record.key(key);
        }
        if let Some(payload) = message.payload() {
            record = record.payload(payload);
        }
        if let Err((error, _)) = self.dead_letters.send(record, Timeout::After(Duration::from_secs(5))).await {
            tracing::error!(topic, partition, offset, %error, "cannot write to the dead-letter topic; the event stays only in the log above");
        }
    }
}
