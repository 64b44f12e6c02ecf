//! A throwaway PostgreSQL server: a fresh cluster (`initdb`) in a directory
//! of its own under the system's temporary directory, listening on
//! 127.0.0.1 at a given port, trusting every local connection, stopped and
//! removed when the handle is dropped.
//!
//! The server refuses to run as root, so under root the cluster belongs to
//! the `postgres` user and its tools run through `runuser`. The binaries are
//! found in `$POSTGRES_BIN_DIR`, else the newest `/usr/lib/postgresql/*/bin`
//! (`scripts/install-tools.sh --for-tests` installs them).
use std::{
    io,
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
    process::{Command, ExitStatus},
    sync::atomic::{AtomicUsize, Ordering},
};

/// The password the URLs carry: trust authentication ignores it, and tests
/// check that it never shows in a log or an error.
pub const PASSWORD: &str = "pg-test-secret";

#[derive(Debug, thiserror::Error)]
pub enum PostgresError {
    #[error(
        "no PostgreSQL under /usr/lib/postgresql/*/bin: run scripts/install-tools.sh --for-tests or set \
         POSTGRES_BIN_DIR"
    )]
    NoBinaries,
    #[error("no `postgres` user to own the cluster: run scripts/install-tools.sh --for-tests")]
    NoUser,
    #[error("cannot prepare the cluster directory {path}: {source}")]
    Directory { path: PathBuf, source: io::Error },
    #[error("cannot run {program}: {source}")]
    Spawn { program: String, source: io::Error },
    #[error("{tool} {args:?} failed ({status}):\n{output}\n{log}")]
    Failed { tool: String, args: Vec<String>, status: ExitStatus, output: String, log: String },
}

pub struct Postgres {
    bin_dir: PathBuf,
    /// Holds the data directory, the socket and the server log.
    dir: PathBuf,
    port: u16,
    owner: Option<Owner>,
}

/// The unprivileged user the cluster runs as when the caller is root.
#[derive(Clone, Copy)]
struct Owner {
    uid: u32,
    gid: u32,
}

impl Postgres {
    /// A new cluster on `port`, accepting connections when this returns.
    pub fn start(port: u16) -> Result<Self, PostgresError> {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let bin_dir = bin_dir()?;
        let owner = if running_as_root() { Some(postgres_user()?) } else { None };
        let name = format!("pg-{}-{}-{port}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed));
        let dir = std::env::temp_dir().join(name);
        let prepared = std::fs::create_dir(&dir).and_then(|()| match owner {
            Some(owner) => std::os::unix::fs::chown(&dir, Some(owner.uid), Some(owner.gid)),
            None => Ok(()),
        });
        prepared.map_err(|source| PostgresError::Directory { path: dir.clone(), source })?;
        // From here on, dropping the handle removes the directory.
        let server = Self { bin_dir, dir, port, owner };
        let data = server.data_dir();
        server.run_tool(
            "initdb",
            &["-D", path(&data), "-U", "postgres", "--auth=trust", "--encoding=UTF8", "--locale=C", "--no-sync"],
        )?;
        server.resume()?;
        Ok(server)
    }

    /// Stops the server (fast shutdown: open connections are cut), keeping
    /// its data; [`Postgres::resume`] starts it again on the same port.
    pub fn pause(&self) -> Result<(), PostgresError> {
        self.run_tool("pg_ctl", &["-D", path(&self.data_dir()), "-m", "fast", "-w", "-t", "60", "stop"])?;
        Ok(())
    }

    /// Starts the server on its data and port; returns once it accepts
    /// connections. Durability is off (`fsync`, full page writes): the
    /// cluster is thrown away, and a crash of the machine is not what its
    /// users test.
    pub fn resume(&self) -> Result<(), PostgresError> {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c full_page_writes=off",
            self.port,
            path(&self.dir)
        );
        let log = self.dir.join("server.log");
        let data = self.data_dir();
        self.run_tool("pg_ctl", &["-D", path(&data), "-o", &options, "-l", path(&log), "-w", "-t", "60", "start"])?;
        Ok(())
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
    pub fn create_database(&self) -> Result<String, PostgresError> {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let name = format!("test_{}", NEXT.fetch_add(1, Ordering::Relaxed));
        self.run_tool("createdb", &["-h", "127.0.0.1", "-p", &self.port.to_string(), "-U", "postgres", &name])?;
        Ok(self.url_of(&name))
    }

    /// Runs `sql` in database `name` with `psql`, stopping at the first
    /// error; returns what it printed, unaligned and without headers (one
    /// row per line, columns split by `|`).
    pub fn execute(&self, name: &str, sql: &str) -> Result<String, PostgresError> {
        let port = self.port.to_string();
        let args =
            ["-h", "127.0.0.1", "-p", &port, "-U", "postgres", "-d", name, "-v", "ON_ERROR_STOP=1", "-At", "-c", sql];
        self.run_tool("psql", &args)
    }

    /// `psql` connected to this server as `postgres`, as a shell command line
    /// to which a caller adds the database and what to run. (The client,
    /// unlike the server, runs as any user.)
    pub fn psql_command(&self) -> String {
        format!("{} -h 127.0.0.1 -p {} -U postgres", self.bin_dir.join("psql").display(), self.port)
    }

    /// The process id of the server's postmaster (its backends are its
    /// children), while it runs.
    pub fn server_pid(&self) -> Option<u32> {
        let pid_file = std::fs::read_to_string(self.data_dir().join("postmaster.pid")).ok()?;
        pid_file.lines().next()?.trim().parse().ok()
    }

    /// The server's own log, for a failure's message.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default()
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }

