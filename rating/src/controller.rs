//! The rating service's rules, independent of transport: one rating per
//! (record, user), and the average of a record's ratings. Writes go straight
//! into the store, or through an [`EventLog`] that every instance consumes.
use std::{sync::Arc, time::Duration};

use sql_store::QueryError;

use crate::{
    model::{AggregatedRating, RatingEvent, RatingValue, RecordKey, UserId},
    repository::{LoggedEvent, Progress, RatingRepository, RepositoryError},
};

#[derive(Debug, thiserror::Error)]
pub enum RatingError {
    #[error("no ratings for record {0}")]
    NotFound(RecordKey),
    #[error(transparent)]
    Write(#[from] WriteError),
    #[error("the rating store is unavailable")]
    Unavailable(#[source] QueryError),
    #[error("the rating store refused a value")]
    ValueRefused(#[source] QueryError),
    #[error("the rating store failed")]
    Storage(#[source] QueryError),
}

impl From<RepositoryError> for RatingError {
    fn from(error: RepositoryError) -> Self {
        match error {
            RepositoryError::NotFound(key) => RatingError::NotFound(key),
            // A conflict is a transaction to run again: the caller may retry.
            RepositoryError::Database(error @ (QueryError::Unavailable { .. } | QueryError::Conflict { .. })) => {
                RatingError::Unavailable(error)
            }
            RepositoryError::Database(error @ QueryError::ValueRefused { .. }) => RatingError::ValueRefused(error),
            RepositoryError::Database(error @ QueryError::Failed { .. }) => RatingError::Storage(error),
        }
    }
}

/// Where PutRating and DeleteRating go when they do not go straight into
/// this instance's store: a log of events that every instance applies
/// (the ratings topic; see `event_log::writer`).
#[async_trait::async_trait]
pub trait EventLog: Send + Sync + 'static {
    /// Appends `event` and returns once this instance has applied it.
    async fn append(&self, event: &RatingEvent) -> Result<(), WriteError>;
}

/// Why a write through the event log did not complete.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error("the ratings topic did not accept the event")]
    Unavailable(#[source] Box<dyn std::error::Error + Send + Sync>),
    #[error("the event was not acknowledged by the broker within {0:?}")]
    NotAcknowledged(Duration),
    #[error("the event was stored in the topic but not applied here within {0:?}")]
    NotApplied(Duration),
}

pub struct RatingController<R> {
    repository: R,
    /// `None`: writes go straight to `repository`.
    event_log: Option<Arc<dyn EventLog>>,
}

impl<R: RatingRepository> RatingController<R> {
    /// A controller whose writes go straight to `repository`.
    pub fn new(repository: R) -> Self {
        Self { repository, event_log: None }
    }

    /// A controller whose writes go through `event_log`, and reach
    /// `repository` when the event is applied.
    pub fn with_event_log(repository: R, event_log: Arc<dyn EventLog>) -> Self {
        Self { repository, event_log: Some(event_log) }
    }

    pub async fn aggregated(&self, key: &RecordKey) -> Result<AggregatedRating, RatingError> {
        Ok(self.repository.aggregate(key).await?)
    }

    /// Records `user`'s rating of a record, replacing their earlier one.
    pub async fn put(&self, key: RecordKey, user: UserId, value: RatingValue) -> Result<(), RatingError> {
        self.write(RatingEvent::Put { key, user, value }).await
    }

    /// Removes `user`'s rating of a record. Removing a rating that does not
    /// exist succeeds, so a retried delete is harmless.
    pub async fn delete(&self, key: RecordKey, user: UserId) -> Result<(), RatingError> {
        self.write(RatingEvent::Delete { key, user }).await
    }

    async fn write(&self, event: RatingEvent) -> Result<(), RatingError> {
        match &self.event_log {
            None => Ok(self.repository.apply(std::slice::from_ref(&event)).await?),
            Some(event_log) => Ok(event_log.append(&event).await?),
        }
    }

    /// Applies a batch read from `topic` to the store, skipping what the
    /// store has applied before. Applying the same batch again changes
    /// nothing.
    pub async fn ingest(&self, topic: &str, batch: &[LoggedEvent]) -> Result<Progress, RepositoryError> {
        self.repository.apply_logged(topic, batch).await
    }

    /// The next offset to apply of each partition of `topic`, as stored.
    pub async fn positions(&self, topic: &str) -> Result<std::collections::HashMap<i32, i64>, RepositoryError> {
        self.repository.positions(topic).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        model::test_values::{key, user, value},
        repository::memory::MemoryRepository,
    };

    #[tokio::test]
    async fn a_record_without_ratings_is_not_found() {
        let controller = RatingController::new(MemoryRepository::default());
        assert!(
            matches!(controller.aggregated(&key("1")).await, Err(RatingError::NotFound(missing)) if missing == key("1"))
        );
    }

    #[tokio::test]
    async fn the_average_counts_each_user_once() {
        let controller = RatingController::new(MemoryRepository::default());
        controller.put(key("1"), user("alice"), value(5)).await.unwrap();
        controller.put(key("1"), user("bob"), value(2)).await.unwrap();
        controller.put(key("2"), user("alice"), value(1)).await.unwrap();
        assert_eq!(controller.aggregated(&key("1")).await.unwrap(), AggregatedRating { average: 3.5, count: 2 });

        // alice changes her mind: her rating is replaced, not added.
        controller.put(key("1"), user("alice"), value(3)).await.unwrap();
        assert_eq!(controller.aggregated(&key("1")).await.unwrap(), AggregatedRating { average: 2.5, count: 2 });

        // The same put delivered twice changes nothing.
        controller.put(key("1"), user("alice"), value(3)).await.unwrap();
        assert_eq!(controller.aggregated(&key("1")).await.unwrap(), AggregatedRating { average: 2.5, count: 2 });
        assert_eq!(controller.aggregated(&key("2")).await.unwrap().average, 1.0);
    }

    #[tokio::test]
    async fn deletes_remove_one_users_rating_and_are_idempotent() {
        let controller = RatingController::new(MemoryRepository::default());
        controller.put(key("1"), user("alice"), value(5)).await.unwrap();
        controller.put(key("1"), user("bob"), value(1)).await.unwrap();
        controller.delete(key("1"), user("bob")).await.unwrap();
        controller.delete(key("1"), user("bob")).await.unwrap();
        controller.delete(key("1"), user("nobody")).await.unwrap();
        assert_eq!(controller.aggregated(&key("1")).await.unwrap(), AggregatedRating { average: 5.0, count: 1 });
        controller.delete(key("1"), user("alice")).await.unwrap();
        assert!(
            matches!(controller.aggregated(&key("1")).await, Err(RatingError::NotFound(missing)) if missing == key("1"))
        );
    }
}
