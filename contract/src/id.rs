//! String ids as newtypes, all from one definition ([`string_id!`]): the ids
//! the services and tools exchange (movies, records, users) and, through the
//! same macro, the registry's service and instance names in `platform`.
//!
//! An id is any non-empty string (as in the book) of at most
//! [`MAX_ID_BYTES`](crate::validation::MAX_ID_BYTES) bytes without control
//! characters, parsed once at the edge
//! and cheap to clone afterwards (`Arc<str>`).
use std::fmt;

use crate::validation::FieldError;

/// Defines a string-id newtype: `parse` (refuses empty, blank or over-long
/// values and control characters, naming the field), `as_str`, `Display`, and `AsRef<str>`.
#[macro_export]
macro_rules! string_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(::std::sync::Arc<str>);

        impl $name {
            /// Parses the value found in `field` of a request, event or setting.
            pub fn parse(field: &'static str, raw: String) -> Result<Self, $crate::validation::FieldError> {
                let raw = $crate::validation::FieldError::require_id(field, raw)?;
                Ok(Self(::std::sync::Arc::from(raw)))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl ::std::fmt::Display for $name {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }
    };
}

string_id!(
    /// The id of a movie, shared by the metadata service and the ratings of
    /// record type `movie`.
    MovieId
);
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

/// The record type under which movies are rated.
pub const MOVIE_RECORD_TYPE: &str = "movie";

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_refuse_empty_and_blank_values_naming_the_field() {
        assert_eq!(MovieId::parse("movie_id", "".into()).unwrap_err().to_string(), "movie_id must not be empty");
        assert_eq!(UserId::parse("userId", " \t".into()).unwrap_err().to_string(), "userId must not be empty");
        let id = RecordId::parse("record_id", "tt0113277".into()).unwrap();
        assert_eq!((id.as_str(), id.to_string().as_str(), id.as_ref()), ("tt0113277", "tt0113277", "tt0113277"));
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
