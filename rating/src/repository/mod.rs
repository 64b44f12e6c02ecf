//! Where ratings are stored, behind [`RatingRepository`]: one rating per
//! (record, user), so a user who rates again replaces their rating, and a
//! replayed write changes nothing. [`Store`] is whichever store
//! `--database-url` names: memory, a SQLite file, or PostgreSQL.
//!
//! Events from the ratings topic are applied in batches
//! ([`RatingRepository::apply_logged`]): each batch, and the position in the
//! topic it brings each partition to, in one step (one transaction in SQL).
//! An event before its partition's stored position was applied already
//! (by this instance before a restart, or by another replica) and is
//! skipped, so applying is exactly-once in effect.
pub mod memory;
pub mod sql;

use std::{collections::HashMap, future::Future, sync::Arc};

use sql_store::QueryError;

use crate::model::{AggregatedRating, RatingEvent, RecordKey, UserId};

/// The schema of the SQL stores, embedded; the same SQL serves SQLite and
/// PostgreSQL.
pub static MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

#[derive(Debug, thiserror::Error)]
pub enum RepositoryError {
    #[error("no ratings for record {0}")]
    NotFound(RecordKey),
    #[error(transparent)]
    Database(#[from] QueryError),
}

impl RepositoryError {
    pub fn from_sqlx(database: &str, source: sqlx::Error) -> Self {
        Self::Database(QueryError::from_sqlx(database, source))
    }

    /// Whether waiting may help: the database is down or busy.
    pub fn is_unavailable(&self) -> bool {
        matches!(self, Self::Database(error) if error.is_unavailable())
    }

    /// A deadlock or serialization failure with a concurrent transaction
    /// (another replica's batch): the same batch can be applied again.
    pub fn is_conflict(&self) -> bool {
        matches!(self, Self::Database(error) if error.is_conflict())
    }
}

/// An event read from the topic at `offset` of `partition`. `None` when it
/// was refused (and dead-lettered): only its position counts.
#[derive(Debug, Clone)]
pub struct LoggedEvent {
    pub partition: i32,
    pub offset: i64,
    pub event: Option<RatingEvent>,
}

/// What applying a batch did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Progress {
    /// Puts applied now.
    pub puts: u64,
    /// Deletes applied now.
    pub deletes: u64,
    /// Events (or refused messages) skipped because they were behind their
    /// partition's stored position: applied before.
    pub skipped: u64,
    /// The next offset to apply of each partition the batch touched, as now
    /// stored.
    pub positions: Vec<(i32, i64)>,
}

impl Progress {
    pub(crate) fn counting(applied: &[&RatingEvent], skipped: u64, positions: Vec<(i32, i64)>) -> Self {
        let puts = applied.iter().filter(|event| matches!(event, RatingEvent::Put { .. })).count() as u64;
        Self { puts, deletes: applied.len() as u64 - puts, skipped, positions }
    }
}

pub trait RatingRepository: Send + Sync + 'static {
    /// Applies `events` in order, written straight to this store (no event
    /// log), in one step.
    fn apply(&self, events: &[RatingEvent]) -> impl Future<Output = Result<(), RepositoryError>> + Send;

    /// Applies the events of `topic` in `batch` (in offset order within each
    /// partition) that are not behind their partition's stored position, and
    /// stores each touched partition's new position, all in one step.
    fn apply_logged(
        &self,
        topic: &str,
        batch: &[LoggedEvent],
    ) -> impl Future<Output = Result<Progress, RepositoryError>> + Send;

    /// The next offset to apply of each partition of `topic` this store has
    /// a position for.
    fn positions(&self, topic: &str) -> impl Future<Output = Result<HashMap<i32, i64>, RepositoryError>> + Send;

    /// The average of a record's ratings; `NotFound` when it has none.
    fn aggregate(&self, key: &RecordKey) -> impl Future<Output = Result<AggregatedRating, RepositoryError>> + Send;
}

/// The part of `batch` still to apply given the stored `positions`: the
/// events in order, each partition's new position, and how many entries
/// were skipped as applied before.
pub(crate) fn unapplied<'a>(
    batch: &'a [LoggedEvent],
    positions: &HashMap<i32, i64>,
) -> (Vec<&'a RatingEvent>, Vec<(i32, i64)>, u64) {
    let mut events = Vec::with_capacity(batch.len());
    let mut next: HashMap<i32, i64> = HashMap::new();
    let mut skipped = 0;
    for entry in batch {
        let stored = positions.get(&entry.partition).copied().unwrap_or(0);
        let position = next.entry(entry.partition).or_insert(stored);
        if entry.offset < *position {
            skipped += 1;
            continue;
        }
        *position = entry.offset + 1;
        events.extend(entry.event.as_ref());
    }
    let mut next: Vec<(i32, i64)> = next.into_iter().collect();
    next.sort_unstable();
    (events, next, skipped)
}

/// One rating's final state after a sequence of events: `Some(value)` after
/// a put, `None` after a delete.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Change<'a> {
    pub key: &'a RecordKey,
    pub user: &'a UserId,
    pub value: Option<i32>,
}

