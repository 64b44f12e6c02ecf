//! A child process: any program, started from a [`Command`] that carries its
//! arguments, environment and working directory; its output read into
//! memory or written to a log file; waited on with deadlines; stopped with
//! SIGTERM, then SIGKILL after a grace period; killed if it is dropped while
//! still running.
use std::{
    ffi::OsStr,
    fs::File,
    io::{self, BufRead, BufReader, Read},
    net::{SocketAddr, TcpStream},
    path::PathBuf,
    process::{Child, Command, ExitStatus, Stdio},
    sync::{Arc, Mutex, PoisonError},
    thread::JoinHandle,
    time::{Duration, Instant},
};

use nix::{
    errno::Errno,
    sys::signal::{Signal, kill},
    unistd::Pid,
};

use crate::{free_port, poll_until};

/// How often a process is checked while waiting for it to listen or exit.
const POLL: Duration = Duration::from_millis(20);
/// How often a tool run to completion is checked: its finishing time is
/// measured (by the benchmark), to within this.
const TOOL_POLL: Duration = Duration::from_millis(10);
/// Starts of a server before giving up on finding it a free port.
const SERVER_TRIES: usize = 3;
/// What a suite service logs when its `--listen` address is taken.
const ADDRESS_TAKEN: &str = "cannot listen on";

/// Where a child's stdout and stderr go.
#[derive(Debug, Clone)]
pub enum Output {
    /// Read into memory as they come, each stream on its own.
    Captured,
    /// Both written to this file (created afresh), which outlives the process.
    File(PathBuf),
}

#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    #[error("cannot create the log file {path}: {source}")]
    LogFile { path: PathBuf, source: io::Error },
    #[error("cannot create the directory {path}: {source}")]
    Directory { path: PathBuf, source: io::Error },
    #[error("cannot find a free port: {0}")]
    FreePort(io::Error),
    #[error("cannot start {program}: {source}")]
    Spawn { program: String, source: io::Error },
    #[error("cannot send {signal} to {name}: {source}")]
    Signal { name: String, signal: Signal, source: Errno },
    #[error("cannot wait for {name}: {source}")]
    Wait { name: String, source: io::Error },
    #[error("{name} exited with {status} before listening on port {port}; {log}")]
    ExitedBeforeListening { name: String, status: ExitStatus, port: u16, log: String },
    #[error("{name} did not listen on port {port} within {timeout:?}; {log}")]
    NotListening { name: String, port: u16, timeout: Duration, log: String },
    #[error("{name} found no free port in {SERVER_TRIES} tries; {log}")]
    NoFreePort { name: String, log: String },
    #[error("{name} did not exit within {timeout:?}; {log}")]
    DidNotExit { name: String, timeout: Duration, log: String },
    #[error("{name} failed with {status}:\n{stderr}")]
    Failed { name: String, status: ExitStatus, stderr: String },
    #[error(
        "tansu is not installed: `cargo install tansu --features dynostore,libsql` (scripts/install-tools.sh does it)"
    )]
    TansuMissing,
}

/// A running (or exited) child process.
pub struct ChildProcess {
    name: String,
    child: Child,
    output: Kept,
}

/// Where the child's output is kept.
enum Kept {
    Captured { stdout: Capture, stderr: Capture },
    File(PathBuf),
}

/// One output stream read into memory by a thread of its own, so that a
/// chatty child never blocks on a full pipe.
struct Capture {
    text: Arc<Mutex<String>>,
    /// Ends when the child closes the stream, which it does when it exits.
    reader: Option<JoinHandle<()>>,
}

impl Capture {
    fn start(stream: impl Read + Send + 'static) -> Self {
        let text = Arc::new(Mutex::new(String::new()));
        let sink = text.clone();
        let reader = std::thread::spawn(move || {
            let mut stream = BufReader::new(stream);
            let mut line = Vec::new();
            while matches!(stream.read_until(b'\n', &mut line), Ok(read) if read > 0) {
                sink.lock().unwrap_or_else(PoisonError::into_inner).push_str(&String::from_utf8_lossy(&line));
                line.clear();
            }
        });
        Self { text, reader: Some(reader) }
    }

