//! A real Prometheus server (Debian's `prometheus` package) scraping the
//! services of a test every second, and queries through its HTTP API.
use std::{
    io::{Read, Write},
    net::{SocketAddr, TcpStream},
    path::PathBuf,
    process::Command,
    time::Duration,
};

use serde_json::Value;
use testbed::{ChildProcess, Output};

use crate::{free_port, wait_until};

pub struct Prometheus {
    /// Killed when dropped.
    process: ChildProcess,
    address: SocketAddr,
    directory: PathBuf,
}

impl Prometheus {
    /// Starts Prometheus scraping `targets` (`host:port` of metrics
    /// endpoints) every second, and waits until it is ready.
    pub fn start(targets: &[SocketAddr]) -> Self {
        let address = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let directory = std::env::temp_dir().join(format!("prometheus-e2e-{}-{}", std::process::id(), address.port()));
        std::fs::create_dir_all(&directory).expect("a Prometheus directory");
        let targets: Vec<String> = targets.iter().map(|target| format!("'{target}'")).collect();
        let config = format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: suite\n    static_configs:\n      - targets: [{}]\n",
            targets.join(", ")
        );
        let config_file = directory.join("prometheus.yml");
        std::fs::write(&config_file, config).expect("write the Prometheus configuration");
        let mut command = Command::new("prometheus");
        command
            .arg(format!("--config.file={}", config_file.display()))
            .arg(format!("--storage.tsdb.path={}", directory.join("data").display()))
            .arg(format!("--web.listen-address={address}"));
        let process = ChildProcess::start("prometheus", command, Output::Captured).unwrap_or_else(|error| {
            panic!("{error} (Debian package `prometheus`; scripts/install-tools.sh installs it)")
        });
        let prometheus = Self { process, address, directory };
        wait_until("Prometheus is ready", Duration::from_secs(30), || {
            prometheus.get("/-/ready").is_some_and(|(status, _)| status == 200)
        });
        prometheus
    }

    /// The value of an instant query that yields one sample, or `None` when
    /// it yields none (a series not scraped yet, or never recorded).
    pub fn value(&self, query: &str) -> Option<f64> {
        let (status, body) = self.get(&format!("/api/v1/query?query={}", percent_encoded(query)))?;
        assert_eq!(status, 200, "query {query}: {body}\n{}", self.process.log());
        let answer: Value = serde_json::from_str(&body).expect("JSON from Prometheus");
        let result = answer["data"]["result"].as_array().expect("a vector result");
        assert!(result.len() <= 1, "query {query} yields several series: {body}");
        result.first().and_then(|sample| sample["value"][1].as_str()?.parse().ok())
    }

    /// Waits until `query` yields `expected`.
    pub fn wait_for_value(&self, query: &str, expected: f64) {
        let mut last = None;
        wait_until(&format!("`{query}` is {expected}"), Duration::from_secs(30), || {
            last = self.value(query);
            last == Some(expected)
        });
    }

    /// A plain HTTP/1.0 GET: the status code and the body.
    fn get(&self, path: &str) -> Option<(u16, String)> {
        let mut stream = TcpStream::connect(self.address).ok()?;
        write!(stream, "GET {path} HTTP/1.0\r\nHost: {}\r\n\r\n", self.address).ok()?;
        let mut response = String::new();
        stream.read_to_string(&mut response).ok()?;
        let (head, body) = response.split_once("\r\n\r\n")?;
        let status = head.split_whitespace().nth(1)?.parse().ok()?;
        Some((status, body.to_string()))
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.process.kill();
        let _ = std::fs::remove_dir_all(&self.directory);
    }
}

/// `text` with everything but unreserved characters percent-encoded.
fn percent_encoded(text: &str) -> String {
    text.bytes()
        .map(|byte| match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (byte as char).to_string(),
            other => format!("%{other:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_are_percent_encoded() {
        assert_eq!(percent_encoded(r#"sum(up{job="suite"})"#), "sum%28up%7Bjob%3D%22suite%22%7D%29");
    }
}
