//! Publishing validated rating events to Kafka: one idempotent, batching
//! producer, a reachability check of the broker and the topic before the
//! first message, and a count of every delivery report.
//!
//! The producer is rdkafka's `BaseProducer` polled from the sending thread:
//! no future or channel per message, and the delivery callback only bumps
//! counters, so the send loop runs as fast as librdkafka can batch.
use std::{
    collections::BTreeMap,
    fmt,
    sync::{
        Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use contract::{event::RatingEvent, kafka};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use rdkafka::{
    ClientConfig, ClientContext,
    config::RDKafkaLogLevel,
    error::{KafkaError, RDKafkaErrorCode},
    producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext, PurgeConfig},
};

/// How long librdkafka waits to fill a batch before sending it.
const LINGER: Duration = Duration::from_millis(5);
/// The timeout must exceed the linger time; librdkafka takes at most
/// `i32::MAX` milliseconds (24 days).
const MIN_TIMEOUT_MS: u32 = 10;
const MAX_TIMEOUT_MS: u32 = i32::MAX as u32;
/// How long one wait for delivery reports lasts (rdkafka's `poll` always
/// waits this long), so the final wait overshoots by at most this.
const REPORT_POLL: Duration = Duration::from_millis(10);
/// Serve delivery reports every this many sends, so memory and the progress
/// bar keep up with large inputs.
const POLL_EVERY: u64 = 1024;
/// The most events librdkafka puts in one request to a partition.
const BATCH_MESSAGES: u32 = 10_000;
/// Bounds on the events librdkafka holds, queued or in flight, before a send
/// waits for room: the count bounds librdkafka's per-message bookkeeping,
/// the size bounds the payloads when events are large. Five full batches:
/// publishing a file is no slower than with more, as the second pass over
/// the file sets the pace (BENCHMARKS.md, "Settings chosen by measurement").
const QUEUED_MESSAGES: u32 = 50_000;
const QUEUED_KBYTES: u32 = 16 * 1024;

/// The compression codec of produced batches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Compression {
    None,
    Gzip,
    Snappy,
    Lz4,
    /// Needs a librdkafka built with zstd; the default rdkafka build here has none.
    Zstd,
}

impl Compression {
    /// The value of librdkafka's `compression.type`.
    pub fn librdkafka_name(self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Gzip => "gzip",
            Compression::Snappy => "snappy",
            Compression::Lz4 => "lz4",
            Compression::Zstd => "zstd",
        }
    }
}

/// Where and how to publish.
#[derive(Debug, Clone)]
pub struct PublishSettings {
    /// Comma-separated `host:port` list.
    pub brokers: String,
    pub topic: String,
    pub compression: Compression,
    /// Bound on reaching the broker, on each message's delivery, and on the
    /// final wait for outstanding delivery reports.
    pub timeout: Duration,
    /// librdkafka properties from the settings, set last.
    pub properties: Vec<kafka::KafkaProperty>,
}

#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error("invalid Kafka producer settings: {0}")]
    Settings(KafkaError),
    #[error("compression {codec} is not available: librdkafka was built without it (built-in codecs: {built_in})")]
    CompressionUnavailable { codec: &'static str, built_in: String },
    #[error("the timeout {0} is out of range: it must be between 10ms and 24 days")]
    TimeoutOutOfRange(humantime::FormattedDuration),
    #[error(
        "cannot reach a Kafka broker at {brokers} within {timeout} ({error}); is the broker running and the address right?"
    )]
    Unreachable { brokers: String, timeout: humantime::FormattedDuration, error: KafkaError },
    #[error(
        "topic {topic:?} does not exist at {brokers}; it is created by the rating service at start-up (or create it by hand, e.g. `tansu topic create {topic} --partitions 3`)"
    )]
    TopicMissing { topic: String, brokers: String },
    #[error("topic {topic:?} at {brokers} is not usable: {error}")]
    TopicUnusable { topic: String, brokers: String, error: RDKafkaErrorCode },
    #[error("{0}")]
    Undelivered(Delivery),
}

/// What became of the published events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    pub topic: String,
    /// Events to publish.
    pub events: u64,
    /// Events the broker acknowledged.
    pub delivered: u64,
    /// Failure reasons with how many events each one hit; every event that
    /// was not acknowledged is counted here, sent or not.
    pub failures: BTreeMap<String, u64>,
    pub elapsed: Duration,
}

