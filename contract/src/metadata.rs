//! A movie's metadata as the metadata service stores it and the movie
//! service passes it on: parsed from the wire once, so the layers below only
//! see valid values.
use crate::{api, id::MovieId, validation::FieldError};

/// What the suite knows about a movie.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Metadata {
    pub id: MovieId,
    pub title: String,
    pub description: String,
    pub director: String,
}

impl Metadata {
    /// Parses the `metadata` field of a `PutMetadataRequest`: an id, and
    /// text fields (possibly empty) without NUL characters.
    pub fn parse(raw: Option<api::Metadata>) -> Result<Self, FieldError> {
        let raw = raw.ok_or_else(|| FieldError::new("metadata", "is required"))?;
        Ok(Self {
            id: MovieId::parse("metadata.id", raw.id)?,
            title: FieldError::require_text("metadata.title", raw.title)?,
            description: FieldError::require_text("metadata.description", raw.description)?,
            director: FieldError::require_text("metadata.director", raw.director)?,
        })
    }
}

impl From<Metadata> for api::Metadata {
    fn from(metadata: Metadata) -> Self {
        api::Metadata {
            id: metadata.id.as_str().to_string(),
            title: metadata.title,
            description: metadata.description,
            director: metadata.director,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_needs_a_message_and_an_id() {
        assert_eq!(Metadata::parse(None).unwrap_err().to_string(), "metadata is required");
        let error = Metadata::parse(Some(api::Metadata::default())).unwrap_err();
        assert_eq!(error.to_string(), "metadata.id must not be empty");
    }

    #[test]
    fn text_fields_refuse_nul_characters() {
        let wire = api::Metadata { id: "1".into(), title: "Heat".into(), ..Default::default() };
        let with_nul = api::Metadata { director: "Michael\0Mann".into(), ..wire.clone() };
        let error = Metadata::parse(Some(with_nul)).unwrap_err();
        assert_eq!(error.to_string(), "metadata.director must not contain a NUL character");
        let error = Metadata::parse(Some(api::Metadata { id: "1\0".into(), ..wire.clone() })).unwrap_err();
        assert_eq!(error.to_string(), "metadata.id must not contain a NUL character");
        assert!(Metadata::parse(Some(wire)).is_ok(), "empty description and director are allowed");
    }

    #[test]
    fn round_trips_through_the_wire_type() {
        let wire = api::Metadata {
            id: "1".into(),
            title: "Heat".into(),
            description: "LA crime".into(),
            director: "Michael Mann".into(),
        };
        assert_eq!(api::Metadata::from(Metadata::parse(Some(wire.clone())).unwrap()), wire);
    }
}
