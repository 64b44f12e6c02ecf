//! A service binary running as a child process, its log captured.
use std::{
    future::Future,
    net::SocketAddr,
    path::PathBuf,
    process::{Command, ExitStatus},
    time::{Duration, Instant},
};

use nix::sys::signal::Signal;
use testbed::{ChildProcess, Output};
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
    process: ChildProcess,
    address: SocketAddr,
}

impl ServiceProcess {
    /// Starts `binary` on 127.0.0.1 at a free port, with the given extra
    /// arguments and environment, and waits until it accepts connections.
    pub fn start(binary_name: &str, args: &[&str], envs: &[(&str, &str)]) -> Self {
        let program = binary(binary_name);
        let command = || command(&program, args, envs);
        let (process, address) =
            ChildProcess::start_server(binary_name, command, &Output::Captured, Duration::from_secs(20))
                .unwrap_or_else(|error| panic!("{error}"));
        Self { process, address }
    }

    /// Starts `binary` listening at `address` (e.g. one of several
    /// instances on one port, each on a loopback address of its own), and
    /// waits until it accepts connections.
    pub fn start_at(binary_name: &str, address: SocketAddr, args: &[&str], envs: &[(&str, &str)]) -> Self {
        let command = command(&binary(binary_name), args, envs);
        let process =
            ChildProcess::start_server_at(binary_name, command, &Output::Captured, address, Duration::from_secs(20))
                .unwrap_or_else(|error| panic!("{error}"));
        Self { process, address }
    }

    /// `IP:PORT` (127.0.0.1 unless started elsewhere), as grpcurl and the
    /// other services take it.
    pub fn authority(&self) -> String {
        self.address.to_string()
    }

    pub fn port(&self) -> u16 {
        self.address.port()
    }

    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    pub fn log(&self) -> String {
        self.process.log()
    }

    /// Waits until the service's health reports SERVING.
    pub fn wait_until_serving(&self, timeout: Duration) {
        let what = format!("{} reports SERVING", self.process.name());
        crate::wait_until(&what, timeout, || health(self) == "SERVING");
    }

    /// Waits until the log contains `text`.
    pub fn wait_for_log(&self, text: &str, timeout: Duration) {
        let logged = testbed::poll_until(Instant::now() + timeout, Duration::from_millis(20), || {
            self.log().contains(text).then_some(())
        });
        assert!(logged.is_some(), "{} never logged {text:?}:\n{}", self.process.name(), self.log());
    }

    pub fn signal(&self, signal: Signal) {
        self.process.signal(signal).unwrap_or_else(|error| panic!("{error}"));
    }

    /// Sends SIGTERM and waits for the process to exit.
    pub fn terminate(mut self, timeout: Duration) -> ExitStatus {
        self.signal(Signal::SIGTERM);
        self.process.wait(timeout).unwrap_or_else(|error| panic!("{error}"))
    }

    /// Sends SIGTERM, waits for the process to exit, and returns its exit
    /// status with everything it logged.
    pub fn terminate_with_log(mut self, timeout: Duration) -> (ExitStatus, String) {
        self.signal(Signal::SIGTERM);
        let status = self.process.wait(timeout).unwrap_or_else(|error| panic!("{error}"));
        (status, self.log())
    }

    /// Kills the process at once, as a crash would (no deregistration).
    pub fn crash(mut self) {
        self.process.kill().unwrap_or_else(|error| panic!("{error}"));
    }

    /// Waits for the process to exit by itself.
    pub fn wait_exit(mut self, timeout: Duration) -> ExitStatus {
        self.process.wait(timeout).unwrap_or_else(|error| panic!("{error}"))
    }
}

/// A service's command line, `--listen` aside: the arguments and
/// environment given, and none of the developer's settings that would
/// send it to a Consul, a broker or an authentication key.
fn command(program: &std::path::Path, args: &[&str], envs: &[(&str, &str)]) -> Command {
    let mut command = Command::new(program);
    command
        .args(args)
        .env("RUST_LOG", "info,consulrs=warn")
        .env_remove("CONSUL_HTTP_ADDR")
        .env_remove("KAFKA_BROKERS")
        .env_remove("AUTH_HS256_SECRET")
        .env_remove("AUTH_HS256_SECRET_FILE")
        .env_remove("AUTH_PUBLIC_KEY_FILE")
        .envs(envs.iter().copied());
    command
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