impl Delivery {
    pub fn failed(&self) -> u64 {
        self.failures.values().sum()
    }
}

impl fmt::Display for Delivery {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "sent {} of {} rating events to topic {:?} in {:.2?}, {} failed",
            self.delivered,
            self.events,
            self.topic,
            self.elapsed,
            self.failed()
        )?;
        let mut separator = ": ";
        for (reason, count) in &self.failures {
            write!(f, "{separator}{reason} ({count})")?;
            separator = "; ";
        }
        Ok(())
    }
}

/// Counts delivery reports and routes librdkafka's logs into `tracing`.
struct DeliveryReports {
    delivered: AtomicU64,
    failed: AtomicU64,
    failures: Mutex<BTreeMap<String, u64>>,
    /// The reason given for events not acknowledged within the timeout.
    timed_out: String,
}

impl DeliveryReports {
    fn new(timeout: Duration) -> Self {
        Self {
            delivered: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            failures: Mutex::default(),
            timed_out: format!("not acknowledged within {}", humantime::format_duration(timeout)),
        }
    }

    fn reported(&self) -> u64 {
        self.delivered.load(Ordering::Relaxed) + self.failed.load(Ordering::Relaxed)
    }

    fn count_failure(&self, reason: String, count: u64) {
        self.failed.fetch_add(count, Ordering::Relaxed);
        *self.lock_failures().entry(reason).or_default() += count;
    }

    /// Why an event failed, worded for the summary.
    fn reason(&self, error: &KafkaError) -> String {
        match error.rdkafka_error_code() {
            // Timed out in librdkafka, or purged by `wait_for_reports` when
            // the timeout passed: the same thing to the user.
            Some(
                RDKafkaErrorCode::MessageTimedOut | RDKafkaErrorCode::PurgeQueue | RDKafkaErrorCode::PurgeInflight,
            ) => self.timed_out.clone(),
            Some(code) => code.to_string(),
            None => error.to_string(),
        }
    }

