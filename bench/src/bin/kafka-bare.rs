//! `kafka-bare`: librdkafka with nothing around it, the yardstick of the
//! ingestion path on this machine and broker.
//!
//! `produce` publishes each line of an NDJSON file as one message, as fast
//! as librdkafka takes them, with ratingingester's producer settings
//! (idempotent, acks=all, linger 5 ms, batches of up to 10,000, lz4, the
//! rating service's partitioner), keyed by line number so messages spread
//! over the partitions as keyed ones do. It reads the file before timing and
//! stops the clock at the last delivery report. No parsing or validation:
//! that is what ratingingester adds.
//!
//! `consume` assigns every partition of a topic from the beginning and reads
//! until it has N messages, touching only their length: what a replay costs
//! before any event is decoded or applied.
//!
//! Both print one JSON line: messages, elapsed seconds, messages per second.
use std::{
    fs,
    path::PathBuf,
    time::{Duration, Instant},
};

use clap::{Parser, Subcommand};
use rdkafka::{
    ClientConfig, Offset, TopicPartitionList,
    admin::{AdminClient, AdminOptions, NewTopic, TopicReplication},
    client::DefaultClientContext,
    consumer::{BaseConsumer, Consumer},
    error::KafkaError,
    producer::{BaseProducer, BaseRecord, DefaultProducerContext, Producer},
    types::RDKafkaErrorCode,
};
use serde_json::json;

/// The services' allocator, so the yardstick pays what they pay per allocation.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Debug, Parser)]
#[command(about = "Bare rdkafka producer and consumer: the yardstick of rating ingestion.")]
struct Args {
    /// Kafka bootstrap brokers, host:port
    #[arg(long, default_value = "127.0.0.1:9092")]
    brokers: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Publish each line of FILE as a message; report after the last delivery report
    Produce {
        file: PathBuf,
        #[arg(long)]
        topic: String,
        /// Partitions of the topic when it has to be created
        #[arg(long, default_value_t = 3)]
        partitions: i32,
        /// Give up on deliveries after this long
        #[arg(long, value_parser = humantime::parse_duration, default_value = "120s")]
        timeout: Duration,
    },
    /// Read every partition from the beginning until N messages have arrived
    Consume {
        #[arg(long)]
        topic: String,
        #[arg(long)]
        messages: u64,
        #[arg(long, value_parser = humantime::parse_duration, default_value = "300s")]
        timeout: Duration,
    },
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    match args.command {
        Command::Produce { file, topic, partitions, timeout } => {
            produce(&args.brokers, &file, &topic, partitions, timeout)
        }
        Command::Consume { topic, messages, timeout } => consume(&args.brokers, &topic, messages, timeout),
    }
}

fn report(messages: u64, elapsed: Duration) -> anyhow::Result<()> {
    let elapsed_s = elapsed.as_secs_f64();
    println!(
        "{}",
        json!({"messages": messages, "elapsed_s": elapsed_s, "messages_per_s": messages as f64 / elapsed_s})
    );
    Ok(())
}

fn create_topic(brokers: &str, topic: &str, partitions: i32) -> anyhow::Result<()> {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new().set("bootstrap.servers", brokers).create()?;
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    let results = runtime
        .block_on(admin.create_topics(&[NewTopic::new(topic, partitions, TopicReplication::Fixed(1))], &options))?;
    for result in results {
        match result {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((name, code)) => anyhow::bail!("cannot create topic {name}: {code}"),
        }
    }
    Ok(())
}

fn produce(brokers: &str, file: &PathBuf, topic: &str, partitions: i32, timeout: Duration) -> anyhow::Result<()> {
    create_topic(brokers, topic, partitions)?;
    let contents = fs::read(file)?;
    let lines: Vec<&[u8]> = contents.split(|byte| *byte == b'\n').filter(|line| !line.is_empty()).collect();
    let producer: BaseProducer<DefaultProducerContext> =
        contract::kafka::producer_config(brokers, "kafka-bare", timeout)
            .set("linger.ms", "5")
            .set("batch.num.messages", "10000")
            .set("queue.buffering.max.messages", "50000")
            .set("queue.buffering.max.kbytes", "16384")
            .set("compression.type", "lz4")
            .create()?;
    // Connected and the topic known before the clock starts, as ratingingester checks it first.
    producer.client().fetch_metadata(Some(topic), Duration::from_secs(10))?;

    let started = Instant::now();
    let mut key = String::new();
    for (number, line) in lines.iter().enumerate() {
        key.clear();
        key.push_str(&number.to_string());
        let mut record = BaseRecord::to(topic).key(key.as_str()).payload(*line);
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), returned)) => {
                    record = returned;
                    producer.poll(Duration::from_millis(5));
                }
                Err((error, _)) => anyhow::bail!("librdkafka refused message {number}: {error}"),
            }
        }
        if number % 1024 == 0 {
            producer.poll(Duration::ZERO);
        }
    }
    // flush serves the remaining delivery reports; it fails if any is still missing at the timeout.
    producer.flush(timeout)?;
    let elapsed = started.elapsed();
    report(lines.len() as u64, elapsed)
}

fn consume(brokers: &str, topic: &str, messages: u64, timeout: Duration) -> anyhow::Result<()> {
    let started = Instant::now();
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("client.id", "kafka-bare")
        .set("group.id", "kafka-bare")
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("enable.partition.eof", "false")
        .set("fetch.wait.max.ms", "50")
        .create()?;
    let metadata = consumer.fetch_metadata(Some(topic), Duration::from_secs(10))?;
    let partitions = metadata
        .topics()
        .iter()
        .find(|candidate| candidate.name() == topic)
        .map(|found| found.partitions().len())
        .filter(|count| *count > 0)
        .ok_or_else(|| anyhow::anyhow!("topic {topic} has no partitions at {brokers}"))?;
    let mut assignment = TopicPartitionList::new();
    for partition in 0..partitions as i32 {
        assignment.add_partition_offset(topic, partition, Offset::Beginning)?;
    }
    consumer.assign(&assignment)?;
    let deadline = started + timeout;
    let (mut read, mut bytes) = (0_u64, 0_u64);
    while read < messages {
        anyhow::ensure!(Instant::now() < deadline, "read {read} of {messages} messages of {topic} within {timeout:?}");
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(message)) => {
                read += 1;
                bytes += message.payload_len() as u64;
            }
            Some(Err(error)) => eprintln!("consumer error (retrying): {error}"),
            None => {}
        }
    }
    let elapsed = started.elapsed();
    std::hint::black_box(bytes);
    report(read, elapsed)
}
