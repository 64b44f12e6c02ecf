//! The names the services register under in discovery and look each other
//! up by.

pub const METADATA: &str = "metadata";
pub const RATING: &str = "rating";
pub const MOVIE: &str = "movie";
