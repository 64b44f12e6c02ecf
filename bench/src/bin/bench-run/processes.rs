//! The processes a benchmark runs: services, the broker and the tools, each
//! on 127.0.0.1 with its output in a log file, stopped when dropped.
use std::{
    fs::File,
    net::{TcpListener, TcpStream},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::Context;
use nix::{
    sys::signal::{Signal, kill},
    unistd::Pid,
};

/// A free TCP port on 127.0.0.1 (free when asked; the process that binds it
/// comes right after).
pub fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// A long-running child process that stops (SIGTERM, then SIGKILL) when
/// dropped.
pub struct Running {
    pub name: String,
    child: Child,
    pub log: PathBuf,
}

impl Running {
    /// Starts `program` with `args` in `directory`, output to `log`.
    pub fn start(name: &str, program: &Path, args: &[String], directory: &Path, log: PathBuf) -> anyhow::Result<Self> {
        let output = File::create(&log).with_context(|| format!("create {}", log.display()))?;
        let child = Command::new(program)
            .args(args)
            .current_dir(directory)
            .env("RUST_LOG", "warn")
            .env_remove("CONSUL_HTTP_ADDR")
            .env_remove("KAFKA_BROKERS")
            .stdin(Stdio::null())
            .stdout(output.try_clone()?)
            .stderr(output)
            .spawn()
            .with_context(|| format!("start {}", program.display()))?;
        Ok(Self { name: name.to_owned(), child, log })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits until `port` on 127.0.0.1 accepts connections.
    pub fn wait_for_port(&mut self, port: u16, timeout: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Some(status) = self.child.try_wait()? {
                anyhow::bail!("{} exited with {status} before listening; see {}", self.name, self.log.display());
            }
            anyhow::ensure!(Instant::now() < deadline, "{} did not listen on port {port} in {timeout:?}", self.name);
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }

    /// SIGTERM, then SIGKILL if it has not exited within `grace`.
    pub fn stop(mut self, grace: Duration) {
        self.terminate(grace);
    }

    fn terminate(&mut self, grace: Duration) {
        if !matches!(self.child.try_wait(), Ok(None)) {
            return;
        }
        let _ = kill(Pid::from_raw(self.child.id() as i32), Signal::SIGTERM);
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if !matches!(self.child.try_wait(), Ok(None)) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.terminate(Duration::from_secs(5));
    }
}

/// Runs a tool to completion within `timeout`; returns its stdout, fails
/// with its stderr.
pub fn run_tool(program: &Path, args: &[String], timeout: Duration) -> anyhow::Result<Output> {
    let started = Instant::now();
    let mut child = Command::new(program)
        .args(args)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("start {}", program.display()))?;
    let pid = child.id();
    // Read the pipes on threads, so a chatty tool cannot block on a full pipe.
    let mut stdout = child.stdout.take().context("piped stdout")?;
    let mut stderr = child.stderr.take().context("piped stderr")?;
    let out = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = std::io::Read::read_to_string(&mut stdout, &mut text);
        text
    });
    let err = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = std::io::Read::read_to_string(&mut stderr, &mut text);
        text
    });
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if started.elapsed() > timeout {
            let _ = child.kill();
            let _ = child.wait();
            anyhow::bail!("{} (pid {pid}) did not finish in {timeout:?}", program.display());
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let finished = Instant::now();
    let stdout = out.join().unwrap_or_default();
    let stderr = err.join().unwrap_or_default();
    anyhow::ensure!(status.success(), "{} {} failed with {status}:\n{stderr}", program.display(), args.join(" "));
    Ok(Output { stdout, stderr, started, finished })
}

pub struct Output {
    pub stdout: String,
    pub stderr: String,
    pub started: Instant,
    pub finished: Instant,
}
