//! An in-memory metadata store, safe under concurrent RPCs.
use std::{
    collections::HashMap,
    sync::{PoisonError, RwLock},
};

use super::{MetadataRepository, RepositoryError};
use crate::model::{Metadata, MovieId};

#[derive(Debug, Default)]
pub struct MemoryRepository {
    movies: RwLock<HashMap<MovieId, Metadata>>,
}

impl MetadataRepository for MemoryRepository {
    async fn get(&self, id: &MovieId) -> Result<Metadata, RepositoryError> {
        let movies = self.movies.read().unwrap_or_else(PoisonError::into_inner);
        movies.get(id).cloned().ok_or_else(|| RepositoryError::NotFound(id.clone()))
    }

    async fn put(&self, metadata: Metadata) -> Result<(), RepositoryError> {
        let mut movies = self.movies.write().unwrap_or_else(PoisonError::into_inner);
        movies.insert(metadata.id.clone(), metadata);
        Ok(())
    }
}
