//! The database a service stores its data in, chosen by one URL: the
//! `--database-url` flag and its pool settings (shared by every service with
//! a store), the URL's redacted form for logs and errors, opening the pool,
//! and preparing it at start (connect, with retries for a server that is not
//! up yet, then run the service's embedded migrations); and [`Store`], the
//! store of a service, in memory or over that database.
mod store;

use std::{fmt, str::FromStr, time::Duration};

use backon::{ExponentialBuilder, Retryable};
use sqlx::{
    ConnectOptions, Connection, PgPool, SqlitePool,
    migrate::{MigrateError, Migrator},
    pool::PoolOptions,
    postgres::PgConnectOptions,
    sqlite::{SqliteConnectOptions, SqliteJournalMode, SqliteSynchronous},
};

#[doc(hidden)]
pub use sqlx;
pub use store::{SqlRepository, Store, UnusableDatabase, prepare_or_stop};

/// Pages a SQLite connection may keep in memory: 64 MiB, as many pages as
/// the ratings of a million events fill, so that the pages a batch of
/// random keys touches are read once rather than from the OS each time.
/// SQLite's default is 2 MiB.
const SQLITE_CACHE_KIB: i64 = 64 * 1024;
/// Pages the write-ahead log may hold before a commit copies them into the
/// database file (80 MiB; SQLite's default is 1,000 pages, 4 MiB). A batch
/// of random keys dirties thousands of pages, so with the default nearly
/// every commit ran a checkpoint; with this one, a page written by several
/// commits is copied once.
const SQLITE_WAL_AUTOCHECKPOINT_PAGES: u32 = 20_000;

/// What a commit to a SQLite file must survive. PostgreSQL is not
/// concerned: its commits wait for the server's disk, since a server that
/// lost a commit could not tell the replicas that had built on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Commits {
    /// A power cut: each commit waits for the disk (`synchronous=FULL`).
    /// For what a client was told is stored.
    SurvivePowerLoss,
    /// A crash of the process: each commit waits for the OS only
    /// (`synchronous=NORMAL`). A power cut may undo the last commits, never
    /// corrupt the file. For a store rebuilt from elsewhere, whose record of
    /// what it has applied is undone with them: rating's, which then reads
    /// those events from the topic again.
    SurviveCrash,
}

impl Commits {
    fn synchronous(self) -> SqliteSynchronous {
        match self {
            Self::SurvivePowerLoss => SqliteSynchronous::Full,
            Self::SurviveCrash => SqliteSynchronous::Normal,
        }
    }
}

/// Where a service keeps its data.
#[derive(Debug, Clone, clap::Args)]
pub struct DatabaseArgs {
    /// Database to store data in: sqlite:PATH (a file, created when missing), postgres://USER:PASSWORD@HOST:PORT/DB; in memory when unset
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<DatabaseUrl>,

    /// Most connections the service keeps open to the database
    #[arg(long, env = "DATABASE_MAX_CONNECTIONS", default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..))]
    pub database_max_connections: u32,

    /// How long a connection attempt, or a request waiting for a free connection, may take before it fails
    #[arg(long, env = "DATABASE_CONNECT_TIMEOUT", default_value = "5s", value_parser = humantime::parse_duration)]
    pub database_connect_timeout: Duration,
}

/// A database URL as given. It may hold a password, so it shows itself only
/// redacted ([`DatabaseUrl::redacted`]), in `Display` and `Debug` alike.
#[derive(Clone, PartialEq, Eq)]
pub struct DatabaseUrl(String);

impl DatabaseUrl {
    pub fn new(url: impl Into<String>) -> Self {
        Self(url.into())
    }

