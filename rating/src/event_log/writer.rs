//! The write path of PutRating/DeleteRating when Kafka is configured: the
//! event is appended to the ratings topic (idempotent producer, acks=all),
//! and the call returns once this instance's consumer has applied it, so a
//! client reads its own write here and every other instance gets the same
//! event.
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
};

pub struct KafkaEventLog {
    producer: FutureProducer,
    topic: String,
    applied: Arc<AppliedOffsets>,
    timeout: Duration,
}

impl KafkaEventLog {
    /// `producer` should come from [`EventLogSettings::producer`].
    pub fn new(producer: FutureProducer, settings: &EventLogSettings, applied: Arc<AppliedOffsets>) -> Self {
        Self { producer, topic: settings.topic.clone(), applied, timeout: settings.write_timeout }
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
        let trace = platform::trace_context::current_headers();
        let mut record = FutureRecord::to(&self.topic).key(&key).payload(&payload);
        if let Some(headers) = contract::kafka::headers(&trace) {
            record = record.headers(headers);
        }
        let delivery = tokio::time::timeout_at(deadline, self.producer.send(record, Timeout::After(self.timeout)))
            .await
            .map_err(|_| WriteError::NotAcknowledged(self.timeout))?
            .map_err(|(error, _)| WriteError::Unavailable(error.into()))?;
        let remaining = deadline.saturating_duration_since(Instant::now());
        tracing::debug!(
            partition = delivery.partition,
            offset = delivery.offset,
            "event acknowledged; waiting until applied"
        );
        if self.applied.wait_for(delivery.partition, delivery.offset, remaining).await {
            Ok(())
        } else {
            Err(WriteError::NotApplied(self.timeout))
        }
    }
}
