//! The metadata repository contract: one suite of checks, run against every
//! store (memory, a SQLite file, a real PostgreSQL), so they all behave the
//! same behind `MetadataRepository`.
use std::time::Duration;

use contract::id::MovieId;
use e2e::postgres::{PASSWORD, Postgres};
use metadata::{
    model::Metadata,
    repository::{MIGRATIONS, MetadataRepository, RepositoryError, Store, memory::MemoryRepository},
};
use sql_store::{DatabaseArgs, DatabaseUrl, QueryError};

fn id(raw: &str) -> MovieId {
    MovieId::parse("id", raw.into()).unwrap()
}

fn movie(raw_id: &str, title: &str, description: &str, director: &str) -> Metadata {
    Metadata { id: id(raw_id), title: title.into(), description: description.into(), director: director.into() }
}

/// What every store must do.
async fn repository_contract(repository: impl MetadataRepository) {
    let missing = repository.get(&id("1")).await;
    assert!(matches!(&missing, Err(RepositoryError::NotFound(missing)) if *missing == id("1")), "{missing:?}");

    let heat = movie("1", "Heat", "LA crime", "Michael Mann");
    repository.put(heat.clone()).await.unwrap();
    assert_eq!(repository.get(&id("1")).await.unwrap(), heat);

    // Put replaces every field of the movie stored under the same id.
    let heat_again = movie("1", "Heat (1995)", "Los Angeles crime saga", "M. Mann");
    repository.put(heat_again.clone()).await.unwrap();
    assert_eq!(repository.get(&id("1")).await.unwrap(), heat_again);

    // Other ids are other movies: case and spaces count.
    let others = [
        movie("2", "Ronin", "", ""),
        movie("HEAT", "Amélie — l'été \"😀\"", "quotes ' \" and; semicolons -- too", "Jean-Pierre Jeunet"),
        movie("1 ", "a trailing space", "\n\ttabs and newlines\n", "x"),
    ];
    for other in &others {
        repository.put(other.clone()).await.unwrap();
    }
    for other in &others {
        assert_eq!(&repository.get(&other.id).await.unwrap(), other);
    }
    assert_eq!(repository.get(&id("1")).await.unwrap(), heat_again, "other puts leave movie 1 as it was");
}

fn database_args(url: &str) -> DatabaseArgs {
    DatabaseArgs {
        database_url: Some(DatabaseUrl::new(url)),
        database_max_connections: 2,
        database_connect_timeout: Duration::from_secs(2),
    }
}

/// The store `url` names, connected and migrated.
async fn prepared_store(url: &str) -> Store {
    let store = Store::open(&database_args(url)).expect("a valid database URL");
    store.prepare(&MIGRATIONS).await.unwrap_or_else(|error| panic!("{}", telemetry::Chain(&error)));
    store
}

#[tokio::test]
async fn memory_store_keeps_the_contract() {
    repository_contract(MemoryRepository::default()).await;
}

#[tokio::test]
async fn sqlite_store_keeps_the_contract() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite:{}", dir.path().join("metadata.db").display());
    repository_contract(prepared_store(&url).await).await;
}

#[tokio::test]
async fn postgres_store_keeps_the_contract() {
    let postgres = Postgres::start();
    repository_contract(prepared_store(&postgres.create_database()).await).await;
}

#[tokio::test]
async fn migrations_run_once_per_database() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("metadata.db").display());
    prepared_store(&url).await.put(movie("1", "Heat", "", "")).await.unwrap();
    let reopened = prepared_store(&url).await;
    assert_eq!(reopened.get(&id("1")).await.unwrap().title, "Heat");
}

#[tokio::test]
async fn an_unreachable_postgres_is_unavailable_naming_the_database_without_its_password() {
    let port = e2e::free_port();
    let url = format!("postgres://movies:{PASSWORD}@127.0.0.1:{port}/movies");
    let mut args = database_args(&url);
    args.database_connect_timeout = Duration::from_millis(300);
    let store = Store::open(&args).unwrap();
    for error in [store.get(&id("1")).await.unwrap_err(), store.put(movie("1", "Heat", "", "")).await.unwrap_err()] {
        assert!(matches!(error, RepositoryError::Database(QueryError::Unavailable { .. })), "{error:?}");
        let message = telemetry::Chain(&error).to_string();
        assert!(message.starts_with(&format!("database postgres://movies:***@127.0.0.1:{port}/movies is unavailable")));
        assert!(!message.contains(PASSWORD), "{message}");
    }
}
