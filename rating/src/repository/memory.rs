//! An in-memory rating store. Each record keeps its ratings by user and a
//! running sum, so an average costs O(1) and an update touches one record
//! under that record's shard lock only. Its positions in the topic live as
//! long as the process, as the ratings do.
use std::{collections::HashMap, sync::Mutex};

use dashmap::{DashMap, Entry};

use super::{LoggedEvent, Progress, RatingRepository, RepositoryError, unapplied};
use crate::model::{AggregatedRating, RatingEvent, RatingValue, RecordKey, UserId};

#[derive(Debug, Default)]
pub struct MemoryRepository {
    records: DashMap<RecordKey, RecordRatings>,
    /// The next offset to apply per (topic, partition). Held while a batch
    /// is applied, so batches of the same store apply one at a time.
    positions: Mutex<HashMap<String, HashMap<i32, i64>>>,
}

#[derive(Debug, Default)]
struct RecordRatings {
    by_user: HashMap<UserId, i32>,
    sum: i64,
}

impl MemoryRepository {
    /// How many records have at least one rating.
    pub fn record_count(&self) -> usize {
        self.records.len()
    }
}

impl MemoryRepository {
    fn put(&self, key: &RecordKey, user: &UserId, value: RatingValue) {
        let mut record = self.records.entry(key.clone()).or_default();
        let value = value.get();
        let previous = record.by_user.insert(user.clone(), value);
        record.sum += i64::from(value) - previous.map_or(0, i64::from);
    }

    fn delete(&self, key: &RecordKey, user: &UserId) {
        let Entry::Occupied(mut record) = self.records.entry(key.clone()) else {
            return;
        };
        let Some(previous) = record.get_mut().by_user.remove(user) else {
            return;
        };
        record.get_mut().sum -= i64::from(previous);
        if record.get().by_user.is_empty() {
            record.remove();
        }
    }

    fn apply_one(&self, event: &RatingEvent) {
        match event {
            RatingEvent::Put { key, user, value } => self.put(key, user, *value),
            RatingEvent::Delete { key, user } => self.delete(key, user),
        }
    }
}

impl RatingRepository for MemoryRepository {
    async fn apply(&self, events: &[RatingEvent]) -> Result<(), RepositoryError> {
        events.iter().for_each(|event| self.apply_one(event));
        Ok(())
    }

    async fn apply_logged(&self, topic: &str, batch: &[LoggedEvent]) -> Result<Progress, RepositoryError> {
        let mut positions = self.positions.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let stored = positions.entry(topic.to_string()).or_default();
        let (events, next, skipped) = unapplied(batch, stored);
        events.iter().for_each(|event| self.apply_one(event));
        stored.extend(next.iter().copied());
        Ok(Progress::counting(&events, skipped, next))
    }

    async fn positions(&self, topic: &str) -> Result<HashMap<i32, i64>, RepositoryError> {
        let positions = self.positions.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        Ok(positions.get(topic).cloned().unwrap_or_default())
    }

    async fn aggregate(&self, key: &RecordKey) -> Result<AggregatedRating, RepositoryError> {
        let record = self.records.get(key).ok_or_else(|| RepositoryError::NotFound(key.clone()))?;
        let count = record.by_user.len() as u64;
        Ok(AggregatedRating { average: record.sum as f64 / count as f64, count })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::model::test_values::{key, user, value};

    #[tokio::test]
    async fn deleting_the_last_rating_forgets_the_record() {
        let repository = MemoryRepository::default();
        repository.put(&key("1"), &user("a"), value(4));
        repository.delete(&key("1"), &user("a"));
        repository.delete(&key("1"), &user("a"));
        assert!(matches!(repository.aggregate(&key("1")).await, Err(RepositoryError::NotFound(_))));
        assert_eq!(repository.record_count(), 0);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_writers_keep_one_rating_per_user_and_an_exact_sum() {
        let repository = Arc::new(MemoryRepository::default());
        let mut tasks = Vec::new();
        for writer in 0..8 {
            let repository = repository.clone();
            tasks.push(tokio::spawn(async move {
                for round in 0..500 {
                    // 100 users, each rewritten many times by several writers;
                    // the last round of every writer writes 10 for every user.
                    let v = if round >= 400 { 10 } else { 1 + (round + writer) % 9 };
                    repository.put(&key("1"), &user(&format!("u{}", round % 100)), value(v));
                }
            }));
        }
        for task in tasks {
            task.await.unwrap();
        }
        let aggregate = repository.aggregate(&key("1")).await.unwrap();
        assert_eq!(aggregate.count, 100);
        assert_eq!(aggregate.average, 10.0);
    }
}