    fn text(&self) -> String {
        self.text.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// Waits until the stream has been read to its end.
    fn finish(&mut self) {
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
    }
}

/// A tool run to completion: what it printed, and when it was started and
/// seen to have exited.
#[derive(Debug, Clone)]
pub struct Finished {
    pub stdout: String,
    pub stderr: String,
    pub started: Instant,
    pub finished: Instant,
}

impl ChildProcess {
    /// Starts `command` (stdin closed, output as `output` says). `name` is
    /// what messages call it.
    pub fn start(name: impl Into<String>, mut command: Command, output: Output) -> Result<Self, ProcessError> {
        command.stdin(Stdio::null());
        match &output {
            Output::Captured => {
                command.stdout(Stdio::piped()).stderr(Stdio::piped());
            }
            Output::File(path) => {
                let log_file_error = |source| ProcessError::LogFile { path: path.clone(), source };
                let file = File::create(path).map_err(log_file_error)?;
                command.stdout(file.try_clone().map_err(log_file_error)?).stderr(file);
            }
        }
        let mut child = command.spawn().map_err(|source| ProcessError::Spawn { program: program(&command), source })?;
        let output = match output {
            Output::Captured => {
                let (Some(stdout), Some(stderr)) = (child.stdout.take(), child.stderr.take()) else {
                    unreachable!("stdout and stderr are piped")
                };
                Kept::Captured { stdout: Capture::start(stdout), stderr: Capture::start(stderr) }
            }
            Output::File(path) => Kept::File(path),
        };
        Ok(Self { name: name.into(), child, output })
    }

    /// Starts a server that takes `--listen 127.0.0.1:PORT` on a free port,
    /// and waits up to `timeout` until it accepts connections; returns it
    /// and its address. `command` makes the command line, `--listen` aside.
    /// Another process may take the free port before the server binds it: a
    /// server of the suite then exits saying so, and is started again on
    /// another port.
    pub fn start_server(
        name: &str,
        command: impl Fn() -> Command,
        output: &Output,
        timeout: Duration,
    ) -> Result<(Self, SocketAddr), ProcessError> {
        let mut last_log = String::new();
        for _ in 0..SERVER_TRIES {
            let address = SocketAddr::from(([127, 0, 0, 1], free_port().map_err(ProcessError::FreePort)?));
            let mut command = command();
            command.arg("--listen").arg(address.to_string());
            let mut process = Self::start(name, command, output.clone())?;
            match process.wait_for_port(address.port(), timeout) {
                Ok(()) => return Ok((process, address)),
                Err(ProcessError::ExitedBeforeListening { .. }) if process.log().contains(ADDRESS_TAKEN) => {
                    last_log = process.describe_log();
                }
                Err(error) => return Err(error),
            }
        }
        Err(ProcessError::NoFreePort { name: name.to_owned(), log: last_log })
    }

    /// Starts a server that takes `--listen ADDRESS` at the address given
    /// (several instances on one port, each on an address of its own), and
    /// waits up to `timeout` until it accepts connections there.
    pub fn start_server_at(
        name: &str,
        mut command: Command,
        output: &Output,
        address: SocketAddr,
        timeout: Duration,
    ) -> Result<Self, ProcessError> {
        command.arg("--listen").arg(address.to_string());
        let mut process = Self::start(name, command, output.clone())?;
        process.wait_for_address(address, timeout)?;
        Ok(process)
    }

