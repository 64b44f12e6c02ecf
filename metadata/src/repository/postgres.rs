//! Metadata in a PostgreSQL database (`--database-url postgres://...`).
use platform::database::Database;
use sqlx::PgPool;

use super::{MetadataRepository, RepositoryError};
use crate::model::{Metadata, MovieId};

pub struct PostgresRepository {
    pool: PgPool,
    /// The redacted URL, naming the database in errors.
    name: String,
}

impl PostgresRepository {
    pub fn new(pool: PgPool, name: String) -> Self {
        Self { pool, name }
    }

    pub fn database(&self) -> Database {
        Database::Postgres { pool: self.pool.clone(), name: self.name.clone() }
    }
}

impl MetadataRepository for PostgresRepository {
    async fn get(&self, id: &MovieId) -> Result<Metadata, RepositoryError> {
        let row: Option<(String, String, String)> =
            sqlx::query_as("SELECT title, description, director FROM movies WHERE id = $1")
                .bind(id.as_str())
                .fetch_optional(&self.pool)
                .await
                .map_err(|error| RepositoryError::from_sqlx(&self.name, error))?;
        let (title, description, director) = row.ok_or_else(|| RepositoryError::NotFound(id.clone()))?;
        Ok(Metadata { id: id.clone(), title, description, director })
    }

    async fn put(&self, metadata: Metadata) -> Result<(), RepositoryError> {
        sqlx::query(
            "INSERT INTO movies (id, title, description, director) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (id) DO UPDATE SET \
             title = excluded.title, description = excluded.description, director = excluded.director",
        )
        .bind(metadata.id.as_str())
        .bind(&metadata.title)
        .bind(&metadata.description)
        .bind(&metadata.director)
        .execute(&self.pool)
        .await
        .map_err(|error| RepositoryError::from_sqlx(&self.name, error))?;
        Ok(())
    }
}
