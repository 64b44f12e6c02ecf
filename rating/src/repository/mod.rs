//! Where ratings are stored, behind [`RatingRepository`]: one rating per
//! (record, user), so a user who rates again replaces their rating, and a
//! replayed write changes nothing.
pub mod memory;

use std::future::Future;

use crate::model::{AggregatedRating, RatingValue, RecordKey, UserId};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RepositoryError {
    #[error("no ratings for record {0}")]
    NotFound(RecordKey),
}

pub trait RatingRepository: Send + Sync + 'static {
    /// Stores `user`'s rating of a record, replacing any earlier one.
    fn put(
        &self,
        key: RecordKey,
        user: UserId,
        value: RatingValue,
    ) -> impl Future<Output = Result<(), RepositoryError>> + Send;

    /// Removes `user`'s rating of a record; returns whether there was one.
    fn delete(&self, key: &RecordKey, user: &UserId) -> impl Future<Output = Result<bool, RepositoryError>> + Send;

    /// The average of a record's ratings; `NotFound` when it has none.
    fn aggregate(&self, key: &RecordKey) -> impl Future<Output = Result<AggregatedRating, RepositoryError>> + Send;
}
