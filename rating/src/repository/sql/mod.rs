//! Ratings in a SQL database, SQLite or PostgreSQL: one schema
//! (`rating/migrations/`) and the same steps for both engines. The
//! statements that apply a batch differ in how the batch is passed in, so
//! each engine's are in its own file (`postgres.rs`: four arrays `UNNEST`ed;
//! `sqlite.rs`: one JSON array read with `json_each`); the statements both
//! share are here.
//!
//! A batch is applied as a few set-based statements in one transaction,
//! whatever its size: first the change of each record's sum and count
//! (new value minus the stored one), then the ratings themselves, then the
//! records left without ratings, then the positions in the topic. The
//! positions' rows are locked first (PostgreSQL `FOR UPDATE`; SQLite has
//! one writer), so two replicas that both hold a partition for a moment
//! during a rebalance apply each event once.
use std::collections::HashMap;

use super::{Change, LoggedEvent, Progress, RatingEvent, RepositoryError, net_changes, unapplied};
use crate::model::{AggregatedRating, RecordKey};

/// The statements that apply a batch of changes, read from a row source
/// `b(record_type, record_id, user_id, value)` with one row per (record,
/// user) and a NULL value for a delete; each engine spells its own, as its
/// batch source differs (see `postgres.rs`, `sqlite.rs`).
struct BatchStatements {
    totals: &'static str,
    upsert: &'static str,
    delete: &'static str,
    forget_empty: &'static str,
}

impl BatchStatements {
    /// In the order they must run: the totals read the ratings as they were.
    fn in_order(&self) -> [&'static str; 4] {
        [self.totals, self.upsert, self.delete, self.forget_empty]
    }
}

const AGGREGATE: &str = "SELECT rating_sum, rating_count FROM rating_totals WHERE record_type = $1 AND record_id = $2";
const POSITIONS: &str = "SELECT partition_id, next_offset FROM consumer_offsets WHERE topic = $1";
const ADD_POSITION: &str =
    "INSERT INTO consumer_offsets (topic, partition_id, next_offset) VALUES ($1, $2, 0) ON CONFLICT DO NOTHING";
const SET_POSITION: &str = "UPDATE consumer_offsets SET next_offset = $3 WHERE topic = $1 AND partition_id = $2";

mod postgres;
mod sqlite;

