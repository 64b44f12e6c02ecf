//! The rating domain. The ids, the rating values and their range, and the
//! events are the suite's contract (shared with ratingingester and the
//! movie service); the average is this service's own.
pub use contract::{
    event::RatingEvent,
    id::{RecordId, RecordKey, RecordType, UserId},
    rating::{RatingRange, RatingValue},
};

/// The average of a record's ratings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AggregatedRating {
    pub average: f64,
    pub count: u64,
}

/// Short constructors of valid values for the crate's tests.
#[cfg(test)]
pub(crate) mod test_values {
    use super::*;

    pub fn key(id: &str) -> RecordKey {
        RecordKey::parse("movie".into(), id.into()).unwrap()
    }

    pub fn user(id: &str) -> UserId {
        UserId::parse("user_id", id.into()).unwrap()
    }

    /// A value in 1..=10, the widest range the tests use.
    pub fn value(v: i32) -> RatingValue {
        RatingValue::parse("rating_value", v, RatingRange::new(1, 10).unwrap()).unwrap()
    }
}
