//! Creates the ratings topic and its dead-letter topic when they are missing.
//!
//! The ratings topic keeps every event forever (`retention.ms=-1`,
//! `retention.bytes=-1`): each rating instance rebuilds its in-memory store
//! by replaying it from the beginning, so nothing may ever expire from it.
use std::time::Duration;

use rdkafka::{
    admin::{AdminClient, AdminOptions, NewTopic, TopicReplication},
    client::DefaultClientContext,
    error::KafkaError,
    types::RDKafkaErrorCode,
};

use super::KafkaSettings;

/// Creates `settings.topic` and `settings.dlq_topic` unless they exist.
pub async fn ensure_topics(settings: &KafkaSettings) -> Result<(), KafkaError> {
    let admin: AdminClient<DefaultClientContext> = settings.client_config().create()?;
    let partitions = settings.partitions;
    let topics = [
        NewTopic::new(&settings.topic, partitions, TopicReplication::Fixed(settings.replication))
            .set("retention.ms", "-1")
            .set("retention.bytes", "-1"),
        NewTopic::new(&settings.dlq_topic, 1, TopicReplication::Fixed(settings.replication)).set("retention.ms", "-1"),
    ];
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    for result in admin.create_topics(&topics, &options).await? {
        match result {
            Ok(topic) => tracing::info!(%topic, "topic created"),
            Err((topic, RDKafkaErrorCode::TopicAlreadyExists)) => tracing::debug!(%topic, "topic exists"),
            Err((topic, code)) => {
                tracing::warn!(%topic, error = %code, "cannot create topic");
                return Err(KafkaError::AdminOp(code));
            }
        }
    }
    Ok(())
}