    /// `program` run as the cluster's owner (`postgres` when the caller is
    /// root), in the cluster directory, the only one the owner may enter.
    fn as_owner(&self, program: &Path) -> Command {
        let mut command = match self.owner {
            Some(_) => {
                let mut command = Command::new("runuser");
                command.args(["-u", "postgres", "--"]).arg(program);
                command
            }
            None => Command::new(program),
        };
        command.current_dir(&self.dir);
        command
    }

    /// Runs a PostgreSQL tool as the cluster's owner; returns its stdout.
    fn run_tool(&self, tool: &str, args: &[&str]) -> Result<String, PostgresError> {
        let program = self.bin_dir.join(tool);
        let mut command = self.as_owner(&program);
        command.args(args);
        let output = command
            .output()
            .map_err(|source| PostgresError::Spawn { program: program.display().to_string(), source })?;
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        if output.status.success() {
            return Ok(stdout);
        }
        Err(PostgresError::Failed {
            tool: tool.to_owned(),
            args: args.iter().map(|arg| (*arg).to_owned()).collect(),
            status: output.status,
            output: format!("{stdout}{}", String::from_utf8_lossy(&output.stderr)),
            log: self.log(),
        })
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let data = self.data_dir();
        let args = ["-D", path(&data), "-m", "immediate", "-w", "stop"];
        let _ = self.as_owner(&self.bin_dir.join("pg_ctl")).args(args).output();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn path(path: &Path) -> &str {
    path.to_str().expect("a UTF-8 path")
}

fn running_as_root() -> bool {
    std::fs::metadata("/proc/self").map(|metadata| metadata.uid() == 0).unwrap_or(false)
}

fn postgres_user() -> Result<Owner, PostgresError> {
    let id = |flag: &str| -> Option<u32> {
        let output = Command::new("id").args([flag, "postgres"]).output().ok()?;
        if !output.status.success() {
            return None;
        }
        String::from_utf8_lossy(&output.stdout).trim().parse().ok()
    };
    Ok(Owner { uid: id("-u").ok_or(PostgresError::NoUser)?, gid: id("-g").ok_or(PostgresError::NoUser)? })
}

/// The directory of `initdb`, `pg_ctl`, `createdb` and `psql`.
fn bin_dir() -> Result<PathBuf, PostgresError> {
    if let Some(dir) = std::env::var_os("POSTGRES_BIN_DIR") {
        return Ok(PathBuf::from(dir));
    }
    let versions = std::fs::read_dir("/usr/lib/postgresql").into_iter().flatten().flatten();
    versions
        .filter_map(|entry| Some((entry.file_name().to_str()?.parse::<u32>().ok()?, entry.path().join("bin"))))
        .filter(|(_, bin)| bin.join("initdb").exists())
        .max_by_key(|(version, _)| *version)
        .map(|(_, bin)| bin)
        .ok_or(PostgresError::NoBinaries)
}