    fn lock_failures(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, u64>> {
        // A poisoned lock only means a callback panicked mid-insert; the map
        // itself is still a valid map.
        self.failures.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl ClientContext for DeliveryReports {
    /// librdkafka logs connection failures as errors although it retries
    /// them; they are warnings here, and what is fatal reaches the user
    /// through the delivery reports and the summary.
    fn log(&self, level: RDKafkaLogLevel, facility: &str, message: &str) {
        match level {
            RDKafkaLogLevel::Emerg | RDKafkaLogLevel::Alert | RDKafkaLogLevel::Critical => {
                tracing::error!(target: "librdkafka", facility, "{message}")
            }
            RDKafkaLogLevel::Error | RDKafkaLogLevel::Warning => {
                tracing::warn!(target: "librdkafka", facility, "{message}")
            }
            RDKafkaLogLevel::Notice | RDKafkaLogLevel::Info => {
                tracing::info!(target: "librdkafka", facility, "{message}")
            }
            RDKafkaLogLevel::Debug => tracing::debug!(target: "librdkafka", facility, "{message}"),
        }
    }

    /// Global errors repeat what `log` already said, except fatal ones (the
    /// idempotent producer gave up).
    fn error(&self, error: KafkaError, reason: &str) {
        if error.rdkafka_error_code() == Some(RDKafkaErrorCode::Fatal) {
            tracing::error!(target: "librdkafka", %error, "{reason}");
        } else {
            tracing::debug!(target: "librdkafka", %error, "{reason}");
        }
    }
}

impl ProducerContext for DeliveryReports {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        match result {
            Ok(_) => {
                self.delivered.fetch_add(1, Ordering::Relaxed);
            }
            Err((error, _)) => self.count_failure(self.reason(error), 1),
        }
    }
}

/// A connected, idempotent producer for one topic.
pub struct Publisher {
    producer: BaseProducer<DeliveryReports>,
    settings: PublishSettings,
}

impl Publisher {
    /// Creates the producer. librdkafka connects in the background; see
    /// [`Publisher::check_topic`] for a bounded check that it can.
    pub fn new(settings: PublishSettings) -> Result<Self, PublishError> {
        require_codec(settings.compression)?;
        let producer = producer_config(&settings)?
            .create_with_context(DeliveryReports::new(settings.timeout))
            .map_err(PublishError::Settings)?;
        Ok(Self { producer, settings })
    }

    /// Fetches the topic's metadata within the timeout: fails when no broker
    /// answers or the topic does not exist, and returns its partition count.
    pub fn check_topic(&self) -> Result<usize, PublishError> {
        let PublishSettings { brokers, topic, timeout, .. } = &self.settings;
        let metadata = self.producer.client().fetch_metadata(Some(topic), *timeout).map_err(|error| {
            PublishError::Unreachable { brokers: brokers.clone(), timeout: humantime::format_duration(*timeout), error }
        })?;
        let missing = || PublishError::TopicMissing { topic: topic.clone(), brokers: brokers.clone() };
        let topic_metadata =
            metadata.topics().iter().find(|candidate| candidate.name() == topic).ok_or_else(missing)?;
        match topic_metadata.error().map(RDKafkaErrorCode::from) {
            None => {}
            Some(RDKafkaErrorCode::UnknownTopicOrPartition | RDKafkaErrorCode::UnknownTopic) => {
                return Err(missing());
            }
            Some(error) => {
                return Err(PublishError::TopicUnusable { topic: topic.clone(), brokers: brokers.clone(), error });
            }
        }
        match topic_metadata.partitions().len() {
            0 => Err(missing()),
            partitions => Ok(partitions),
        }
    }

    /// Publishes the events (key [`RatingEvent::kafka_key`], value
    /// [`RatingEvent::to_json`]) as the iterator yields them, `expected` in
    /// all, and waits for every delivery report. `Ok` only when `expected`
    /// events were acknowledged. Once per producer: the delivery counts are
    /// the producer's.
    ///
    /// Sending stops at the first failed delivery: librdkafka has already
    /// retried it, so the broker is gone or refusing and every further event
    /// would fail the same way, one timeout later. It also stops at the
    /// first `Err` from `events` (the input could not be read again), whose
    /// message is then the reason the rest was not sent. The run fails either
    /// way, and publishing the file again is safe (each event is a keyed
    /// upsert or delete of one user's rating).
    ///
    /// Memory stays bounded whatever `expected` is: the iterator is pulled
    /// only as fast as librdkafka's queue, bounded by [`producer_config`],
    /// makes room.
    pub fn publish<E: fmt::Display>(
        self,
        events: impl IntoIterator<Item = Result<RatingEvent, E>>,
        expected: u64,
        progress: &ProgressBar,
    ) -> Result<Delivery, PublishError> {
        let started = Instant::now();
        let reports = self.producer.context();
        let topic = self.settings.topic.as_str();
        // With traces exported, every message carries this run's span, so
        // each event's apply span in the rating service joins its trace.
        let span = telemetry::trace_context::producer_span("ratings publish", topic);
        let _entered = span.enter();
        let trace = contract::kafka::headers(&telemetry::trace_context::current_headers());
        // Events handed to librdkafka or refused by it: each gets one report.
        let mut processed = 0_u64;
        let mut unsent_because = None;
        for event in events {
            if reports.failed.load(Ordering::Relaxed) > 0 {
                unsent_because = Some("not sent after the first failure".to_owned());
                break;
            }
            let event = match event {
                Ok(event) => event,
                Err(error) => {
                    unsent_because = Some(format!("not sent: {error}"));
                    break;
                }
            };
            let key = event.kafka_key();
            let payload = event.to_json();
            let mut record = BaseRecord::to(topic).key(&key).payload(&payload);
            if let Some(headers) = &trace {
                record = record.headers(headers.clone());
            }
            loop {
                match self.producer.send(record) {
                    Ok(()) => break,
                    // The local queue is full: serve delivery reports to make
                    // room. Each queued message is reported within the
                    // timeout, so this cannot wait for ever.
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), returned)) => {
                        record = returned;
                        self.producer.poll(LINGER);
                        progress.set_position(reports.reported());
                    }
                    Err((error, _)) => {
                        tracing::debug!(key, %error, "librdkafka refused a rating event");
                        reports.count_failure(reports.reason(&error), 1);
                        break;
                    }
                }
            }
            processed += 1;
            if processed.is_multiple_of(POLL_EVERY) {
                self.producer.poll(Duration::ZERO);
                progress.set_position(reports.reported());
            }
        }
        self.wait_for_reports(processed, progress);
        progress.finish_and_clear();

