//! Tansu, the Kafka-protocol broker of the tests and the benchmark, as a
//! child process on 127.0.0.1.
use std::{
    path::{Path, PathBuf},
    process::{Command, ExitStatus},
    time::Duration,
};

use crate::{ChildProcess, Output, ProcessError};

/// How long a starting broker may take to accept connections.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// Where the broker keeps its topics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Storage {
    /// In memory: gone when the broker stops.
    Memory,
    /// In `tansu.db` in the broker's directory: a broker started again
    /// there, on the same port, has everything back.
    Sqlite,
}

impl Storage {
    fn url(self) -> &'static str {
        match self {
            Storage::Memory => "memory://tansu/",
            Storage::Sqlite => "sqlite://tansu.db",
        }
    }
}

/// A running broker.
pub struct Tansu {
    process: ChildProcess,
    port: u16,
}

impl Tansu {
    /// The `tansu` program: the one on PATH, or else cargo's.
    pub fn program() -> Result<PathBuf, ProcessError> {
        if let Ok(output) = Command::new("sh").args(["-c", "command -v tansu"]).output()
            && output.status.success()
        {
            return Ok(PathBuf::from(String::from_utf8_lossy(&output.stdout).trim()));
        }
        let path = Path::new(&std::env::var("HOME").unwrap_or_default()).join(".cargo/bin/tansu");
        if path.exists() { Ok(path) } else { Err(ProcessError::TansuMissing) }
    }

    /// Starts `program` on 127.0.0.1:`port` with `directory` (created if
    /// need be) as its working directory, and waits until it accepts
    /// connections.
    pub fn start(
        program: &Path,
        port: u16,
        storage: Storage,
        directory: &Path,
        output: Output,
    ) -> Result<Self, ProcessError> {
        std::fs::create_dir_all(directory)
            .map_err(|source| ProcessError::Directory { path: directory.to_path_buf(), source })?;
        let url = format!("tcp://127.0.0.1:{port}");
        let mut command = Command::new(program);
        command
            .args(["broker", "--listener-url", &url, "--advertised-listener-url", &url])
            .args(["--storage-engine", storage.url()])
            .current_dir(directory)
            .env("RUST_LOG", "warn");
        let mut process = ChildProcess::start("tansu", command, output)?;
        process.wait_for_port(port, START_TIMEOUT)?;
        Ok(Self { process, port })
    }

    /// `127.0.0.1:PORT`, as Kafka clients take it.
    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    pub fn log(&self) -> String {
        self.process.log()
    }

    /// SIGTERM, then SIGKILL if it has not exited within `grace`.
    pub fn stop(mut self, grace: Duration) -> Result<ExitStatus, ProcessError> {
        self.process.stop(grace)
    }
}
