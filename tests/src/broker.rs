//! A real Kafka-protocol broker (Tansu) as a child process on a free port,
//! and the few topic operations the tests need, through rdkafka.
use std::{collections::BTreeMap, path::Path, time::Duration};

use nix::{sys::signal::Signal, unistd::Pid};
use rdkafka::{
    Message, Offset, TopicPartitionList,
    consumer::{BaseConsumer, Consumer},
    error::{KafkaError, RDKafkaErrorCode},
    message::Headers,
    producer::{BaseProducer, BaseRecord, Producer},
};
use serde_json::Value;
use testbed::{Output, Storage, Tansu};

pub struct Broker {
    tansu: Tansu,
}

impl Broker {
    /// A broker keeping everything in memory.
    pub fn start_in_memory() -> Self {
        Self::start(crate::free_port(), Storage::Memory, &std::env::temp_dir())
    }

    /// A broker persisting to SQLite under `directory`, which survives a
    /// restart on the same port.
    pub fn start_persistent(directory: &Path, port: u16) -> Self {
        Self::start(port, Storage::Sqlite, directory)
    }

    fn start(port: u16, storage: Storage, directory: &Path) -> Self {
        let program = Tansu::program().unwrap_or_else(|error| panic!("{error}"));
        let tansu = Tansu::start(&program, port, storage, directory, Output::Captured)
            .unwrap_or_else(|error| panic!("{error}"));
        Self { tansu }
    }

    /// `127.0.0.1:PORT`, for KAFKA_BROKERS.
    pub fn address(&self) -> String {
        self.tansu.address()
    }

    /// What the broker has logged (warnings and errors).
    pub fn log(&self) -> String {
        self.tansu.log()
    }

    /// Freezes the broker (SIGSTOP): it holds its connections and answers
    /// nothing, as a stalled machine would.
    pub fn pause(&self) {
        self.signal(Signal::SIGSTOP);
    }

    /// Lets a paused broker go on (SIGCONT).
    pub fn resume(&self) {
        self.signal(Signal::SIGCONT);
    }

    fn signal(&self, signal: Signal) {
        let pid = Pid::from_raw(self.tansu.pid() as i32);
        nix::sys::signal::kill(pid, signal).unwrap_or_else(|error| panic!("cannot send {signal} to tansu: {error}"));
    }

    /// Stops the broker (SIGTERM, SIGKILL after 10 s) and waits for it to exit.
    pub fn stop(self) {
        self.tansu.stop(Duration::from_secs(10)).unwrap_or_else(|error| panic!("{error}"));
    }

    /// Produces raw messages (key, value) to `topic`, bypassing any
    /// validation, and waits until the broker has acknowledged each.
    pub fn produce_raw(&self, topic: &str, messages: &[(impl AsRef<str>, impl AsRef<str>)]) {
        let messages: Vec<_> =
            messages.iter().map(|(key, value)| (Some(key.as_ref().as_bytes()), value.as_ref().as_bytes())).collect();
        self.produce_bytes(topic, &messages);
    }

