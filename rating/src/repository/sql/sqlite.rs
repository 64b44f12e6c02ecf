//! The statements and batch encoding of ratings in SQLite: a batch is one
//! JSON array of `[record_type, record_id, user_id, value]` rows, read with
//! `json_each`.
use sqlx::{Sqlite, query::Query, sqlite::SqliteArguments};

use super::{BatchStatements, Change, POSITIONS};

pub(super) const STATEMENTS: BatchStatements = BatchStatements {
    totals: "INSERT INTO rating_totals (record_type, record_id, rating_sum, rating_count) \
         SELECT b.record_type, b.record_id, \
                SUM(COALESCE(b.value, 0) - COALESCE(r.value, 0)), \
                SUM(CASE WHEN b.value IS NULL THEN 0 ELSE 1 END - CASE WHEN r.value IS NULL THEN 0 ELSE 1 END) \
         FROM (SELECT value ->> 0 AS record_type, value ->> 1 AS record_id, value ->> 2 AS user_id, value ->> 3 AS value \
               FROM json_each($1)) AS b \
         LEFT JOIN ratings AS r \
           ON r.record_type = b.record_type AND r.record_id = b.record_id AND r.user_id = b.user_id \
         WHERE true \
         GROUP BY b.record_type, b.record_id \
         ORDER BY b.record_type, b.record_id \
         ON CONFLICT (record_type, record_id) DO UPDATE SET \
           rating_sum = rating_totals.rating_sum + excluded.rating_sum, \
           rating_count = rating_totals.rating_count + excluded.rating_count",
    upsert: "INSERT INTO ratings (record_type, record_id, user_id, value) \
         SELECT b.record_type, b.record_id, b.user_id, b.value \
         FROM (SELECT value ->> 0 AS record_type, value ->> 1 AS record_id, value ->> 2 AS user_id, value ->> 3 AS value \
               FROM json_each($1)) AS b \
         WHERE b.value IS NOT NULL \
         ON CONFLICT (record_type, record_id, user_id) DO UPDATE SET value = excluded.value",
    delete: "DELETE FROM ratings WHERE (record_type, record_id, user_id) IN \
         (SELECT b.record_type, b.record_id, b.user_id \
          FROM (SELECT value ->> 0 AS record_type, value ->> 1 AS record_id, value ->> 2 AS user_id, value ->> 3 AS value \
                FROM json_each($1)) AS b \
          WHERE b.value IS NULL)",
    forget_empty: "DELETE FROM rating_totals WHERE rating_count = 0 AND (record_type, record_id) IN \
         (SELECT b.record_type, b.record_id \
          FROM (SELECT value ->> 0 AS record_type, value ->> 1 AS record_id, value ->> 2 AS user_id, value ->> 3 AS value \
                FROM json_each($1)) AS b)",
};

/// The changes as one JSON array of `[record_type, record_id, user_id, value]`.
pub(super) type Batch = String;

pub(super) fn encode(changes: &[Change<'_>]) -> Batch {
    let rows: Vec<serde_json::Value> = changes
        .iter()
        .map(|change| {
            serde_json::json!([
                change.key.record_type.as_str(),
                change.key.record_id.as_str(),
                change.user.as_str(),
                change.value
            ])
        })
        .collect();
    serde_json::Value::Array(rows).to_string()
}

pub(super) fn bind<'q>(statement: &'q str, batch: &'q Batch) -> Query<'q, Sqlite, SqliteArguments<'q>> {
    sqlx::query(statement).bind(batch.as_str())
}

/// SQLite has a single writer: the transaction's first write locks the
/// file, and no other process writes this instance's file.
pub(super) fn lock_positions<'q>(topic: &'q str, _partitions: &'q [i32]) -> Query<'q, Sqlite, SqliteArguments<'q>> {
    sqlx::query(POSITIONS).bind(topic)
}
