//! A service binary running as a child process, its log captured.
use std::{
    future::Future,
    io::{BufRead, BufReader},
    net::{SocketAddr, TcpStream},
    path::PathBuf,
    process::{Child, Command, ExitStatus, Stdio},
    sync::{Arc, Mutex},
    thread::JoinHandle,
    time::{Duration, Instant},
};

use nix::{
    sys::signal::{Signal, kill},
    unistd::Pid,
};
use tonic::transport::Endpoint;
use tonic_health::pb::{HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient};

/// The path of one of the workspace's binaries, next to the test executable.
pub fn binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    // target/<profile>/deps/<test> -> target/<profile>/<name>
    let path = exe.parent().and_then(|deps| deps.parent()).expect("target directory").join(name);
    assert!(path.exists(), "{} is missing: run `cargo build --bins` before the end-to-end tests", path.display());
    path
}

pub struct ServiceProcess {
    name: String,
    child: Child,
    log: Arc<Mutex<String>>,
    /// Reads the child's stderr into `log`; ends when the child exits.
    log_reader: Option<JoinHandle<()>>,
    address: SocketAddr,
}

impl ServiceProcess {
    /// Starts `binary` on 127.0.0.1 at a free port, with the given extra
    /// arguments and environment, and waits until it accepts connections.
    pub fn start(binary_name: &str, args: &[&str], envs: &[(&str, &str)]) -> Self {
        // Another process may take the free port before the service binds
        // it; the service then exits saying so, and is started again.
        for _ in 0..3 {
            let address = SocketAddr::from(([127, 0, 0, 1], crate::free_port()));
            match Self::start_at(binary_name, address, args, envs) {
                Ok(process) => return process,
                Err(process) if process.log().contains("cannot listen on") => continue,
                Err(process) => panic!("{binary_name} exited before listening:\n{}", process.log()),
            }
        }
        panic!("{binary_name} found no free port in three tries");
    }

    fn start_at(binary_name: &str, address: SocketAddr, args: &[&str], envs: &[(&str, &str)]) -> Result<Self, Self> {
        let mut command = Command::new(binary(binary_name));
        command
            .args(["--listen", &address.to_string()])
            .args(args)
            .env("RUST_LOG", "info,consulrs=warn")
            .env_remove("CONSUL_HTTP_ADDR")
            .env_remove("KAFKA_BROKERS")
            .envs(envs.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = command.spawn().unwrap_or_else(|error| panic!("cannot start {binary_name}: {error}"));
        let log = Arc::new(Mutex::new(String::new()));
        let stderr = child.stderr.take().expect("piped stderr");
        let sink = log.clone();
        let log_reader = std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let mut log = sink.lock().unwrap();
                log.push_str(&line);
                log.push('\n');
            }
        });
        let mut process = Self { name: binary_name.to_string(), child, log, log_reader: Some(log_reader), address };
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(address).is_err() {
            if let Ok(Some(_)) = process.child.try_wait() {
                process.join_log_reader();
                return Err(process);
            }
            assert!(Instant::now() < deadline, "{binary_name} did not start listening:\n{}", process.log());
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(process)
    }

    /// Waits until the whole log of an exited child has been read.
    fn join_log_reader(&mut self) {
        if let Some(reader) = self.log_reader.take() {
            let _ = reader.join();
        }
    }

    /// `127.0.0.1:PORT`, as grpcurl and the other services take it.
    pub fn authority(&self) -> String {
        self.address.to_string()
    }

    pub fn port(&self) -> u16 {
        self.address.port()
    }

    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// Waits until the service's health reports SERVING.
    pub fn wait_until_serving(&self, timeout: Duration) {
        let what = format!("{} reports SERVING", self.name);
        crate::wait_until(&what, timeout, || health(self) == "SERVING");
    }

    /// Waits until the log contains `text`.
    pub fn wait_for_log(&self, text: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while !self.log().contains(text) {
            assert!(Instant::now() < deadline, "{} never logged {text:?}:\n{}", self.name, self.log());
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn signal(&self, signal: Signal) {
        kill(Pid::from_raw(self.child.id() as i32), signal).expect("send a signal");
    }

    /// Sends SIGTERM and waits for the process to exit.
    pub fn terminate(mut self, timeout: Duration) -> ExitStatus {
        self.signal(Signal::SIGTERM);
        self.wait(timeout)
    }

    /// Sends SIGTERM, waits for the process to exit, and returns its exit
    /// status with everything it logged.
    pub fn terminate_with_log(mut self, timeout: Duration) -> (ExitStatus, String) {
        self.signal(Signal::SIGTERM);
        let status = self.wait(timeout);
        (status, self.log())
    }

    /// Kills the process at once, as a crash would (no deregistration).
    pub fn crash(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Waits for the process to exit by itself.
    pub fn wait_exit(mut self, timeout: Duration) -> ExitStatus {
        self.wait(timeout)
    }

    fn wait(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait for child") {
                self.join_log_reader();
                return status;
            }
            assert!(Instant::now() < deadline, "{} did not exit within {timeout:?}:\n{}", self.name, self.log());
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for ServiceProcess {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Runs one client call to completion from synchronous test code.
pub fn block_on<F: Future>(call: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a test runtime").block_on(call)
}

/// A gRPC endpoint of the service.
pub fn endpoint(service: &ServiceProcess) -> Endpoint {
    Endpoint::from_shared(format!("http://{}", service.authority())).expect("a valid endpoint")
}

/// The overall health status (`SERVING`, `NOT_SERVING`, ...), or "" when
/// the call fails.
pub fn health(service: &ServiceProcess) -> String {
    block_on(async {
        let channel = endpoint(service).connect().await.ok()?;
        let answer = HealthClient::new(channel).check(HealthCheckRequest { service: String::new() }).await.ok()?;
        ServingStatus::try_from(answer.into_inner().status).ok()
    })
    .map(|status| status.as_str_name().to_string())
    .unwrap_or_default()
}