/// `events` reduced to the last event per (record, user), which is all a
/// store needs to reach the same state as applying each in turn.
pub(crate) fn net_changes<'a>(events: impl IntoIterator<Item = &'a RatingEvent>) -> Vec<Change<'a>> {
    let mut index: HashMap<(&RecordKey, &UserId), usize> = HashMap::new();
    let mut changes: Vec<Change<'a>> = Vec::new();
    for event in events {
        let (key, user, value) = match event {
            RatingEvent::Put { key, user, value } => (key, user, Some(value.get())),
            RatingEvent::Delete { key, user } => (key, user, None),
        };
        match index.get(&(key, user)) {
            Some(&at) => changes[at].value = value,
            None => {
                index.insert((key, user), changes.len());
                changes.push(Change { key, user, value });
            }
        }
    }
    changes
}

/// The store `--database-url` names; [`Sharing::of`] says whether the
/// replicas share it.
pub type Store = sql_store::Store<memory::MemoryRepository, sql::SqliteRepository, sql::PostgresRepository>;

/// Whether the replicas of the service share their store, as the store
/// decides it and the event log needs to know it: the one place it is said.
#[derive(Clone)]
pub enum Sharing {
    /// This instance's own store in memory: it replays the whole topic at
    /// every start.
    OwnInMemory,
    /// This instance's own SQLite file: it resumes where the file stopped.
    OwnFile,
    /// One PostgreSQL database for every replica: its positions say what any
    /// of them applied, so a replica has nothing to catch up with.
    Shared(Arc<dyn SharedPositions>),
}

impl Sharing {
    pub fn of(store: &Store) -> Self {
        match store {
            Store::Memory(_) => Self::OwnInMemory,
            Store::Sqlite(_) => Self::OwnFile,
            Store::Postgres(repository) => Self::Shared(Arc::new(repository.clone())),
        }
    }

    /// The store the replicas share, if they share one.
    pub fn shared(&self) -> Option<Arc<dyn SharedPositions>> {
        match self {
            Self::Shared(store) => Some(store.clone()),
            Self::OwnInMemory | Self::OwnFile => None,
        }
    }
}

/// The positions of a store the replicas share, read by any of them.
#[async_trait::async_trait]
pub trait SharedPositions: Send + Sync {
    /// The next offset to apply of each partition of `topic`.
    async fn read(&self, topic: &str) -> Result<HashMap<i32, i64>, RepositoryError>;

    /// The same, for code that cannot await: librdkafka's rebalance
    /// callback, which runs inside a poll.
    fn read_blocking(&self, topic: &str) -> Result<HashMap<i32, i64>, RepositoryError>;
}

impl RatingRepository for Store {
    async fn apply(&self, events: &[RatingEvent]) -> Result<(), RepositoryError> {
        sql_store::dispatch_store!(self, repository => repository.apply(events).await)
    }

    async fn apply_logged(&self, topic: &str, batch: &[LoggedEvent]) -> Result<Progress, RepositoryError> {
        sql_store::dispatch_store!(self, repository => repository.apply_logged(topic, batch).await)
    }

    async fn positions(&self, topic: &str) -> Result<HashMap<i32, i64>, RepositoryError> {
        sql_store::dispatch_store!(self, repository => repository.positions(topic).await)
    }

    async fn aggregate(&self, key: &RecordKey) -> Result<AggregatedRating, RepositoryError> {
        sql_store::dispatch_store!(self, repository => repository.aggregate(key).await)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::test_values::{key, user, value};

    fn put(id: &str, who: &str, v: i32) -> RatingEvent {
        RatingEvent::Put { key: key(id), user: user(who), value: value(v) }
    }

    fn delete(id: &str, who: &str) -> RatingEvent {
        RatingEvent::Delete { key: key(id), user: user(who) }
    }

    fn logged(partition: i32, offset: i64, event: Option<RatingEvent>) -> LoggedEvent {
        LoggedEvent { partition, offset, event }
    }

    #[test]
    fn entries_behind_the_stored_position_are_skipped() {
        let batch = [
            logged(0, 4, Some(put("1", "a", 1))),
            logged(0, 5, Some(put("1", "b", 2))),
            logged(1, 0, None),
            logged(1, 1, Some(put("2", "a", 3))),
            logged(0, 6, Some(put("1", "c", 4))),
        ];
        let stored = HashMap::from([(0, 6)]);
        let (events, positions, skipped) = unapplied(&batch, &stored);
        assert_eq!(events, vec![&put("2", "a", 3), &put("1", "c", 4)]);
        assert_eq!(positions, vec![(0, 7), (1, 2)]);
        assert_eq!(skipped, 2);

        // A batch wholly behind leaves the positions where they are.
        let (events, positions, skipped) = unapplied(&batch[..2], &stored);
        assert!(events.is_empty());
        assert_eq!((positions, skipped), (vec![(0, 6)], 2));
    }

    #[test]
    fn the_last_event_per_record_and_user_wins() {
        let events = [put("1", "a", 1), put("1", "b", 2), delete("1", "a"), put("2", "a", 5), put("1", "b", 7)];
        let changes = net_changes(&events);
        let (one, two) = (key("1"), key("2"));
        let (a, b) = (user("a"), user("b"));
        assert_eq!(
            changes,
            vec![
                Change { key: &one, user: &a, value: None },
                Change { key: &one, user: &b, value: Some(7) },
                Change { key: &two, user: &a, value: Some(5) },
            ]
        );
    }
}
