//! The error every domain type returns when it refuses a value at the edge.
//!
//! Domain newtypes (`MovieId`, `RecordId`, `RatingValue`, ...) parse their raw
//! transport values once and return a [`FieldError`] naming the field and the
//! rule it broke; handlers turn it into `INVALID_ARGUMENT` unchanged.

/// The longest id (movie, record, user, ...) in bytes of UTF-8.
pub const MAX_ID_BYTES: usize = 256;

/// A request field that broke a rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field} {problem}")]
pub struct FieldError {
    /// The field as named on the wire, e.g. `metadata.id`.
    pub field: &'static str,
    /// What is wrong with it, phrased to follow the field name.
    pub problem: String,
}

impl FieldError {
    pub fn new(field: &'static str, problem: impl Into<String>) -> Self {
        Self { field, problem: problem.into() }
    }

    /// Validates that a string field is not empty or whitespace only, and
    /// is [text](Self::require_text).
    pub fn require_non_empty(field: &'static str, value: String) -> Result<String, FieldError> {
        if value.trim().is_empty() {
            Err(Self::new(field, "must not be empty"))
        } else {
            Self::require_text(field, value)
        }
    }

    /// Validates that an id is not empty or blank, is [text](Self::require_text),
    /// and is at most [`MAX_ID_BYTES`] long: ids are primary keys, and
    /// PostgreSQL cannot index a key of more than about 2,700 bytes.
    pub fn require_id(field: &'static str, value: String) -> Result<String, FieldError> {
        if value.len() > MAX_ID_BYTES {
            return Err(Self::new(field, format!("must be at most {MAX_ID_BYTES} bytes long, not {}", value.len())));
        }
        Self::require_non_empty(field, value)
    }

    /// Validates that a string field holds no NUL character: PostgreSQL
    /// refuses it in text, so every store refuses it here, at the edge.
    pub fn require_text(field: &'static str, value: String) -> Result<String, FieldError> {
        if value.contains('\0') { Err(Self::new(field, "must not contain a NUL character")) } else { Ok(value) }
    }
}

impl From<FieldError> for tonic::Status {
    fn from(error: FieldError) -> Self {
        tonic::Status::invalid_argument(error.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_and_blank_strings_are_refused_with_the_field_name() {
        let error = FieldError::require_non_empty("movie_id", "  ".into()).unwrap_err();
        assert_eq!(error.to_string(), "movie_id must not be empty");
        assert_eq!(FieldError::require_non_empty("movie_id", "1".into()).unwrap(), "1");
    }

    #[test]
    fn ids_are_bounded_in_length() {
        let longest = "x".repeat(MAX_ID_BYTES);
        assert_eq!(FieldError::require_id("user_id", longest.clone()).unwrap(), longest);
        let error = FieldError::require_id("user_id", format!("{longest}x")).unwrap_err();
        assert_eq!(error.to_string(), "user_id must be at most 256 bytes long, not 257");
        // Bytes, not characters: 129 two-byte characters are too long.
        assert!(FieldError::require_id("user_id", "é".repeat(129)).is_err());
        assert!(FieldError::require_id("user_id", " ".into()).is_err());
    }

    #[test]
    fn nul_characters_are_refused_with_the_field_name() {
        let error = FieldError::require_text("metadata.title", "He\0at".into()).unwrap_err();
        assert_eq!(error.to_string(), "metadata.title must not contain a NUL character");
        let error = FieldError::require_non_empty("movie_id", "1\0".into()).unwrap_err();
        assert_eq!(error.to_string(), "movie_id must not contain a NUL character");
        assert_eq!(FieldError::require_text("metadata.title", String::new()).unwrap(), "");
    }

    #[test]
    fn becomes_invalid_argument() {
        let status: tonic::Status = FieldError::new("user_id", "must not be empty").into();
        assert_eq!(status.code(), tonic::Code::InvalidArgument);
        assert_eq!(status.message(), "user_id must not be empty");
    }
}
