//! Metadata in a SQL database: one definition for both engines sqlx gives
//! us, since the schema (`metadata/migrations/`) and the statements are the
//! same; `$N` placeholders are understood by SQLite and PostgreSQL alike.

const SELECT: &str = "SELECT title, description, director FROM movies WHERE id = $1";

const UPSERT: &str = "INSERT INTO movies (id, title, description, director) VALUES ($1, $2, $3, $4) \
     ON CONFLICT (id) DO UPDATE SET \
     title = excluded.title, description = excluded.description, director = excluded.director";

/// The metadata repository over one engine (`Sqlite` or `Postgres`): its
/// type, the engine, and its doc line. A macro because both engines run the
/// same statements with the same sqlx calls, over types sqlx keeps apart per
/// engine.
macro_rules! metadata_over {
    ($(#[$doc:meta])* $name:ident, $engine:ident) => {
        sql_store::sql_repository!($(#[$doc])* $name, $engine);

        impl super::MetadataRepository for $name {
            async fn get(
                &self,
                id: &crate::model::MovieId,
            ) -> Result<crate::model::Metadata, super::RepositoryError> {
                let row: Option<(String, String, String)> = sqlx::query_as(SELECT)
                    .bind(id.as_str())
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(|error| super::RepositoryError::from_sqlx(&self.name, error))?;
                let (title, description, director) =
                    row.ok_or_else(|| super::RepositoryError::NotFound(id.clone()))?;
                Ok(crate::model::Metadata { id: id.clone(), title, description, director })
            }

            async fn put(&self, metadata: crate::model::Metadata) -> Result<(), super::RepositoryError> {
                sqlx::query(UPSERT)
                    .bind(metadata.id.as_str())
                    .bind(&metadata.title)
                    .bind(&metadata.description)
                    .bind(&metadata.director)
                    .execute(&self.pool)
                    .await
                    .map_err(|error| super::RepositoryError::from_sqlx(&self.name, error))?;
                Ok(())
            }
        }
    };
}

metadata_over!(
    /// Metadata in a SQLite file (`--database-url sqlite:PATH`).
    SqliteRepository,
    Sqlite
);

metadata_over!(
    /// Metadata in a PostgreSQL database (`--database-url postgres://...`).
    PostgresRepository,
    Postgres
);
