//! Where metadata is stored, behind [`MetadataRepository`] so the controller
//! does not depend on a storage engine: in memory, in a SQLite file, or in
//! PostgreSQL ([`Store`] is whichever `--database-url` names).
pub mod memory;
pub mod sql;

use std::future::Future;

use platform::database::{Database, DatabaseArgs, DatabaseError, QueryError};

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
pub enum Store {
    Memory(memory::MemoryRepository),
    Sqlite(sql::SqliteRepository),
    Postgres(sql::PostgresRepository),
}

impl Store {
    /// Opens the store the settings name, without connecting yet.
    pub fn open(args: &DatabaseArgs) -> Result<Self, DatabaseError> {
        Ok(match args.open()? {
            None => Store::Memory(memory::MemoryRepository::default()),
            Some(Database::Sqlite { pool, name }) => Store::Sqlite(sql::SqliteRepository::new(pool, name)),
            Some(Database::Postgres { pool, name }) => Store::Postgres(sql::PostgresRepository::new(pool, name)),
        })
    }

    /// The database behind the store, `None` in memory.
    pub fn database(&self) -> Option<Database> {
        match self {
            Store::Memory(_) => None,
            Store::Sqlite(repository) => Some(repository.database()),
            Store::Postgres(repository) => Some(repository.database()),
        }
    }

    /// How logs name the store: `memory`, or the redacted database URL.
    pub fn describe(&self) -> String {
        match self {
            Store::Memory(_) => "memory".into(),
            Store::Sqlite(repository) => repository.database().name().to_string(),
            Store::Postgres(repository) => repository.database().name().to_string(),
        }
    }

    /// Connects (waiting for a PostgreSQL server that is not up yet) and
    /// runs the migrations; nothing to do in memory.
    pub async fn prepare(&self) -> Result<(), DatabaseError> {
        match self.database() {
            None => Ok(()),
            Some(database) => database.prepare(&MIGRATIONS).await,
        }
    }
}

impl MetadataRepository for Store {
    async fn get(&self, id: &MovieId) -> Result<Metadata, RepositoryError> {
        match self {
            Store::Memory(repository) => repository.get(id).await,
            Store::Sqlite(repository) => repository.get(id).await,
            Store::Postgres(repository) => repository.get(id).await,
        }
    }

    async fn put(&self, metadata: Metadata) -> Result<(), RepositoryError> {
        match self {
            Store::Memory(repository) => repository.put(metadata).await,
            Store::Sqlite(repository) => repository.put(metadata).await,
            Store::Postgres(repository) => repository.put(metadata).await,
        }
    }
}
