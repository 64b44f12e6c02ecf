//! Where metadata is stored, behind [`MetadataRepository`] so the controller
//! does not depend on a storage engine.
pub mod memory;

use std::future::Future;

use crate::model::{Metadata, MovieId};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RepositoryError {
    #[error("no metadata for movie id \"{0}\"")]
    NotFound(MovieId),
}

pub trait MetadataRepository: Send + Sync + 'static {
    fn get(&self, id: &MovieId) -> impl Future<Output = Result<Metadata, RepositoryError>> + Send;
    /// Stores `metadata`, replacing what was stored under its id.
    fn put(&self, metadata: Metadata) -> impl Future<Output = Result<(), RepositoryError>> + Send;
}