    /// The URL with its password (in the user info or a `password` query
    /// parameter) replaced by `***`: what logs and error messages show.
    pub fn redacted(&self) -> String {
        let Ok(mut url) = url::Url::parse(&self.0) else {
            return redact_unparsable(&self.0);
        };
        if url.password().is_some() {
            // Only URLs that cannot carry a password refuse one.
            let _ = url.set_password(Some("***"));
        }
        if url.query_pairs().any(|(key, _)| key == "password") {
            let pairs: Vec<(String, String)> = url
                .query_pairs()
                .map(|(key, value)| {
                    let value = if key == "password" { "***".to_string() } else { value.into_owned() };
                    (key.into_owned(), value)
                })
                .collect();
            url.query_pairs_mut().clear().extend_pairs(pairs);
        }
        url.to_string().replace("%2A%2A%2A", "***")
    }

    /// The URL scheme, e.g. `postgres`, or `None` when there is no `scheme:`.
    fn scheme(&self) -> Option<&str> {
        let (scheme, _) = self.0.split_once(':')?;
        let valid = scheme.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
            && scheme.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
        valid.then_some(scheme)
    }
}

/// A URL that `url` cannot parse may still hold a password: keep the scheme
/// and whatever follows the last `@` of the authority, hide the rest.
fn redact_unparsable(raw: &str) -> String {
    let Some((scheme, rest)) = raw.split_once("://") else {
        return raw.to_string();
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(authority_end);
    match authority.rsplit_once('@') {
        Some((user_info, host)) => {
            let user = user_info.split_once(':').map_or(user_info, |(user, _)| user);
            let password = if user_info.contains(':') { ":***" } else { "" };
            format!("{scheme}://{user}{password}@{host}{}", redact_unparsable_query(path))
        }
        None => format!("{scheme}://{authority}{}", redact_unparsable_query(path)),
    }
}

fn redact_unparsable_query(path: &str) -> String {
    match path.split_once('?') {
        Some((before, query)) if query.split('&').any(|pair| pair.starts_with("password=")) => {
            format!("{before}?***")
        }
        _ => path.to_string(),
    }
}

impl FromStr for DatabaseUrl {
    type Err = std::convert::Infallible;

    /// Never fails, so that clap never echoes the URL (and its password) in
    /// an error; [`DatabaseArgs::open`] checks it.
    fn from_str(raw: &str) -> Result<Self, Self::Err> {
        Ok(Self::new(raw))
    }
}

impl fmt::Display for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

impl fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DatabaseUrl({:?})", self.redacted())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DatabaseError {
    #[error(
        "database URL {url} has scheme \"{scheme}\": expected sqlite:PATH, sqlite://PATH, postgres://... or postgresql://..."
    )]
    UnsupportedScheme { url: String, scheme: String },
    #[error("database URL {url} has no scheme: expected sqlite:PATH, postgres://... or postgresql://...")]
    NoScheme { url: String },
    #[error("database URL {url} is not valid")]
    InvalidUrl {
        url: String,
        #[source]
        source: sqlx::Error,
    },
    #[error("cannot open database {database}")]
    Open {
        database: String,
        #[source]
        source: sqlx::Error,
    },
    #[error("the migrations of database {database} failed")]
    Migrate {
        database: String,
        #[source]
        source: MigrateError,
    },
}

/// A query that failed, sorted by what the caller can do about it; each
/// names the database (redacted) and keeps sqlx's error as its source.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    /// The database cannot be reached, or has no free connection in time:
    /// try again later (gRPC UNAVAILABLE).
    #[error("database {database} is unavailable")]
    Unavailable {
        database: String,
        #[source]
        source: sqlx::Error,
    },
    /// The transaction collided with a concurrent one (a deadlock, a
    /// serialization failure) and was rolled back: run it again.
    #[error("database {database} rolled the transaction back after a conflict with a concurrent one")]
    Conflict {
        database: String,
        #[source]
        source: sqlx::Error,
    },
    /// The database refused a value (its encoding or its length): the
    /// request is at fault (gRPC INVALID_ARGUMENT).
    #[error("database {database} refused the value")]
    ValueRefused {
        database: String,
        #[source]
        source: sqlx::Error,
    },
    /// Anything else (a bug, a schema out of step).
    #[error("database {database} failed")]
    Failed {
        database: String,
        #[source]
        source: sqlx::Error,
    },
}

