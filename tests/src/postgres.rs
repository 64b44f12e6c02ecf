//! A throwaway PostgreSQL server for tests: `testbed`'s, whose failures
//! here are panics with the server's log. It listens on 127.0.0.1 at a
//! free (or a chosen) port and is removed when the handle is dropped.
use std::ops::Deref;

pub use testbed::postgres::PASSWORD;

pub struct Postgres(testbed::postgres::Postgres);

impl Postgres {
    /// A new server on a free port, accepting connections when this returns.
    pub fn start() -> Self {
        Self::start_on(crate::free_port())
    }

    /// A new server on `port` (for a test that starts a client before its
    /// server).
    pub fn start_on(port: u16) -> Self {
        Self(testbed::postgres::Postgres::start(port).unwrap_or_else(|error| panic!("{error}")))
    }

    /// Stops the server, keeping its data, until [`Postgres::resume`].
    pub fn pause(&self) {
        self.0.pause().unwrap_or_else(|error| panic!("{error}"));
    }

    /// Starts the server again on its data and port.
    pub fn resume(&self) {
        self.0.resume().unwrap_or_else(|error| panic!("{error}"));
    }

    /// Creates a new, empty database and returns its URL.
    pub fn create_database(&self) -> String {
        self.0.create_database().unwrap_or_else(|error| panic!("{error}"))
    }

    /// Runs `sql` in database `name`; returns its rows, one per line.
    pub fn execute(&self, name: &str, sql: &str) -> String {
        self.0.execute(name, sql).unwrap_or_else(|error| panic!("{error}"))
    }
}

/// The rest (`port`, `url`, `url_of`, `psql_command`, `log`) is `testbed`'s.
impl Deref for Postgres {
    type Target = testbed::postgres::Postgres;

    fn deref(&self) -> &Self::Target {
        &self.0
    }
}