    /// Produces messages of any bytes, with or without a key, up to 16 MiB
    /// each, and waits until the broker has acknowledged each.
    pub fn produce_bytes(&self, topic: &str, messages: &[(Option<&[u8]>, &[u8])]) {
        let producer: BaseProducer = contract::kafka::client_config(&self.address(), "e2e-producer")
            .set("message.max.bytes", (16 * 1024 * 1024).to_string())
            .create()
            .expect("a Kafka producer");
        for &(key, value) in messages {
            let mut record = BaseRecord::<[u8], [u8]>::to(topic).payload(value);
            if let Some(key) = key {
                record = record.key(key);
            }
            // A full local queue is served by polling, then the send retried.
            while let Err((error, returned)) = producer.send(record) {
                assert!(
                    matches!(error, KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull)),
                    "cannot produce to {topic}: {error}"
                );
                producer.poll(Duration::from_millis(10));
                record = returned;
            }
        }
        producer.flush(Duration::from_secs(15)).expect("every message acknowledged within 15 s");
    }

    /// Produces one message (key, value) to each of `partitions` partitions
    /// of `topic`, each acknowledged before the next is sent, so that each
    /// is a record batch of its own, the last of its partition.
    pub fn produce_one_per_partition(&self, topic: &str, partitions: i32, key: &str, value: &str) {
        let producer: BaseProducer =
            contract::kafka::client_config(&self.address(), "e2e-producer").create().expect("a Kafka producer");
        for partition in 0..partitions {
            let record = BaseRecord::to(topic).partition(partition).key(key).payload(value);
            producer.send(record).map_err(|(error, _)| error).expect("queue the message");
            producer.flush(Duration::from_secs(15)).expect("the message acknowledged within 15 s");
        }
    }

    /// How many partitions `topic` has.
    pub fn partitions(&self, topic: &str) -> i32 {
        let consumer: BaseConsumer =
            contract::kafka::client_config(&self.address(), "e2e-reader").create().expect("a Kafka consumer");
        let metadata = consumer.fetch_metadata(Some(topic), Duration::from_secs(10)).expect("topic metadata");
        let partitions = metadata
            .topics()
            .iter()
            .filter(|found| found.name() == topic)
            .map(|found| found.partitions().len())
            .sum::<usize>();
        i32::try_from(partitions).expect("a partition count")
    }

    /// The end of each partition of `topic` that holds messages: the offset
    /// after its last message, read from the messages themselves (Tansu 0.6
    /// reports a high watermark at the start of the last record batch; see
    /// [`Broker::read_all`]).
    pub fn ends(&self, topic: &str) -> BTreeMap<i32, i64> {
        let mut ends = BTreeMap::new();
        for message in self.read_all(topic) {
            let (partition, offset) = (message["partition"].as_i64(), message["offset"].as_i64());
            let (Some(partition), Some(offset)) = (partition, offset) else {
                panic!("a message's position: {message}")
            };
            let end = ends.entry(i32::try_from(partition).expect("a partition id")).or_insert(0);
            *end = (*end).max(offset + 1);
        }
        ends
    }

    /// The offsets consumer group `group` has committed for each partition
    /// of `topic` (partitions without a commit left out), read as Kafka's
    /// own tools read them: by a client that does not join the group.
    pub fn committed(&self, group: &str, topic: &str) -> BTreeMap<i32, i64> {
        let consumer: BaseConsumer = contract::kafka::client_config(&self.address(), "e2e-reader")
            .set("group.id", group)
            .set("enable.auto.commit", "false")
            .create()
            .expect("a Kafka consumer");
        let mut partitions = TopicPartitionList::new();
        for partition in 0..self.partitions(topic) {
            partitions.add_partition(topic, partition);
        }
        let committed =
            consumer.committed_offsets(partitions, Duration::from_secs(10)).expect("the group's committed offsets");
        committed
            .elements()
            .iter()
            .filter_map(|element| match element.offset() {
                Offset::Offset(offset) => Some((element.partition(), offset)),
                _ => None,
            })
            .collect()
    }

    /// Every message of `topic` as `{"key", "value", "partition", "offset", "headers": {..}}`.
    pub fn read_all(&self, topic: &str) -> Vec<Value> {
        let consumer: BaseConsumer = contract::kafka::client_config(&self.address(), "e2e-reader")
            .set("group.id", "e2e-reader")
            .set("enable.auto.commit", "false")
            .create()
            .expect("a Kafka consumer");
        let metadata = consumer.fetch_metadata(Some(topic), Duration::from_secs(10)).unwrap_or_else(|error| {
            panic!("no metadata of topic {topic}: {error}; the broker logged:\n{}", self.log())
        });
        let mut assignment = TopicPartitionList::new();
        for partition in
            metadata.topics().iter().filter(|found| found.name() == topic).flat_map(|found| found.partitions())
        {
            assignment.add_partition_offset(topic, partition.id(), Offset::Beginning).expect("a partition offset");
        }
        // Tansu 0.6 reports a partition's high watermark as the start of its
        // last record batch, so it cannot say where the end is, only that the
        // last batch has been reached. The topic is quiet while tests read
        // it: everything has arrived once every partition has reached its
        // last batch and a poll of two seconds brings nothing more (a quiet
        // poll alone ended reads early on a busy machine).
        let mut last_batches: std::collections::HashMap<i32, i64> = std::collections::HashMap::new();
        for element in assignment.elements() {
            let (_, high) =
                consumer.fetch_watermarks(topic, element.partition(), Duration::from_secs(10)).unwrap_or_else(
                    |error| panic!("no watermarks of {topic}: {error}; the broker logged:\n{}", self.log()),
                );
            last_batches.insert(element.partition(), high);
        }
        consumer.assign(&assignment).expect("assign the partitions");
        let deadline = std::time::Instant::now() + Duration::from_secs(120);
        let mut messages = Vec::new();
        loop {
            let Some(polled) = consumer.poll(Duration::from_secs(2)) else {
                if last_batches.values().all(|&high| high <= 0) {
                    break;
                }
                assert!(
                    std::time::Instant::now() < deadline,
                    "{topic} was not read to its end within 120 s: partitions short of their last batch: \
                     {last_batches:?}"
                );
                continue;
            };
            let Ok(message) = polled else { continue };
            // Reached (whether the broker reports the start of the last
            // batch, as Tansu 0.6 does, or the offset after the last record,
            // as Kafka does): only the quiet poll is left to wait for.
            if last_batches.get(&message.partition()).is_some_and(|&high| message.offset() + 1 >= high) {
                last_batches.insert(message.partition(), 0);
            }
            let text = |bytes: Option<&[u8]>| String::from_utf8_lossy(bytes.unwrap_or_default()).into_owned();
            let headers: serde_json::Map<String, Value> = message
                .headers()
                .map(|headers| {
                    headers
                        .iter()
                        .map(|header| (header.key.to_string(), header.value.map(|value| text(Some(value))).into()))
                        .collect()
                })
                .unwrap_or_default();
            messages.push(serde_json::json!({
                "key": text(message.key()),
                "value": text(message.payload()),
                "partition": message.partition(),
                "offset": message.offset(),
                "headers": headers,
            }));
        }
        messages
    }

    /// How many messages `topic` holds, counted by reading them all (Tansu
    /// 0.6 reports a partition's high watermark per record batch, not per
    /// record, so watermarks undercount batched topics).
    pub fn message_count(&self, topic: &str) -> usize {
        self.read_all(topic).len()
    }
}