impl QueryError {
    /// Sorts `source`, an error of the database named `database`.
    pub fn from_sqlx(database: &str, source: sqlx::Error) -> Self {
        let database = database.to_string();
        match classify(&source) {
            Kind::Unavailable => Self::Unavailable { database, source },
            Kind::Conflict => Self::Conflict { database, source },
            Kind::ValueRefused => Self::ValueRefused { database, source },
            Kind::Failed => Self::Failed { database, source },
        }
    }

    /// Whether waiting may help (the database is down or busy).
    pub fn is_unavailable(&self) -> bool {
        matches!(self, Self::Unavailable { .. })
    }

    /// Whether running the same transaction again will do (a deadlock or a
    /// serialization failure).
    pub fn is_conflict(&self) -> bool {
        matches!(self, Self::Conflict { .. })
    }
}

enum Kind {
    Unavailable,
    Conflict,
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
            // down, starting up); 40 transaction rollback (40001
            // serialization failure, 40P01 deadlock); 22 data exception
            // (e.g. a NUL byte, a string too long); 54000 program limit
            // (e.g. an index row too large).
            Some(code) if code.starts_with("08") || code.starts_with("53") || code.starts_with("57") => {
                Kind::Unavailable
            }
            Some(code) if code.starts_with("40") => Kind::Conflict,
            Some(code) if code.starts_with("22") || code == "54000" => Kind::ValueRefused,
            // SQLite result codes: 5 BUSY, 6 LOCKED, 14 CANTOPEN; 18 TOOBIG.
            Some("5" | "6" | "14") => Kind::Unavailable,
            Some("18") => Kind::ValueRefused,
            _ => Kind::Failed,
        },
        _ => Kind::Failed,
    }
}

/// An open pool of connections to one database, of either engine.
#[derive(Debug, Clone)]
pub enum Database {
    Sqlite { pool: SqlitePool, name: String },
    Postgres { pool: PgPool, name: String },
}

impl DatabaseArgs {
    /// The database these settings name, its pool open but not connected
    /// yet (see [`Database::prepare`]), or `None` for an in-memory store;
    /// `commits` says what a commit to a SQLite file must survive.
    pub fn open(&self, commits: Commits) -> Result<Option<Database>, DatabaseError> {
        let Some(url) = &self.database_url else {
            return Ok(None);
        };
        let name = url.redacted();
        let invalid = |source| DatabaseError::InvalidUrl { url: name.clone(), source };
        match url.scheme() {
            Some("sqlite") => {
                let options = SqliteConnectOptions::from_str(&url.0)
                    .map_err(invalid)?
                    .create_if_missing(true)
                    .journal_mode(SqliteJournalMode::Wal)
                    .synchronous(commits.synchronous())
                    .pragma("cache_size", format!("-{SQLITE_CACHE_KIB}"))
                    .pragma("wal_autocheckpoint", SQLITE_WAL_AUTOCHECKPOINT_PAGES.to_string())
                    .busy_timeout(self.database_connect_timeout);
                // Each connection to `sqlite::memory:` is a database of its own.
                let in_memory = url.0.contains(":memory:") || url.0.contains("mode=memory");
                let pool = if in_memory {
                    self.pool_options(1).idle_timeout(None).max_lifetime(None)
                } else {
                    self.pool_options(self.database_max_connections)
                };
                Ok(Some(Database::Sqlite { pool: pool.connect_lazy_with(options), name }))
            }
            Some("postgres" | "postgresql") => {
                let options = PgConnectOptions::from_str(&url.0).map_err(invalid)?;
                let pool = self.pool_options(self.database_max_connections).connect_lazy_with(options);
                Ok(Some(Database::Postgres { pool, name }))
            }
            Some(scheme) => Err(DatabaseError::UnsupportedScheme { url: name, scheme: scheme.to_string() }),
            None => Err(DatabaseError::NoScheme { url: name }),
        }
    }
}

