//! The store a service keeps its data in, whichever `--database-url` names:
//! in memory, a SQLite file or PostgreSQL. [`Store`] is generic over the
//! service's three repositories; each service names them in a type alias
//! and implements its repository trait over it with
//! [`dispatch_store!`](crate::dispatch_store). Its SQL repositories are
//! declared with [`sql_repository!`](crate::sql_repository), so that
//! [`Store::open`] can build them.
use sqlx::{Pool, Postgres, Sqlite, migrate::Migrator};

use super::{Commits, Database, DatabaseArgs, DatabaseError};
use telemetry::Chain;
use tokio_util::sync::CancellationToken;

/// A repository over the pool of one SQL engine.
pub trait SqlRepository<DB: sqlx::Database> {
    /// A repository over `pool`; `name`, the redacted URL, names the
    /// database in errors.
    fn new(pool: Pool<DB>, name: String) -> Self;

    /// What a commit to a SQLite file must survive: a power cut unless the
    /// service says its data can be rebuilt (see [`Commits`]).
    const COMMITS: Commits = Commits::SurvivePowerLoss;

    /// The database behind the repository.
    fn database(&self) -> Database;
}

/// Declares `pub struct $name`, a repository over the pool of `$engine`
/// (`Sqlite` or `Postgres`), and its [`SqlRepository`] impl; the service
/// brings its statements in an impl of its own repository trait, over the
/// fields `pool` and `name` (the redacted URL, for errors). An optional
/// `commits = ...` sets [`SqlRepository::COMMITS`].
#[macro_export]
macro_rules! sql_repository {
    ($(#[$attr:meta])* $name:ident, $engine:ident $(, commits = $commits:expr)?) => {
        $(#[$attr])*
        pub struct $name {
            pool: $crate::sqlx::Pool<$crate::sqlx::$engine>,
            /// The redacted URL, naming the database in errors.
            name: String,
        }

        impl $crate::SqlRepository<$crate::sqlx::$engine> for $name {
            $(const COMMITS: $crate::Commits = $commits;)?

            fn new(pool: $crate::sqlx::Pool<$crate::sqlx::$engine>, name: String) -> Self {
                Self { pool, name }
            }

            fn database(&self) -> $crate::Database {
                $crate::Database::$engine { pool: self.pool.clone(), name: self.name.clone() }
            }
        }
    };
}

/// Evaluates `$call` with `$repository` bound to whichever repository the
/// [`Store`] `$store` holds: how a service implements its repository trait
/// over its store.
#[macro_export]
macro_rules! dispatch_store {
    ($store:expr, $repository:ident => $call:expr) => {
        match $store {
            $crate::Store::Memory($repository) => $call,
            $crate::Store::Sqlite($repository) => $call,
            $crate::Store::Postgres($repository) => $call,
        }
    };
}

/// The store `--database-url` names: in memory (`M`), or a repository over
/// SQLite (`S`) or PostgreSQL (`P`).
pub enum Store<M, S, P> {
    Memory(M),
    Sqlite(S),
    Postgres(P),
}

impl<M: Default, S: SqlRepository<Sqlite>, P: SqlRepository<Postgres>> Store<M, S, P> {
    /// Opens the store the settings name, without connecting yet.
    pub fn open(args: &DatabaseArgs) -> Result<Self, DatabaseError> {
        Ok(match args.open(S::COMMITS)? {
            None => Self::Memory(M::default()),
            Some(Database::Sqlite { pool, name }) => Self::Sqlite(S::new(pool, name)),
            Some(Database::Postgres { pool, name }) => Self::Postgres(P::new(pool, name)),
        })
    }
}

impl<M, S: SqlRepository<Sqlite>, P: SqlRepository<Postgres>> Store<M, S, P> {
    /// The database behind the store, `None` in memory.
    pub fn database(&self) -> Option<Database> {
        match self {
            Self::Memory(_) => None,
            Self::Sqlite(repository) => Some(repository.database()),
            Self::Postgres(repository) => Some(repository.database()),
        }
    }

    /// How logs name the store: `memory`, or the redacted database URL.
    pub fn describe(&self) -> String {
        self.database().map_or_else(|| "memory".into(), |database| database.name().to_string())
    }

    /// Connects (waiting for a PostgreSQL server that is not up yet) and
    /// runs `migrations`; nothing to do in memory.
    pub async fn prepare(&self, migrations: &Migrator) -> Result<(), DatabaseError> {
        match self.database() {
            None => Ok(()),
            Some(database) => database.prepare(migrations).await,
        }
    }
}

/// A service that cannot prepare its store at start.
#[derive(Debug, thiserror::Error)]
#[error("the {service} service cannot use its database")]
pub struct UnusableDatabase {
    pub service: &'static str,
    #[source]
    pub source: DatabaseError,
}

/// Prepares the store of `service` at start: connects to `database` (none
/// in memory) and runs `migrations`, as [`Store::prepare`]. On failure it
/// logs why, cancels `stop` (the service stops) and returns the error.
pub async fn prepare_or_stop(
    service: &'static str,
    database: Option<Database>,
    migrations: &Migrator,
    stop: &CancellationToken,
) -> Result<(), UnusableDatabase> {
    let Some(database) = database else { return Ok(()) };
    database.prepare(migrations).await.map_err(|source| {
        tracing::error!(error = %Chain(&source), "the {service} store cannot be prepared; stopping");
        stop.cancel();
        UnusableDatabase { service, source }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::DatabaseUrl;

    #[derive(Default)]
    struct MemoryRepository;

    crate::sql_repository!(SqliteRepository, Sqlite);
    crate::sql_repository!(PostgresRepository, Postgres);

    type TestStore = Store<MemoryRepository, SqliteRepository, PostgresRepository>;

    fn open(url: Option<&str>) -> TestStore {
        let args = DatabaseArgs {
            database_url: url.map(DatabaseUrl::new),
            database_max_connections: 1,
            database_connect_timeout: std::time::Duration::from_secs(5),
        };
        TestStore::open(&args).unwrap()
    }

    #[tokio::test]
    async fn the_url_picks_the_store_and_names_it() {
        let memory = open(None);
        assert!(matches!(memory, Store::Memory(_)) && memory.database().is_none());
        assert_eq!(memory.describe(), "memory");

        let sqlite = open(Some("sqlite::memory:"));
        assert!(matches!(sqlite, Store::Sqlite(_)));
        assert_eq!(sqlite.describe(), "sqlite::memory:");

        let postgres = open(Some("postgres://user:s3cret@127.0.0.1:5432/movies"));
        assert!(matches!(postgres.database(), Some(Database::Postgres { .. })));
        assert_eq!(postgres.describe(), "postgres://user:***@127.0.0.1:5432/movies");
    }

    #[tokio::test]
    async fn a_store_that_cannot_be_prepared_stops_the_service_naming_it() {
        let migrations_dir = std::env::temp_dir().join(format!("platform-store-{}", std::process::id()));
        std::fs::create_dir_all(&migrations_dir).unwrap();
        std::fs::write(migrations_dir.join("1_broken.sql"), "CREATE TABLE;").unwrap();
        let migrations = Migrator::new(migrations_dir.clone()).await.unwrap();
        std::fs::remove_dir_all(&migrations_dir).unwrap();
        let stop = CancellationToken::new();

        prepare_or_stop("metadata", open(None).database(), &migrations, &stop).await.unwrap();
        assert!(!stop.is_cancelled(), "nothing to prepare in memory");

        let error = prepare_or_stop("metadata", open(Some("sqlite::memory:")).database(), &migrations, &stop)
            .await
            .unwrap_err();
        assert!(stop.is_cancelled());
        let chain = Chain(&error).to_string();
        assert!(
            chain.starts_with(
                "the metadata service cannot use its database: the migrations of database sqlite::memory: failed"
            ),
            "{chain}"
        );
    }
}
