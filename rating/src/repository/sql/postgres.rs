//! The statements and batch encoding of ratings in PostgreSQL: a batch is
//! four arrays `UNNEST`ed into rows.
use sqlx::{Postgres, postgres::PgArguments, query::Query};

use super::{BatchStatements, Change};

pub(super) const STATEMENTS: BatchStatements = BatchStatements {
    totals: "INSERT INTO rating_totals (record_type, record_id, rating_sum, rating_count) \
         SELECT b.record_type, b.record_id, \
                SUM(COALESCE(b.value, 0) - COALESCE(r.value, 0)), \
                SUM(CASE WHEN b.value IS NULL THEN 0 ELSE 1 END - CASE WHEN r.value IS NULL THEN 0 ELSE 1 END) \
         FROM UNNEST($1::text[], $2::text[], $3::text[], $4::int4[]) AS b(record_type, record_id, user_id, value) \
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
         FROM UNNEST($1::text[], $2::text[], $3::text[], $4::int4[]) AS b(record_type, record_id, user_id, value) \
         WHERE b.value IS NOT NULL \
         ON CONFLICT (record_type, record_id, user_id) DO UPDATE SET value = excluded.value",
    delete: "DELETE FROM ratings WHERE (record_type, record_id, user_id) IN \
         (SELECT b.record_type, b.record_id, b.user_id \
          FROM UNNEST($1::text[], $2::text[], $3::text[], $4::int4[]) AS b(record_type, record_id, user_id, value) \
          WHERE b.value IS NULL)",
    forget_empty: "DELETE FROM rating_totals WHERE rating_count = 0 AND (record_type, record_id) IN \
         (SELECT b.record_type, b.record_id \
          FROM UNNEST($1::text[], $2::text[], $3::text[], $4::int4[]) AS b(record_type, record_id, user_id, value))",
};

/// The positions of the batch's partitions, locked until the transaction
/// ends.
const LOCK_POSITIONS: &str = "SELECT partition_id, next_offset FROM consumer_offsets \
     WHERE topic = $1 AND partition_id = ANY($2) ORDER BY partition_id FOR UPDATE";

/// The changes as the four columns of the batch.
pub(super) struct Batch {
    record_types: Vec<String>,
    record_ids: Vec<String>,
    users: Vec<String>,
    values: Vec<Option<i32>>,
}

pub(super) fn encode(changes: &[Change<'_>]) -> Batch {
    Batch {
        record_types: changes.iter().map(|change| change.key.record_type.as_str().to_owned()).collect(),
        record_ids: changes.iter().map(|change| change.key.record_id.as_str().to_owned()).collect(),
        users: changes.iter().map(|change| change.user.as_str().to_owned()).collect(),
        values: changes.iter().map(|change| change.value).collect(),
    }
}

pub(super) fn bind<'q>(statement: &'q str, batch: &'q Batch) -> Query<'q, Postgres, PgArguments> {
    sqlx::query(statement).bind(&batch.record_types).bind(&batch.record_ids).bind(&batch.users).bind(&batch.values)
}

pub(super) fn lock_positions<'q>(topic: &'q str, partitions: &'q [i32]) -> Query<'q, Postgres, PgArguments> {
    sqlx::query(LOCK_POSITIONS).bind(topic).bind(partitions)
}
