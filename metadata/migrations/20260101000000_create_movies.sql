-- The movies the metadata service knows. Portable SQL: the same migration
-- serves SQLite and PostgreSQL.
CREATE TABLE movies (
    id          TEXT PRIMARY KEY,
    title       TEXT NOT NULL,
    description TEXT NOT NULL,
    director    TEXT NOT NULL
);