impl DatabaseArgs {
    fn pool_options<DB: sqlx::Database>(&self, max_connections: u32) -> PoolOptions<DB> {
        PoolOptions::new().max_connections(max_connections).acquire_timeout(self.database_connect_timeout)
    }
}

impl Database {
    /// The URL of the database, redacted: how logs and errors name it.
    pub fn name(&self) -> &str {
        match self {
            Database::Sqlite { name, .. } | Database::Postgres { name, .. } => name,
        }
    }

    /// Connects, then runs `migrations`. A PostgreSQL server that cannot be
    /// reached is tried again with backoff for as long as it takes (each
    /// failure logged), so a service can start before its database; a
    /// SQLite file that cannot be opened, or a migration that fails, is an
    /// error.
    pub async fn prepare(&self, migrations: &Migrator) -> Result<(), DatabaseError> {
        let migrate = |source| DatabaseError::Migrate { database: self.name().to_string(), source };
        match self {
            Database::Sqlite { pool, name } => {
                let mut connection =
                    pool.acquire().await.map_err(|source| DatabaseError::Open { database: name.clone(), source })?;
                migrations.run_direct(&mut *connection).await.map_err(migrate)?;
            }
            Database::Postgres { pool, name } => {
                // A connection of its own rather than one from the pool, so
                // that a failure says why (refused, unknown host, bad
                // password) rather than only that the pool timed out.
                let options = pool.connect_options();
                let timeout = pool.options().get_acquire_timeout();
                let connect = || async {
                    match tokio::time::timeout(timeout, options.connect()).await {
                        Ok(connected) => connected,
                        Err(_) => Err(sqlx::Error::Io(std::io::Error::new(
                            std::io::ErrorKind::TimedOut,
                            format!("no connection within {}", humantime::format_duration(timeout)),
                        ))),
                    }
                };
                let mut connection = connect
                    .retry(connect_backoff())
                    .notify(|error, delay| {
                        tracing::warn!(database = %name, %error, retry_in = ?delay,
                            "cannot connect to the database; trying again");
                    })
                    .await
                    .map_err(|source| DatabaseError::Open { database: name.clone(), source })?;
                migrations.run_direct(&mut connection).await.map_err(migrate)?;
                let _ = connection.close().await;
            }
        }
        tracing::info!(database = %self.name(), "database connected and migrated");
        Ok(())
    }
}

