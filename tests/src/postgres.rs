//! A throwaway PostgreSQL server for tests: a fresh cluster (`initdb`) in a
//! temporary directory, listening on 127.0.0.1 at a free (or a chosen) port,
//! trusting every local connection, removed when the handle is dropped.
//!
//! The server refuses to run as root, so under root the cluster belongs to
//! the `postgres` user and its tools run through `runuser`. The binaries are
//! found in `$POSTGRES_BIN_DIR`, else the newest `/usr/lib/postgresql/*/bin`
//! (`scripts/install-tools.sh --for-tests` installs them).
use std::{
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
    process::{Command, Output},
    sync::atomic::{AtomicUsize, Ordering},
};

/// The password test URLs carry: trust authentication ignores it, and tests
/// check that it never shows in a log or an error.
pub const PASSWORD: &str = "pg-test-secret";

pub struct Postgres {
    bin_dir: PathBuf,
    /// Holds the data directory, the socket and the server log; removed on drop.
    dir: tempfile::TempDir,
    port: u16,
    owner: Option<Owner>,
}

/// The unprivileged user the cluster runs as when the tests run as root.
#[derive(Clone, Copy)]
struct Owner {
    uid: u32,
    gid: u32,
}

impl Postgres {
    /// A new server on a free port, accepting connections when this returns.
    pub fn start() -> Self {
        Self::start_on(crate::free_port())
    }

    /// A new server on `port` (for a test that starts a client before its
    /// server).
    pub fn start_on(port: u16) -> Self {
        let bin_dir = bin_dir();
        let dir = tempfile::Builder::new().prefix("pg-test-").tempdir().expect("a temporary directory");
        let owner = running_as_root().then(postgres_user);
        if let Some(owner) = owner {
            std::os::unix::fs::chown(dir.path(), Some(owner.uid), Some(owner.gid))
                .expect("chown the cluster directory");
        }
        let server = Self { bin_dir, dir, port, owner };
        let data = server.data_dir();
        server.run_tool(
            "initdb",
            &["-D", path(&data), "-U", "postgres", "--auth=trust", "--encoding=UTF8", "--locale=C", "--no-sync"],
        );
        server.resume();
        server
    }

    /// Stops the server (fast shutdown: open connections are cut), keeping
    /// its data; [`Postgres::resume`] starts it again on the same port.
    pub fn pause(&self) {
        self.run_tool("pg_ctl", &["-D", path(&self.data_dir()), "-m", "fast", "-w", "-t", "60", "stop"]);
    }

    /// Starts the server on its data and port; returns once it accepts
    /// connections.
    pub fn resume(&self) {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c full_page_writes=off",
            self.port,
            path(self.dir.path())
        );
        let log = self.dir.path().join("server.log");
        let data = self.data_dir();
        self.run_tool("pg_ctl", &["-D", path(&data), "-o", &options, "-l", path(&log), "-w", "-t", "60", "start"]);
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The URL of database `name` (with [`PASSWORD`] in it).
    pub fn url_of(&self, name: &str) -> String {
        format!("postgres://postgres:{PASSWORD}@127.0.0.1:{}/{name}", self.port)
    }

    /// The URL of the `postgres` database every cluster has.
    pub fn url(&self) -> String {
        self.url_of("postgres")
    }

    /// Creates a new, empty database and returns its URL.
    pub fn create_database(&self) -> String {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let name = format!("test_{}", NEXT.fetch_add(1, Ordering::Relaxed));
        self.run_tool("createdb", &["-h", "127.0.0.1", "-p", &self.port.to_string(), "-U", "postgres", &name]);
        self.url_of(&name)
    }

    /// Runs `sql` in database `name` with `psql`, stopping at the first error.
    pub fn execute(&self, name: &str, sql: &str) {
        let port = self.port.to_string();
        let args = ["-h", "127.0.0.1", "-p", &port, "-U", "postgres", "-d", name, "-v", "ON_ERROR_STOP=1", "-c", sql];
        self.run_tool("psql", &args);
    }

    /// `psql` connected to this server as `postgres`, as a shell command line
    /// to which a caller adds the database and what to run. (The client,
    /// unlike the server, runs as any user.)
    pub fn psql_command(&self) -> String {
        format!("{} -h 127.0.0.1 -p {} -U postgres", self.bin_dir.join("psql").display(), self.port)
    }

    /// The server's own log, for a failing test's message.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// `program` run as the cluster's owner (`postgres` when the tests run
    /// as root), in the cluster directory, the only one the owner may enter.
    fn as_owner(&self, program: &Path) -> Command {
        let mut command = match self.owner {
            Some(_) => {
                let mut command = Command::new("runuser");
                command.args(["-u", "postgres", "--"]).arg(program);
                command
            }
            None => Command::new(program),
        };
        command.current_dir(self.dir.path());
        command
    }

    /// Runs a PostgreSQL tool as the cluster's owner; panics with its output
    /// when it fails.
    fn run_tool(&self, tool: &str, args: &[&str]) -> Output {
        let program = self.bin_dir.join(tool);
        let mut command = self.as_owner(&program);
        command.args(args);
        let output = command.output().unwrap_or_else(|error| panic!("cannot run {}: {error}", program.display()));
        assert!(
            output.status.success(),
            "{tool} {args:?} failed ({}):\n{}{}\n{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr),
            self.log()
        );
        output
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let data = self.data_dir();
        let args = ["-D", path(&data), "-m", "immediate", "-w", "stop"];
        let _ = self.as_owner(&self.bin_dir.join("pg_ctl")).args(args).output();
        // The TempDir removes the directory next.
    }
}

fn path(path: &Path) -> &str {
    path.to_str().expect("a UTF-8 path")
}

fn running_as_root() -> bool {
    std::fs::metadata("/proc/self").map(|metadata| metadata.uid() == 0).unwrap_or(false)
}

fn postgres_user() -> Owner {
    let id = |flag: &str| -> u32 {
        let output = Command::new("id").args([flag, "postgres"]).output().expect("run id");
        assert!(output.status.success(), "no `postgres` user: run scripts/install-tools.sh --for-tests");
        String::from_utf8_lossy(&output.stdout).trim().parse().expect("a numeric id")
    };
    Owner { uid: id("-u"), gid: id("-g") }
}

/// The directory of `initdb`, `pg_ctl`, `createdb` and `psql`.
fn bin_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("POSTGRES_BIN_DIR") {
        return PathBuf::from(dir);
    }
    let versions = std::fs::read_dir("/usr/lib/postgresql").into_iter().flatten().flatten();
    let newest = versions
        .filter_map(|entry| Some((entry.file_name().to_str()?.parse::<u32>().ok()?, entry.path().join("bin"))))
        .filter(|(_, bin)| bin.join("initdb").exists())
        .max_by_key(|(version, _)| *version);
    match newest {
        Some((_, bin)) => bin,
        None => panic!(
            "no PostgreSQL under /usr/lib/postgresql/*/bin: run scripts/install-tools.sh --for-tests \
             or set POSTGRES_BIN_DIR"
        ),
    }
}
