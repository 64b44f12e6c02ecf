//! Creates the ratings topic and its dead-letter topic when they are missing,
//! both with the same settings: `partitions` partitions, and every event kept
//! forever (`retention.ms=-1`, `retention.bytes=-1`), since each rating
//! instance rebuilds its store by replaying the topic from the beginning and
//! a dead letter is evidence worth keeping. The compose stack creates the
//! same topics with the same settings before the services start (its
//! `kafka-topics` job), so there this finds them in place.
use std::time::Duration;

use rdkafka::{
    admin::{AdminClient, AdminOptions, NewTopic, TopicReplication},
    client::DefaultClientContext,
    error::KafkaError,
    types::RDKafkaErrorCode,
};

use super::EventLogSettings;

/// The configuration of both topics.
pub const TOPIC_CONFIG: [(&str, &str); 2] = [("retention.ms", "-1"), ("retention.bytes", "-1")];

/// Creates `settings.topic` and `settings.dlq_topic` unless they exist.
pub async fn ensure_topics(settings: &EventLogSettings) -> Result<(), KafkaError> {
    let admin: AdminClient<DefaultClientContext> = settings.client_config().create()?;
    let topics: Vec<NewTopic> = [&settings.topic, &settings.dlq_topic]
        .into_iter()
        .map(|name| {
            TOPIC_CONFIG.iter().fold(
                NewTopic::new(name, settings.partitions, TopicReplication::Fixed(settings.replication)),
                |topic, (key, value)| topic.set(key, value),
            )
        })
        .collect();
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    for result in admin.create_topics(&topics, &options).await? {
        match result {
            Ok(topic) => tracing::info!(%topic, partitions = settings.partitions, "topic created"),
            Err((topic, RDKafkaErrorCode::TopicAlreadyExists)) => tracing::debug!(%topic, "topic exists"),
            Err((topic, code)) => {
                tracing::warn!(%topic, error = %code, "cannot create topic");
                return Err(KafkaError::AdminOp(code));
            }
        }
    }
    Ok(())
}
