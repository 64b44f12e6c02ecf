//! Rating values and the range they must lie in, with the one pair of
//! settings (`--min-rating`/`--max-rating`) that the rating service and
//! ratingingester share.
use std::fmt;

use crate::validation::FieldError;

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

    fn refusal(&self, field: &'static str, raw: impl fmt::Display) -> FieldError {
        FieldError::new(field, format!("must be between {} and {}, got {raw}", self.min, self.max))
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

/// The accepted range of rating values, flattened into the clap
/// configuration of every binary that validates ratings.
#[derive(Debug, Clone, clap::Args)]
pub struct RatingRangeArgs {
    /// Lowest accepted rating value
    #[arg(long, env = "RATING_MIN", default_value_t = 1, allow_negative_numbers = true)]
    pub min_rating: i32,

    /// Highest accepted rating value (e.g. 10 for IMDb-style providers)
    #[arg(long, env = "RATING_MAX", default_value_t = 5, allow_negative_numbers = true)]
    pub max_rating: i32,
}

/// `--min-rating` above `--max-rating`.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid --min-rating/--max-rating")]
pub struct InvalidRangeSettings(#[source] pub EmptyRange);

impl RatingRangeArgs {
    pub fn range(&self) -> Result<RatingRange, InvalidRangeSettings> {
        RatingRange::new(self.min_rating, self.max_rating).map_err(InvalidRangeSettings)
    }
}

/// A rating value inside the configured [`RatingRange`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct RatingValue(i32);

impl RatingValue {
    pub fn parse(field: &'static str, raw: i32, range: RatingRange) -> Result<Self, FieldError> {
        Self::parse_wide(field, raw.into(), range)
    }

    /// Like [`RatingValue::parse`], for a value that may not even fit an
    /// `i32` (any JSON integer): refused with the same message.
    pub fn parse_wide(field: &'static str, raw: i128, range: RatingRange) -> Result<Self, FieldError> {
        match i32::try_from(raw) {
            Ok(value) if (range.min..=range.max).contains(&value) => Ok(Self(value)),
            _ => Err(range.refusal(field, raw)),
        }
    }

    pub fn get(self) -> i32 {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

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
    fn values_beyond_an_i32_are_refused_with_the_same_words() {
        let error = RatingValue::parse_wide("value", i128::from(u64::MAX), RatingRange::default()).unwrap_err();
        assert_eq!(error.to_string(), "value must be between 1 and 5, got 18446744073709551615");
    }

    #[test]
    fn an_empty_range_is_refused() {
        assert_eq!(RatingRange::new(5, 1).unwrap_err().to_string(), "the lowest rating 5 is above the highest 1");
    }

    #[derive(Parser)]
    struct Probe {
        #[command(flatten)]
        range: RatingRangeArgs,
    }

    #[test]
    fn the_range_settings_default_to_one_to_five_and_refuse_an_empty_range() {
        let probe = Probe::try_parse_from(["probe"]).unwrap();
        assert_eq!(probe.range.range().unwrap(), RatingRange::default());
        let probe = Probe::try_parse_from(["probe", "--min-rating", "-2", "--max-rating", "10"]).unwrap();
        assert_eq!(probe.range.range().unwrap(), RatingRange::new(-2, 10).unwrap());
        let probe = Probe::try_parse_from(["probe", "--min-rating", "5", "--max-rating", "1"]).unwrap();
        let error = probe.range.range().unwrap_err();
        assert_eq!(error.to_string(), "invalid --min-rating/--max-rating");
        assert_eq!(
            std::error::Error::source(&error).map(ToString::to_string).as_deref(),
            Some("the lowest rating 5 is above the highest 1")
        );
    }
}
