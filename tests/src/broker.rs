//! A real Kafka-protocol broker (Tansu) as a child process on a free port,
//! and a few topic operations through Python's confluent-kafka client.
use std::{
    net::TcpStream,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use serde_json::Value;

fn tansu_binary() -> PathBuf {
    if let Ok(output) = Command::new("sh").args(["-c", "command -v tansu"]).output()
        && output.status.success()
    {
        return PathBuf::from(String::from_utf8_lossy(&output.stdout).trim());
    }
    let home = std::env::var("HOME").unwrap_or_default();
    let path = Path::new(&home).join(".cargo/bin/tansu");
    assert!(
        path.exists(),
        "tansu is not installed: `cargo install tansu --features dynostore,libsql` (scripts/test.sh does it)"
    );
    path
}

pub struct Broker {
    child: Child,
    port: u16,
}

impl Broker {
    /// A broker keeping everything in memory.
    pub fn start_in_memory() -> Self {
        let directory = std::env::temp_dir();
        Self::start(crate::free_port(), "memory://tansu/", &directory)
    }

    /// A broker persisting to SQLite under `directory`, which survives a
    /// restart on the same port.
    pub fn start_persistent(directory: &Path, port: u16) -> Self {
        std::fs::create_dir_all(directory).expect("create the broker directory");
        Self::start(port, "sqlite://tansu.db", directory)
    }

    fn start(port: u16, storage: &str, directory: &Path) -> Self {
        let url = format!("tcp://127.0.0.1:{port}");
        let child = Command::new(tansu_binary())
            .args(["broker", "--listener-url", &url, "--advertised-listener-url", &url, "--storage-engine", storage])
            .current_dir(directory)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start tansu");
        let broker = Self { child, port };
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "tansu did not listen on port {port}");
            std::thread::sleep(Duration::from_millis(20));
        }
        broker
    }

    /// `127.0.0.1:PORT`, for KAFKA_BROKERS.
    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Stops the broker (SIGTERM) and waits for it to exit.
    pub fn stop(mut self) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.child.try_wait().ok().flatten().is_none() {
            if Instant::now() > deadline {
                let _ = self.child.kill();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Produces raw messages (key, value) to `topic`, bypassing any validation.
    pub fn produce_raw(&self, topic: &str, messages: &[(impl AsRef<str>, impl AsRef<str>)]) {
        let messages: Vec<Value> =
            messages.iter().map(|(key, value)| serde_json::json!([key.as_ref(), value.as_ref()])).collect();
        python(
            &format!(
                r#"
import json, sys
from confluent_kafka import Producer
producer = Producer({{"bootstrap.servers": "{address}"}})
failed = []
for key, value in json.loads(sys.argv[1]):
    producer.produce("{topic}", key=key.encode(), value=value.encode(), on_delivery=lambda e, m: e and failed.append(str(e)))
left = producer.flush(15)
assert not failed and left == 0, (failed, left)
"#,
                address = self.address()
            ),
            &[&Value::Array(messages).to_string()],
        );
    }

    /// Every message of `topic` as `{"key", "value", "partition", "headers": {..}}`.
    pub fn read_all(&self, topic: &str) -> Vec<Value> {
        let output = python(
            &format!(
                r#"
import json
from confluent_kafka import Consumer, TopicPartition
consumer = Consumer({{"bootstrap.servers": "{address}", "group.id": "e2e-reader", "enable.auto.commit": False}})
partitions = consumer.list_topics("{topic}", timeout=10).topics["{topic}"].partitions
consumer.assign([TopicPartition("{topic}", p, 0) for p in partitions])
out = []
# The topic is quiet while tests read it: everything has arrived once a
# poll of two seconds brings nothing more.
while True:
    message = consumer.poll(2)
    if message is None:
        break
    if message.error():
        continue
    headers = {{k: (v.decode() if v is not None else None) for k, v in (message.headers() or [])}}
    out.append({{"key": (message.key() or b"").decode(), "value": (message.value() or b"").decode(), "partition": message.partition(), "headers": headers}})
print(json.dumps(out))
"#,
                address = self.address()
            ),
            &[],
        );
        serde_json::from_str(&output).expect("JSON from the reader")
    }

    /// How many messages `topic` holds, counted by reading them all (Tansu
    /// 0.6 reports a partition's high watermark per record batch, not per
    /// record, so watermarks undercount batched topics).
    pub fn message_count(&self, topic: &str) -> usize {
        self.read_all(topic).len()
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn python(script: &str, args: &[&str]) -> String {
    let output = Command::new("python3")
        .arg("-c")
        .arg(script)
        .args(args)
        .output()
        .expect("run python3 (pip install confluent-kafka)");
    assert!(output.status.success(), "python failed:\n{}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8_lossy(&output.stdout).into_owned()
}