/// Retries of the first connection: quick at first, then every few seconds,
/// without end (shutdown ends the wait).
fn connect_backoff() -> ExponentialBuilder {
    ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(100))
        .with_max_delay(Duration::from_secs(5))
        .with_jitter()
        .without_max_times()
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Probe {
        #[command(flatten)]
        database: DatabaseArgs,
    }

    fn args(argv: &[&str]) -> DatabaseArgs {
        Probe::try_parse_from(["probe"].iter().chain(argv)).unwrap().database
    }

    #[test]
    fn passwords_are_redacted() {
        let cases = [
            ("postgres://user:s3cret@db.example:5432/movies", "postgres://user:***@db.example:5432/movies"),
            (
                "postgresql://user:p%40ss@127.0.0.1/movies?sslmode=disable",
                "postgresql://user:***@127.0.0.1/movies?sslmode=disable",
            ),
            ("postgres://user@host/db", "postgres://user@host/db"),
            ("postgres://host/db?user=u&password=s3cret", "postgres://host/db?user=u&password=***"),
            ("sqlite:data/metadata.db", "sqlite:data/metadata.db"),
            ("sqlite:///var/lib/metadata.db?mode=rwc", "sqlite:///var/lib/metadata.db?mode=rwc"),
            // Not a URL the `url` crate accepts (port out of range): still redacted.
            ("postgres://user:s3cret@host:99999/db", "postgres://user:***@host:99999/db"),
            ("postgres://user:s3cret@host:99999/db?password=s3cret", "postgres://user:***@host:99999/db?***"),
        ];
        for (raw, redacted) in cases {
            let url = DatabaseUrl::new(raw);
            assert_eq!(url.redacted(), redacted, "{raw}");
            assert_eq!(url.to_string(), redacted);
            assert!(!format!("{url:?}").contains("s3cret"), "{url:?}");
        }
    }

    #[test]
    fn no_url_is_in_memory() {
        assert!(args(&[]).open(Commits::SurvivePowerLoss).unwrap().is_none());
    }

    #[tokio::test]
    async fn the_scheme_selects_the_store() {
        let sqlite = args(&["--database-url", "sqlite:metadata.db"]).open(Commits::SurvivePowerLoss).unwrap().unwrap();
        assert!(matches!(sqlite, Database::Sqlite { .. }));
        let sqlite =
            args(&["--database-url", "sqlite://data/metadata.db"]).open(Commits::SurvivePowerLoss).unwrap().unwrap();
        assert!(matches!(sqlite, Database::Sqlite { .. }));
        for url in ["postgres://u:p@127.0.0.1:5432/db", "postgresql://u:p@localhost/db"] {
            let postgres = args(&["--database-url", url]).open(Commits::SurvivePowerLoss).unwrap().unwrap();
            assert!(matches!(postgres, Database::Postgres { .. }), "{url}");
            assert_eq!(postgres.name(), url.replace(":p@", ":***@"));
        }
    }

    #[tokio::test]
    async fn a_sqlite_file_commits_as_the_service_asks_with_a_larger_cache_and_log() {
        let dir = tempfile::tempdir().unwrap();
        for (commits, synchronous) in [(Commits::SurvivePowerLoss, 2), (Commits::SurviveCrash, 1)] {
            let url = format!("sqlite:{}", dir.path().join(format!("{commits:?}.db")).display());
            let Some(Database::Sqlite { pool, .. }) = args(&["--database-url", &url]).open(commits).unwrap() else {
                panic!("{url} is not a SQLite database");
            };
            let pragma = |name: &'static str| {
                let pool = pool.clone();
                async move { sqlx::query_scalar::<_, i64>(&format!("PRAGMA {name}")).fetch_one(&pool).await.unwrap() }
            };
            let journal: String = sqlx::query_scalar("PRAGMA journal_mode").fetch_one(&pool).await.unwrap();
            assert_eq!(journal, "wal");
            assert_eq!(pragma("synchronous").await, synchronous, "{commits:?}");
            assert_eq!(pragma("cache_size").await, -SQLITE_CACHE_KIB);
            assert_eq!(pragma("wal_autocheckpoint").await, i64::from(SQLITE_WAL_AUTOCHECKPOINT_PAGES));
        }
    }

    #[test]
    fn an_unknown_scheme_is_refused_without_the_password() {
        let error =
            args(&["--database-url", "mysql://root:s3cret@localhost/db"]).open(Commits::SurvivePowerLoss).unwrap_err();
        assert_eq!(
            error.to_string(),
            "database URL mysql://root:***@localhost/db has scheme \"mysql\": \
             expected sqlite:PATH, sqlite://PATH, postgres://... or postgresql://..."
        );
        let error = args(&["--database-url", "metadata.db"]).open(Commits::SurvivePowerLoss).unwrap_err();
        assert!(error.to_string().contains("has no scheme"), "{error}");
    }

    #[test]
    fn pool_settings_have_flags_and_defaults() {
        let defaults = args(&[]);
        assert_eq!((defaults.database_max_connections, defaults.database_connect_timeout), (5, Duration::from_secs(5)));
        let set = args(&["--database-max-connections", "2", "--database-connect-timeout", "250ms"]);
        assert_eq!((set.database_max_connections, set.database_connect_timeout), (2, Duration::from_millis(250)));
        assert!(Probe::try_parse_from(["probe", "--database-max-connections", "0"]).is_err());
    }
}