        let unreported = processed.saturating_sub(reports.reported());
        if unreported > 0 {
            reports.count_failure(reports.timed_out.clone(), unreported);
        }
        let unsent = expected.saturating_sub(processed);
        if unsent > 0 {
            let reason = unsent_because.unwrap_or_else(|| "not sent: the input ended early".to_owned());
            reports.count_failure(reason, unsent);
        }
        let delivery = Delivery {
            topic: topic.to_owned(),
            events: expected.max(processed),
            delivered: reports.delivered.load(Ordering::Relaxed),
            failures: std::mem::take(&mut *reports.lock_failures()),
            elapsed: started.elapsed(),
        };
        if delivery.failed() > 0 { Err(PublishError::Undelivered(delivery)) } else { Ok(delivery) }
    }

    /// Serves delivery reports until all `expected` are in or the timeout
    /// passes; then purges what is left so that nothing is sent after the
    /// summary is written.
    fn wait_for_reports(&self, expected: u64, progress: &ProgressBar) {
        let reports = self.producer.context();
        let deadline = Instant::now() + self.settings.timeout;
        while reports.reported() < expected && Instant::now() < deadline {
            // A zero-timeout flush only wakes the broker threads to send what
            // is lingering; it reports "timed out" while reports are due.
            let _ = self.producer.flush(Duration::ZERO);
            self.producer.poll(REPORT_POLL);
            progress.set_position(reports.reported());
        }
        if reports.reported() < expected {
            self.producer.purge(PurgeConfig::default().queue().inflight());
            // Serves the "purged" reports so they are counted as failures.
            let _ = self.producer.flush(Duration::from_millis(500));
        }
    }
}

/// Fails when librdkafka was built without the codec (the default rdkafka
/// build has no zstd), naming the codecs it has.
fn require_codec(compression: Compression) -> Result<(), PublishError> {
    const CODECS: [&str; 4] = ["gzip", "snappy", "lz4", "zstd"];
    if compression == Compression::None {
        return Ok(());
    }
    let features = ClientConfig::new()
        .create_native_config()
        .and_then(|native| native.get("builtin.features"))
        .map_err(PublishError::Settings)?;
    let built_in: Vec<&str> = features.split(',').filter(|feature| CODECS.contains(feature)).collect();
    let codec = compression.librdkafka_name();
    if built_in.contains(&codec) {
        Ok(())
    } else {
        Err(PublishError::CompressionUnavailable { codec, built_in: built_in.join(", ") })
    }
}

/// An idempotent producer that batches: acks from all in-sync replicas,
/// no duplicates on retry, order kept per partition, so per key.
fn producer_config(settings: &PublishSettings) -> Result<ClientConfig, PublishError> {
    let timeout_ms = u32::try_from(settings.timeout.as_millis())
        .ok()
        .filter(|millis| (MIN_TIMEOUT_MS..=MAX_TIMEOUT_MS).contains(millis))
        .ok_or(PublishError::TimeoutOutOfRange(humantime::format_duration(settings.timeout)))?;
    let mut config =
        kafka::producer_config(&settings.brokers, "ratingingester", Duration::from_millis(timeout_ms.into()));
    config
        .set("linger.ms", LINGER.as_millis().to_string())
        .set("batch.num.messages", BATCH_MESSAGES.to_string())
        .set("queue.buffering.max.messages", QUEUED_MESSAGES.to_string())
        .set("queue.buffering.max.kbytes", QUEUED_KBYTES.to_string())
        .set("compression.type", settings.compression.librdkafka_name());
    kafka::with_properties(&mut config, &settings.properties);
    Ok(config)
}