    /// Runs `command` to completion within `timeout` (killed past it), its
    /// output captured; an unsuccessful exit is an error carrying its
    /// stderr.
    pub fn run(command: Command, timeout: Duration) -> Result<Finished, ProcessError> {
        let name = command_line(&command);
        let started = Instant::now();
        let mut process = Self::start(name, command, Output::Captured)?;
        let (status, finished) = match process.wait_polling(timeout, TOOL_POLL) {
            Ok(exited) => exited,
            Err(error) => {
                process.kill()?;
                return Err(error);
            }
        };
        if !status.success() {
            return Err(ProcessError::Failed { name: process.name.clone(), status, stderr: process.log() });
        }
        Ok(Finished { stdout: process.stdout(), stderr: process.log(), started, finished })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The child's log: what it has written to stderr so far, or, with a
    /// log file, the file (stdout and stderr). Once the child has been seen
    /// to exit, all of it.
    pub fn log(&self) -> String {
        match &self.output {
            Kept::Captured { stderr, .. } => stderr.text(),
            Kept::File(path) => {
                std::fs::read(path).map(|bytes| String::from_utf8_lossy(&bytes).into_owned()).unwrap_or_default()
            }
        }
    }

    /// What the child has written to stdout so far; empty with a log file.
    pub fn stdout(&self) -> String {
        match &self.output {
            Kept::Captured { stdout, .. } => stdout.text(),
            Kept::File(_) => String::new(),
        }
    }

    /// The log for an error message: the text itself, or where the file is.
    fn describe_log(&self) -> String {
        match &self.output {
            Kept::Captured { .. } => format!("its log:\n{}", self.log()),
            Kept::File(path) => format!("see {}", path.display()),
        }
    }

    pub fn signal(&self, signal: Signal) -> Result<(), ProcessError> {
        kill(Pid::from_raw(self.pid() as i32), signal).map_err(|source| ProcessError::Signal {
            name: self.name.clone(),
            signal,
            source,
        })
    }

    /// The exit status if the child has exited; its output is then all read.
    pub fn try_wait(&mut self) -> Result<Option<ExitStatus>, ProcessError> {
        let status = self.child.try_wait().map_err(|source| self.wait_error(source))?;
        if status.is_some() {
            self.finish_output();
        }
        Ok(status)
    }

    /// Waits up to `timeout` for the child to exit by itself.
    pub fn wait(&mut self, timeout: Duration) -> Result<ExitStatus, ProcessError> {
        self.wait_polling(timeout, POLL).map(|(status, _)| status)
    }

    /// Waits up to `timeout` for the child to exit; returns its status and
    /// when it was seen to exit (before its output is read to the end).
    fn wait_polling(&mut self, timeout: Duration, interval: Duration) -> Result<(ExitStatus, Instant), ProcessError> {
        let deadline = Instant::now() + timeout;
        let exited =
            poll_until(deadline, interval, || self.child.try_wait().transpose().map(|status| (status, Instant::now())));
        match exited {
            Some((Ok(status), at)) => {
                self.finish_output();
                Ok((status, at))
            }
            Some((Err(source), _)) => Err(self.wait_error(source)),
            None => Err(ProcessError::DidNotExit { name: self.name.clone(), timeout, log: self.describe_log() }),
        }
    }

    /// Waits up to `timeout` until `port` on 127.0.0.1 accepts connections;
    /// fails at once if the child exits first.
    pub fn wait_for_port(&mut self, port: u16, timeout: Duration) -> Result<(), ProcessError> {
        self.wait_for_address(SocketAddr::from(([127, 0, 0, 1], port)), timeout)
    }

    /// Waits up to `timeout` until `address` accepts connections; fails at
    /// once if the child exits first.
    pub fn wait_for_address(&mut self, address: SocketAddr, timeout: Duration) -> Result<(), ProcessError> {
        let port = address.port();
        let deadline = Instant::now() + timeout;
        let outcome = poll_until(deadline, POLL, || {
            if TcpStream::connect(address).is_ok() {
                return Some(Ok(()));
            }
            match self.try_wait() {
                Ok(None) => None,
                Ok(Some(status)) => Some(Err(ProcessError::ExitedBeforeListening {
                    name: self.name.clone(),
                    status,
                    port,
                    log: self.describe_log(),
                })),
                Err(error) => Some(Err(error)),
            }
        });
        outcome.unwrap_or_else(|| {
            Err(ProcessError::NotListening { name: self.name.clone(), port, timeout, log: self.describe_log() })
        })
    }

    /// Sends SIGTERM and waits up to `grace` for the child to exit, then
    /// kills it; returns how it ended.
    pub fn stop(&mut self, grace: Duration) -> Result<ExitStatus, ProcessError> {
        if let Some(status) = self.try_wait()? {
            return Ok(status);
        }
        // It may exit between the check and the signal: then there is no one to signal.
        match self.signal(Signal::SIGTERM) {
            Ok(()) | Err(ProcessError::Signal { source: Errno::ESRCH, .. }) => {}
            Err(error) => return Err(error),
        }
        match self.wait(grace) {
            Err(ProcessError::DidNotExit { .. }) => self.kill(),
            ended => ended,
        }
    }

    /// Kills the child at once (SIGKILL), as a crash would, and reaps it.
    pub fn kill(&mut self) -> Result<ExitStatus, ProcessError> {
        // Fails only when the child has already exited; `wait` then reaps it.
        let _ = self.child.kill();
        let status = self.child.wait().map_err(|source| self.wait_error(source))?;
        self.finish_output();
        Ok(status)
    }

    fn finish_output(&mut self) {
        if let Kept::Captured { stdout, stderr } = &mut self.output {
            stdout.finish();
            stderr.finish();
        }
    }

    fn wait_error(&self, source: io::Error) -> ProcessError {
        ProcessError::Wait { name: self.name.clone(), source }
    }
}

impl Drop for ChildProcess {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn program(command: &Command) -> String {
    command.get_program().to_string_lossy().into_owned()
}

/// The program and its arguments, space-separated, for messages.
fn command_line(command: &Command) -> String {
    std::iter::once(command.get_program())
        .chain(command.get_args())
        .map(OsStr::to_string_lossy)
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use std::os::unix::process::ExitStatusExt;

    use super::*;

    fn sh(script: &str) -> Command {
        let mut command = Command::new("sh");
        command.args(["-c", script]);
        command
    }

    #[test]
    fn a_tool_run_returns_stdout_and_stderr_apart() {
        let finished = ChildProcess::run(sh("echo out; echo err >&2"), Duration::from_secs(10)).expect("sh runs");
        assert_eq!((finished.stdout.as_str(), finished.stderr.as_str()), ("out\n", "err\n"));
        assert!(finished.finished >= finished.started);
    }

    #[test]
    fn a_failing_tool_is_an_error_with_its_stderr() {
        let error = ChildProcess::run(sh("echo broken >&2; exit 3"), Duration::from_secs(10)).unwrap_err();
        assert!(matches!(&error, ProcessError::Failed { stderr, .. } if stderr == "broken\n"), "{error}");
        assert!(error.to_string().starts_with("sh -c echo broken >&2; exit 3 failed"), "{error}");
    }

    #[test]
    fn a_tool_past_its_timeout_is_killed() {
        let started = Instant::now();
        let error = ChildProcess::run(sh("exec sleep 30"), Duration::from_millis(100)).unwrap_err();
        assert!(matches!(error, ProcessError::DidNotExit { .. }), "{error}");
        assert!(started.elapsed() < Duration::from_secs(10));
    }

    #[test]
    fn the_output_goes_to_the_log_file() {
        let log = std::env::temp_dir().join(format!("testbed-log-{}.log", std::process::id()));
        let mut process = ChildProcess::start("sh", sh("echo out; echo err >&2"), Output::File(log.clone())).unwrap();
        assert!(process.wait(Duration::from_secs(10)).unwrap().success());
        assert_eq!(process.log(), "out\nerr\n");
        assert_eq!(process.stdout(), "");
        let _ = std::fs::remove_file(log);
    }

    #[test]
    fn stop_ends_a_process_with_sigterm() {
        let mut process = ChildProcess::start("sh", sh("exec sleep 30"), Output::Captured).unwrap();
        let status = process.stop(Duration::from_secs(10)).unwrap();
        assert_eq!(status.signal(), Some(Signal::SIGTERM as i32));
    }

    #[test]
    fn stop_kills_a_process_that_ignores_sigterm_after_the_grace_period() {
        // The shell says when its trap is set, so SIGTERM cannot come before it;
        // `sleep` inherits the ignored SIGTERM.
        let mut process =
            ChildProcess::start("sh", sh("trap '' TERM; echo ready; exec sleep 30"), Output::Captured).unwrap();
        poll_until(Instant::now() + Duration::from_secs(10), POLL, || (process.stdout() == "ready\n").then_some(()))
            .expect("the trap is set");
        let status = process.stop(Duration::from_millis(100)).unwrap();
        assert_eq!(status.signal(), Some(Signal::SIGKILL as i32));
    }

    #[test]
    fn a_process_that_exits_before_listening_says_so_with_its_log() {
        let port = free_port().unwrap();
        let mut process = ChildProcess::start("sh", sh("echo no such flag >&2; exit 2"), Output::Captured).unwrap();
        let error = process.wait_for_port(port, Duration::from_secs(10)).unwrap_err();
        assert!(matches!(error, ProcessError::ExitedBeforeListening { .. }), "{error}");
        assert!(error.to_string().ends_with("its log:\nno such flag\n"), "{error}");
    }

    /// A server as the suite's are: it listens on `--listen HOST:PORT`, and
    /// exits saying `cannot listen on` when that address is taken; this one
    /// says so the first time whatever the port, as if another process had
    /// taken it.
    fn server(marker: PathBuf) -> impl Fn() -> Command {
        move || {
            let mut command = Command::new("python3");
            command.arg("-c").arg(
                "import os, socket, sys, time\n\
                 if not os.path.exists(sys.argv[1]):\n    open(sys.argv[1], 'w').close()\n    \
                 sys.exit('cannot listen on ' + sys.argv[3])\n\
                 host, port = sys.argv[3].rsplit(':', 1)\n\
                 listener = socket.create_server((host, int(port)))\n\
                 time.sleep(30)",
            );
            command.arg(&marker);
            command
        }
    }

    #[test]
    fn a_server_whose_port_is_taken_is_started_again_on_another() {
        let marker = std::env::temp_dir().join(format!("testbed-server-{}", std::process::id()));
        let _ = std::fs::remove_file(&marker);
        let (mut process, address) =
            ChildProcess::start_server("server", server(marker.clone()), &Output::Captured, Duration::from_secs(10))
                .unwrap();
        assert!(marker.exists(), "the first start was refused");
        TcpStream::connect(address).expect("the server listens where it was told");
        assert_eq!(process.stop(Duration::from_secs(10)).unwrap().signal(), Some(Signal::SIGTERM as i32));
        let _ = std::fs::remove_file(marker);
    }

    #[test]
    fn dropping_a_running_process_kills_it() {
        let process = ChildProcess::start("sh", sh("exec sleep 30"), Output::Captured).unwrap();
        let pid = Pid::from_raw(process.pid() as i32);
        drop(process);
        // Reaped, so not even a zombie is left to signal.
        assert_eq!(kill(pid, None), Err(Errno::ESRCH));
    }
}
