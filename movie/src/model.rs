//! The movie domain: details made of a movie's metadata and its rating.
use contract::api;
use contract::metadata::Metadata;

/// What is known of a movie's rating when details are assembled.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Rating {
    /// The average of the ratings given so far.
    Rated(f64),
    /// Nobody has rated the movie yet.
    NotRated,
    /// The rating service could not answer; the details go out without a
    /// rating (see [`crate::controller::RatingFailurePolicy`]).
    Unavailable,
}

impl Rating {
    pub fn value(self) -> Option<f64> {
        match self {
            Rating::Rated(value) => Some(value),
            Rating::NotRated | Rating::Unavailable => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct MovieDetails {
    pub metadata: Metadata,
    pub rating: Rating,
}

impl From<MovieDetails> for api::MovieDetails {
    fn from(details: MovieDetails) -> Self {
        api::MovieDetails { rating: details.rating.value(), metadata: Some(details.metadata.into()) }
    }
}
