//! The metadata service's rules, independent of transport.
use sql_store::QueryError;

use crate::{
    model::{Metadata, MovieId},
    repository::{MetadataRepository, RepositoryError},
};

#[derive(Debug, thiserror::Error)]
pub enum MetadataError {
    #[error("no metadata for movie id \"{0}\"")]
    NotFound(MovieId),
    #[error("the metadata store is unavailable")]
    Unavailable(#[source] RepositoryError),
    #[error("the metadata store refused a value")]
    ValueRefused(#[source] RepositoryError),
    #[error("the metadata store failed")]
    Storage(#[source] RepositoryError),
}

impl From<RepositoryError> for MetadataError {
    fn from(error: RepositoryError) -> Self {
        match error {
            RepositoryError::NotFound(id) => MetadataError::NotFound(id),
            // A conflict is a transaction to run again: the caller may retry.
            RepositoryError::Database(QueryError::Unavailable { .. } | QueryError::Conflict { .. }) => {
                MetadataError::Unavailable(error)
            }
            RepositoryError::Database(QueryError::ValueRefused { .. }) => MetadataError::ValueRefused(error),
            RepositoryError::Database(QueryError::Failed { .. }) => MetadataError::Storage(error),
        }
    }
}

pub struct MetadataController<R> {
    repository: R,
}

impl<R: MetadataRepository> MetadataController<R> {
    pub fn new(repository: R) -> Self {
        Self { repository }
    }

    pub async fn get(&self, id: &MovieId) -> Result<Metadata, MetadataError> {
        Ok(self.repository.get(id).await?)
    }

    /// Stores or replaces the metadata of a movie.
    pub async fn put(&self, metadata: Metadata) -> Result<(), MetadataError> {
        Ok(self.repository.put(metadata).await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::repository::memory::MemoryRepository;

    fn metadata(id: &str, title: &str) -> Metadata {
        Metadata {
            id: MovieId::parse("id", id.into()).unwrap(),
            title: title.into(),
            description: String::new(),
            director: "Someone".into(),
        }
    }

    #[tokio::test]
    async fn unknown_movie_is_not_found() {
        let controller = MetadataController::new(MemoryRepository::default());
        let id = MovieId::parse("id", "404".into()).unwrap();
        assert!(matches!(controller.get(&id).await, Err(MetadataError::NotFound(missing)) if missing == id));
    }

    #[tokio::test]
    async fn put_stores_and_replaces() {
        let controller = MetadataController::new(MemoryRepository::default());
        controller.put(metadata("1", "Heat")).await.unwrap();
        controller.put(metadata("2", "Ronin")).await.unwrap();
        controller.put(metadata("1", "Heat (1995)")).await.unwrap();
        assert_eq!(controller.get(&metadata("1", "").id).await.unwrap().title, "Heat (1995)");
        assert_eq!(controller.get(&metadata("2", "").id).await.unwrap().title, "Ronin");
    }
}
