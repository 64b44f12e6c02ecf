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
    /// is at most [`MAX_ID_BYTES`] long (ids are primary keys, and
    /// PostgreSQL cannot index a key of more than about 2,700 bytes), and
    /// holds no control character: ids end up in logs, metric labels, Kafka
    /// keys and headers, where a newline or an escape sequence would forge
    /// or garble what a reader sees.
    pub fn require_id(field: &'static str, value: String) -> Result<String, FieldError> {
        if value.len() > MAX_ID_BYTES {
            return Err(Self::new(field, format!("must be at most {MAX_ID_BYTES} bytes long, not {}", value.len())));
        }
        let value = Self::require_non_empty(field, value)?;
        match value.chars().find(|character| character.is_control()) {
            Some(control) => Err(Self::new(
                field,
                format!("must not contain a control character, found U+{:04X}", u32::from(control)),
            )),
            None => Ok(value),
        }
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
    fn ids_refuse_control_characters_naming_the_first() {
        for (id, found) in [
            ("a\nb", "U+000A"),
            ("\tx", "U+0009"),
            ("x\u{1b}[31m", "U+001B"),
            ("x\u{7f}", "U+007F"),
            ("x\u{85}", "U+0085"),
        ] {
            let error = FieldError::require_id("user_id", id.into()).unwrap_err();
            assert_eq!(error.to_string(), format!("user_id must not contain a control character, found {found}"));
        }
        // Other characters outside ASCII are ids like any other.
        assert_eq!(FieldError::require_id("user_id", "zoë 🎬".into()).unwrap(), "zoë 🎬");
        // Free text may hold newlines and tabs.
        assert_eq!(FieldError::require_non_empty("metadata.description", "a\n\tb".into()).unwrap(), "a\n\tb");
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
