//! The write path of PutRating/DeleteRating when Kafka is configured: the
//! event goes to the ratings topic (idempotent producer, acks=all), and the
//! call returns once this instance's ingester has applied it, so a client
//! reads its own write here and every other instance gets the same event.
use std::{sync::Arc, time::Duration};

use rdkafka::{
    producer::{FutureProducer, FutureRecord},
    util::Timeout,
};
use tokio::time::Instant;

use super::{AppliedOffsets, KafkaSettings};
use crate::event::RatingEvent;

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum PublishError {
    #[error("the ratings topic did not accept the event: {0}")]
    Broker(String),
    #[error("the event was not acknowledged by the broker within {0:?}")]
    NotAcknowledged(Duration),
    #[error("the event was stored in the topic but not applied here within {0:?}")]
    NotApplied(Duration),
}

pub struct EventPublisher {
    producer: FutureProducer,
    topic: String,
    applied: Arc<AppliedOffsets>,
    timeout: Duration,
}

impl EventPublisher {
    /// `producer` should come from [`KafkaSettings::producer`].
    pub fn new(producer: FutureProducer, settings: &KafkaSettings, applied: Arc<AppliedOffsets>) -> Self {
        Self { producer, topic: settings.topic.clone(), applied, timeout: settings.write_timeout }
    }

    /// Publishes `event`, waits for the broker's acknowledgement, then for
    /// this instance to have applied it; all within the write timeout.
    pub async fn publish(&self, event: &RatingEvent) -> Result<(), PublishError> {
        let deadline = Instant::now() + self.timeout;
        let key = event.kafka_key();
        let payload = event.to_json();
        let record = FutureRecord::to(&self.topic).key(&key).payload(&payload);
        let delivery = tokio::time::timeout_at(deadline, self.producer.send(record, Timeout::After(self.timeout)))
            .await
            .map_err(|_| PublishError::NotAcknowledged(self.timeout))?
            .map_err(|(error, _)| PublishError::Broker(error.to_string()))?;
        let remaining = deadline.saturating_duration_since(Instant::now());
        tracing::debug!(
            partition = delivery.partition,
            offset = delivery.offset,
            "event acknowledged; waiting until applied"
        );
        if self.applied.wait_for(delivery.partition, delivery.offset, remaining).await {
            Ok(())
        } else {
            Err(PublishError::NotApplied(self.timeout))
        }
    }
}
