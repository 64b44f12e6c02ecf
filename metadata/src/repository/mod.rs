//! Where metadata is stored, behind [`MetadataRepository`] so the controller
//! does not depend on a storage engine: in memory, in a SQLite file, or in
//! PostgreSQL ([`Store`] is whichever `--database-url` names).
pub mod memory;
pub mod sql;

use std::future::Future;

use sql_store::QueryError;

use crate::model::{Metadata, MovieId};

/// The schema of the SQL stores, embedded; the same SQL serves SQLite and
/// PostgreSQL.
pub static MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

#[derive(Debug, thiserror::Error)]
pub enum RepositoryError {
    #[error("no metadata for movie id \"{0}\"")]
    NotFound(MovieId),
    #[error(transparent)]
    Database(#[from] QueryError),
}

impl RepositoryError {
    pub fn from_sqlx(database: &str, source: sqlx::Error) -> Self {
        Self::Database(QueryError::from_sqlx(database, source))
    }
}

pub trait MetadataRepository: Send + Sync + 'static {
    fn get(&self, id: &MovieId) -> impl Future<Output = Result<Metadata, RepositoryError>> + Send;
    /// Stores `metadata`, replacing what was stored under its id.
    fn put(&self, metadata: Metadata) -> impl Future<Output = Result<(), RepositoryError>> + Send;
}

/// The store `--database-url` names.
pub type Store = sql_store::Store<memory::MemoryRepository, sql::SqliteRepository, sql::PostgresRepository>;

impl MetadataRepository for Store {
    async fn get(&self, id: &MovieId) -> Result<Metadata, RepositoryError> {
        sql_store::dispatch_store!(self, repository => repository.get(id).await)
    }

    async fn put(&self, metadata: Metadata) -> Result<(), RepositoryError> {
        sql_store::dispatch_store!(self, repository => repository.put(metadata).await)
    }
}
