//! Where metadata is stored, behind [`MetadataRepository`] so the controller
//! does not depend on a storage engine: in memory, in a SQLite file, or in
//! PostgreSQL ([`Store`] is whichever `--database-url` names).
pub mod memory;
pub mod sql;

use std::future::Future;

use platform::database::{Database, DatabaseArgs, DatabaseError};

use crate::model::{Metadata, MovieId};

/// The schema of the SQL stores, embedded; the same SQL serves SQLite and
/// PostgreSQL.
pub static MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

#[derive(Debug, thiserror::Error)]
pub enum RepositoryError {
    #[error("no metadata for movie id \"{0}\"")]
    NotFound(MovieId),
    /// The database cannot be reached, or has no free connection in time.
    #[error("database {database} is unavailable")]
    Unavailable {
        database: String,
        #[source]
        source: sqlx::Error,
    },
    /// The database refused a value (its encoding or its length).
    #[error("database {database} refused the value")]
    ValueRefused {
        database: String,
        #[source]
        source: sqlx::Error,
    },
    #[error("database {database} failed")]
    Failed {
        database: String,
        #[source]
        source: sqlx::Error,
    },
}

impl RepositoryError {
    /// Sorts a database error by what the caller can do about it.
    pub fn from_sqlx(database: &str, source: sqlx::Error) -> Self {
        let database = database.to_string();
        match classify(&source) {
            Kind::Unavailable => Self::Unavailable { database, source },
            Kind::ValueRefused => Self::ValueRefused { database, source },
            Kind::Failed => Self::Failed { database, source },
        }
    }
}

enum Kind {
    Unavailable,
    ValueRefused,
    Failed,
}

fn classify(error: &sqlx::Error) -> Kind {
    match error {
        sqlx::Error::Io(_) | sqlx::Error::Tls(_) | sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed => {
            Kind::Unavailable
        }
        sqlx::Error::Database(database) => match database.code().as_deref() {
            // PostgreSQL SQLSTATE classes: 08 connection exception, 53
            // insufficient resources, 57 operator intervention (shutting
            // down, starting up); 22 data exception (e.g. a NUL byte, a
            // string too long).
            Some(code) if code.starts_with("08") || code.starts_with("53") || code.starts_with("57") => {
                Kind::Unavailable
            }
            Some(code) if code.starts_with("22") => Kind::ValueRefused,
            // SQLite result codes: 5 BUSY, 6 LOCKED, 14 CANTOPEN; 18 TOOBIG.
            Some("5" | "6" | "14") => Kind::Unavailable,
            Some("18") => Kind::ValueRefused,
            _ => Kind::Failed,
        },
        _ => Kind::Failed,
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
