//! The write path of PutRating/DeleteRating when Kafka is configured: the
//! event is appended to the ratings topic (idempotent producer, acks=all),
//! and the call returns once the event is in the store, so a client reads
//! its own write here: applied by this instance's consumer, or, with a
//! shared PostgreSQL store, by whichever replica holds the event's
//! partition (its position in the database says so). Every other instance
//! gets the same event.
use std::{sync::Arc, time::Duration};

use rdkafka::{
    producer::{FutureProducer, FutureRecord},
    util::Timeout,
};
use tokio::time::Instant;

use super::{AppliedOffsets, EventLogSettings};
use crate::{
    controller::{EventLog, WriteError},
    model::RatingEvent,
    repository::SharedPositions,
};

/// How often a write that another replica applies looks at the shared
/// store's positions.
const SHARED_POLL: Duration = Duration::from_millis(5);

pub struct KafkaEventLog {
    producer: FutureProducer,
    topic: String,
    applied: Arc<AppliedOffsets>,
    /// The store shared with the other replicas, if any.
    shared: Option<Arc<dyn SharedPositions>>,
    timeout: Duration,
}

impl KafkaEventLog {
    /// `producer` should come from [`EventLogSettings::producer`]; `shared`
    /// is the store when replicas share one ([`crate::repository::Sharing::shared`]).
    pub fn new(
        producer: FutureProducer,
        settings: &EventLogSettings,
        applied: Arc<AppliedOffsets>,
        shared: Option<Arc<dyn SharedPositions>>,
    ) -> Self {
        Self { producer, topic: settings.topic.clone(), applied, shared, timeout: settings.write_timeout }
    }

    /// Waits until the event at `offset` of `partition` is in the store;
    /// false when `deadline` passes first.
    async fn wait_until_applied(&self, partition: i32, offset: i64, deadline: Instant) -> bool {
        let Some(shared) = &self.shared else {
            let remaining = deadline.saturating_duration_since(Instant::now());
            return self.applied.wait_for(partition, offset, remaining).await;
        };
        loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            if self.applied.wait_for(partition, offset, remaining.min(SHARED_POLL)).await {
                return true;
            }
            match shared.read(&self.topic).await {
                Ok(positions) if positions.get(&partition).is_some_and(|next| *next > offset) => return true,
                Ok(_) => {}
                Err(error) => tracing::debug!(%error, "cannot read the shared positions yet"),
            }
            if Instant::now() >= deadline {
                return false;
            }
        }
    }
}

#[async_trait::async_trait]
impl EventLog for KafkaEventLog {
    /// Publishes `event`, waits for the broker's acknowledgement, then for
    /// this instance to have applied it; all within the write timeout. Each
    /// write is counted by outcome (`rating_writes_total`).
    async fn append(&self, event: &RatingEvent) -> Result<(), WriteError> {
        let result = self.publish_and_wait(event).await;
        let outcome = match &result {
            Ok(()) => "ok",
            Err(WriteError::Unavailable(_)) => "unavailable",
            Err(WriteError::NotAcknowledged(_)) => "not_acknowledged",
            Err(WriteError::NotApplied(_)) => "not_applied",
        };
        metrics::counter!("rating_writes_total", "outcome" => outcome).increment(1);
        result
    }
}

impl KafkaEventLog {
    async fn publish_and_wait(&self, event: &RatingEvent) -> Result<(), WriteError> {
        let deadline = Instant::now() + self.timeout;
        let key = event.kafka_key();
        let payload = event.to_json();
        // The trace of the PutRating/DeleteRating call travels with the event.
        let trace = telemetry::trace_context::current_headers();
        let mut record = FutureRecord::to(&self.topic).key(&key).payload(&payload);
        if let Some(headers) = contract::kafka::headers(&trace) {
            record = record.headers(headers);
        }
        let delivery = tokio::time::timeout_at(deadline, self.producer.send(record, Timeout::After(self.timeout)))
            .await
            .map_err(|_| WriteError::NotAcknowledged(self.timeout))?
            .map_err(|(error, _)| WriteError::Unavailable(error.into()))?;
        tracing::debug!(
            partition = delivery.partition,
            offset = delivery.offset,
            "event acknowledged; waiting until applied"
        );
        if self.wait_until_applied(delivery.partition, delivery.offset, deadline).await {
            Ok(())
        } else {
            Err(WriteError::NotApplied(self.timeout))
        }
    }
}
