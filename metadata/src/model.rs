//! The metadata domain: a movie's id and descriptive fields, the suite's
//! contract with the movie service.
pub use contract::{id::MovieId, metadata::Metadata};
