//! The rating domain: ids, the record a rating is about, and rating values
//! checked against the configured range. Parsed once at the edge.
use std::{fmt, sync::Arc};

use platform::validation::FieldError;

macro_rules! string_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(Arc<str>);

        impl $name {
            /// Parses the value found in `field` of a request or event.
            pub fn parse(field: &'static str, raw: String) -> Result<Self, FieldError> {
                Ok(Self(Arc::from(FieldError::require_non_empty(field, raw)?)))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

string_id!(
    /// The id of a rated record, e.g. a movie id.
    RecordId
);
string_id!(
    /// The kind of a rated record, e.g. `movie`.
    RecordType
);
string_id!(
    /// The user who gave a rating.
    UserId
);

/// The record a rating is about.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RecordKey {
    pub record_type: RecordType,
    pub record_id: RecordId,
}

impl RecordKey {
    pub fn parse(record_type: String, record_id: String) -> Result<Self, FieldError> {
        Ok(Self {
            record_type: RecordType::parse("record_type", record_type)?,
            record_id: RecordId::parse("record_id", record_id)?,
        })
    }
}

impl fmt::Display for RecordKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.record_type, self.record_id)
    }
}

/// The inclusive range of accepted rating values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RatingRange {
    min: i32,
    max: i32,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("the lowest rating {min} is above the highest {max}")]
pub struct EmptyRange {
    min: i32,
    max: i32,
}

impl RatingRange {
    pub fn new(min: i32, max: i32) -> Result<Self, EmptyRange> {
        if min > max { Err(EmptyRange { min, max }) } else { Ok(Self { min, max }) }
    }

    pub fn min(&self) -> i32 {
        self.min
    }

    pub fn max(&self) -> i32 {
        self.max
    }
}

impl Default for RatingRange {
    fn default() -> Self {
        Self { min: 1, max: 5 }
    }
}

impl fmt::Display for RatingRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}..={}", self.min, self.max)
    }
}

/// A rating value inside the configured [`RatingRange`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct RatingValue(i32);

impl RatingValue {
    pub fn parse(field: &'static str, raw: i32, range: RatingRange) -> Result<Self, FieldError> {
        if (range.min..=range.max).contains(&raw) {
            Ok(Self(raw))
        } else {
            Err(FieldError::new(field, format!("must be between {} and {}, got {raw}", range.min, range.max)))
        }
    }

    pub fn get(self) -> i32 {
        self.0
    }
}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rating_values_must_lie_in_the_range() {
        let range = RatingRange::default();
        assert_eq!(RatingValue::parse("rating_value", 5, range).unwrap().get(), 5);
        assert_eq!(RatingValue::parse("rating_value", 1, range).unwrap().get(), 1);
        let error = RatingValue::parse("rating_value", 6, range).unwrap_err();
        assert_eq!(error.to_string(), "rating_value must be between 1 and 5, got 6");
        assert!(RatingValue::parse("rating_value", 0, range).is_err());
        let imdb = RatingRange::new(1, 10).unwrap();
        assert!(RatingValue::parse("rating_value", 10, imdb).is_ok());
    }

    #[test]
    fn an_empty_range_is_refused() {
        assert_eq!(RatingRange::new(5, 1).unwrap_err().to_string(), "the lowest rating 5 is above the highest 1");
    }

    #[test]
    fn record_keys_need_both_parts() {
        assert_eq!(RecordKey::parse("".into(), "1".into()).unwrap_err().to_string(), "record_type must not be empty");
        assert_eq!(
            RecordKey::parse("movie".into(), " ".into()).unwrap_err().to_string(),
            "record_id must not be empty"
        );
        assert_eq!(RecordKey::parse("movie".into(), "1".into()).unwrap().to_string(), "movie/1");
    }
}