/// The ratings repository over one engine (`Sqlite` or `Postgres`): its
/// type, the engine, the module with its statements and batch encoding, and
/// its doc line. A macro because the two repositories run the same steps
/// with the same sqlx calls, over types sqlx keeps apart per engine.
macro_rules! ratings_over {
    ($(#[$doc:meta])* $name:ident, $engine:ident, $encoding:ident) => {
        // The store is rebuilt from the topic: its positions in the topic
        // commit with the ratings, so a commit a power cut undoes is applied
        // again from the topic.
        sql_store::sql_repository!($(#[$doc])* #[derive(Clone)] $name, $engine, commits = sql_store::Commits::SurviveCrash);

        impl $name {
            fn error(&self, source: sqlx::Error) -> RepositoryError {
                RepositoryError::from_sqlx(&self.name, source)
            }

            /// Applies `events` inside `transaction`.
            async fn apply_in(
                &self,
                transaction: &mut sqlx::Transaction<'_, sqlx::$engine>,
                events: &[&RatingEvent],
            ) -> Result<(), RepositoryError> {
                let changes = net_changes(events.iter().copied());
                if changes.is_empty() {
                    return Ok(());
                }
                let batch = $encoding::encode(&changes);
                for statement in $encoding::STATEMENTS.in_order() {
                    $encoding::bind(statement, &batch).execute(&mut **transaction).await.map_err(|e| self.error(e))?;
                }
                Ok(())
            }
        }

        impl super::RatingRepository for $name {
            async fn apply(&self, events: &[RatingEvent]) -> Result<(), RepositoryError> {
                let mut transaction = self.pool.begin().await.map_err(|e| self.error(e))?;
                self.apply_in(&mut transaction, &events.iter().collect::<Vec<_>>()).await?;
                transaction.commit().await.map_err(|e| self.error(e))
            }

            async fn apply_logged(&self, topic: &str, batch: &[LoggedEvent]) -> Result<Progress, RepositoryError> {
                let mut partitions: Vec<i32> = batch.iter().map(|entry| entry.partition).collect();
                partitions.sort_unstable();
                partitions.dedup();
                let mut transaction = self.pool.begin().await.map_err(|e| self.error(e))?;
                for partition in &partitions {
                    sqlx::query(ADD_POSITION)
                        .bind(topic)
                        .bind(partition)
                        .execute(&mut *transaction)
                        .await
                        .map_err(|e| self.error(e))?;
                }
                let stored: HashMap<i32, i64> = $encoding::lock_positions(topic, &partitions)
                    .fetch_all(&mut *transaction)
                    .await
                    .map_err(|e| self.error(e))?
                    .iter()
                    .map(|row| Ok((sqlx::Row::try_get(row, 0)?, sqlx::Row::try_get(row, 1)?)))
                    .collect::<Result<_, sqlx::Error>>()
                    .map_err(|e| self.error(e))?;
                let (events, positions, skipped) = unapplied(batch, &stored);
                self.apply_in(&mut transaction, &events).await?;
                for &(partition, next) in &positions {
                    if stored.get(&partition) != Some(&next) {
                        sqlx::query(SET_POSITION)
                            .bind(topic)
                            .bind(partition)
                            .bind(next)
                            .execute(&mut *transaction)
                            .await
                            .map_err(|e| self.error(e))?;
                    }
                }
                transaction.commit().await.map_err(|e| self.error(e))?;
                Ok(Progress::counting(&events, skipped, positions))
            }

            async fn positions(&self, topic: &str) -> Result<HashMap<i32, i64>, RepositoryError> {
                let rows: Vec<(i32, i64)> =
                    sqlx::query_as(POSITIONS).bind(topic).fetch_all(&self.pool).await.map_err(|e| self.error(e))?;
                Ok(rows.into_iter().collect())
            }

            async fn aggregate(&self, key: &RecordKey) -> Result<AggregatedRating, RepositoryError> {
                let row: Option<(i64, i64)> = sqlx::query_as(AGGREGATE)
                    .bind(key.record_type.as_str())
                    .bind(key.record_id.as_str())
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(|e| self.error(e))?;
                match row {
                    Some((sum, count)) if count > 0 => {
                        Ok(AggregatedRating { average: sum as f64 / count as f64, count: count as u64 })
                    }
                    _ => Err(RepositoryError::NotFound(key.clone())),
                }
            }
        }
    };
}

ratings_over!(
    /// Ratings in a SQLite file (`--database-url sqlite:PATH`), one per
    /// instance.
    SqliteRepository,
    Sqlite,
    sqlite
);

ratings_over!(
    /// Ratings in a PostgreSQL database (`--database-url postgres://...`),
    /// shared by every replica.
    PostgresRepository,
    Postgres,
    postgres
);

#[async_trait::async_trait]
impl super::SharedPositions for PostgresRepository {
    async fn read(&self, topic: &str) -> Result<HashMap<i32, i64>, RepositoryError> {
        super::RatingRepository::positions(self, topic).await
    }

    /// On a thread of its own, with a runtime and a connection of its own:
    /// the callback runs on a thread of the service's runtime, which cannot
    /// block on itself, and the pool's connections belong to that runtime.
    fn read_blocking(&self, topic: &str) -> Result<HashMap<i32, i64>, RepositoryError> {
        use sqlx::{ConnectOptions, Connection};
        let options = self.pool.connect_options();
        let timeout = self.pool.options().get_acquire_timeout();
        let read = || -> Result<Vec<(i32, i64)>, sqlx::Error> {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            runtime.block_on(async {
                let query = async {
                    let mut connection = options.connect().await?;
                    let rows = sqlx::query_as(POSITIONS).bind(topic).fetch_all(&mut connection).await?;
                    let _ = connection.close().await;
                    Ok(rows)
                };
                tokio::time::timeout(timeout, query).await.unwrap_or(Err(sqlx::Error::PoolTimedOut))
            })
        };
        let rows = std::thread::scope(|scope| scope.spawn(read).join())
            .unwrap_or_else(|_| Err(sqlx::Error::WorkerCrashed))
            .map_err(|e| self.error(e))?;
        Ok(rows.into_iter().collect())
    }
}

#[cfg(test)]
mod tests {
    use sql_store::{Commits, SqlRepository};
    use sqlx::Sqlite;

    use super::*;

    /// A SQLite file of ratings is rebuilt from the topic, so its commits
    /// need not wait for the disk (metadata's do: the default).
    #[test]
    fn sqlite_commits_need_survive_a_crash_only() {
        assert_eq!(<SqliteRepository as SqlRepository<Sqlite>>::COMMITS, Commits::SurviveCrash);
    }
}