/// A progress bar of acknowledged events on stderr; hidden unless stderr is
/// a terminal and the input is large enough to be worth watching.
pub fn progress_bar(events: usize, stderr_is_terminal: bool) -> ProgressBar {
    const WORTH_WATCHING: usize = 1000;
    if !stderr_is_terminal || events <= WORTH_WATCHING {
        return ProgressBar::hidden();
    }
    let style =
        ProgressStyle::with_template("{bar:40} {human_pos}/{human_len} events acknowledged ({per_sec:0}, {eta} left)")
            .unwrap_or_else(|_| ProgressStyle::default_bar());
    ProgressBar::with_draw_target(Some(events as u64), ProgressDrawTarget::stderr()).with_style(style)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(timeout: Duration) -> PublishSettings {
        PublishSettings {
            brokers: "127.0.0.1:1".into(),
            topic: "ratings".into(),
            compression: Compression::Lz4,
            timeout,
            properties: Vec::new(),
        }
    }

    #[test]
    fn the_producer_is_idempotent_and_batches() {
        let config = producer_config(&settings(Duration::from_secs(30))).unwrap();
        assert_eq!(config.get("enable.idempotence"), Some("true"));
        assert_eq!(config.get("acks"), Some("all"));
        assert_eq!(config.get("linger.ms"), Some("5"));
        assert_eq!(config.get("queue.buffering.max.messages"), Some("50000"));
        assert_eq!(config.get("queue.buffering.max.kbytes"), Some("16384"));
        assert_eq!(config.get("compression.type"), Some("lz4"));
        assert_eq!(config.get("message.timeout.ms"), Some("30000"));
        assert_eq!(config.get("allow.auto.create.topics"), Some("false"));
    }

    #[test]
    fn timeouts_librdkafka_cannot_take_are_refused() {
        for timeout in [Duration::ZERO, Duration::from_millis(5), Duration::from_secs(u64::MAX / 4)] {
            let error = producer_config(&settings(timeout)).err().unwrap();
            assert!(matches!(error, PublishError::TimeoutOutOfRange(_)), "{timeout:?}: {error}");
            assert!(error.to_string().ends_with("is out of range: it must be between 10ms and 24 days"), "{error}");
        }
    }

    #[test]
    fn the_codecs_of_the_default_build_are_accepted() {
        for compression in [Compression::None, Compression::Gzip, Compression::Snappy, Compression::Lz4] {
            let settings = PublishSettings { compression, ..settings(Duration::from_secs(1)) };
            assert!(Publisher::new(settings).is_ok(), "{compression:?}");
        }
    }

    #[test]
    fn a_codec_missing_from_the_build_is_named() {
        // The default rdkafka build has no zstd; should it gain one, the
        // producer must then accept it.
        let settings = PublishSettings { compression: Compression::Zstd, ..settings(Duration::from_secs(1)) };
        match Publisher::new(settings) {
            Ok(_) => {}
            Err(error) => assert_eq!(
                error.to_string(),
                "compression zstd is not available: librdkafka was built without it (built-in codecs: gzip, snappy, lz4)"
            ),
        }
    }

    #[test]
    fn an_unreachable_broker_fails_within_the_timeout() {
        let publisher = Publisher::new(settings(Duration::from_millis(500))).unwrap();
        let started = Instant::now();
        let error = publisher.check_topic().unwrap_err();
        assert!(started.elapsed() < Duration::from_secs(5), "took {:?}", started.elapsed());
        let message = error.to_string();
        assert!(message.starts_with("cannot reach a Kafka broker at 127.0.0.1:1 within 500ms ("), "{message}");
    }

    #[test]
    fn the_delivery_summary_counts_failures_by_reason() {
        let delivery = Delivery {
            topic: "ratings".into(),
            events: 20,
            delivered: 17,
            failures: BTreeMap::from([
                ("Message timed out".to_owned(), 2),
                ("not acknowledged within 30s".to_owned(), 1),
            ]),
            elapsed: Duration::from_millis(1500),
        };
        assert_eq!(delivery.failed(), 3);
        assert_eq!(
            delivery.to_string(),
            r#"sent 17 of 20 rating events to topic "ratings" in 1.50s, 3 failed: Message timed out (2); not acknowledged within 30s (1)"#
        );
    }

    #[test]
    fn the_progress_bar_shows_only_for_large_inputs_on_a_terminal() {
        assert!(progress_bar(1_000_000, false).is_hidden());
        assert!(progress_bar(20, true).is_hidden());
    }
}
