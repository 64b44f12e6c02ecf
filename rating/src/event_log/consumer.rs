//! The consumer of the ratings topic: applies its events to the store, in
//! batches, each batch together with the position in the topic it brings
//! its partitions to (see [`crate::repository`]).
//!
//! How partitions are shared depends on the store:
//! * **memory and SQLite** (a store per instance): the consumer assigns
//!   itself *every* partition, from the store's positions (the beginning
//!   for memory, where the file stopped for SQLite), and reports ready once
//!   it has applied everything that was in the topic when it started;
//! * **PostgreSQL** (one store for every replica): the replicas join one
//!   Kafka consumer group (`--consumer-group`, `rating` by default) that
//!   splits the partitions between them (cooperative-sticky: a rebalance
//!   moves only the partitions that change hands), and each assigned
//!   partition starts at its position stored in the database. With an empty
//!   group name every replica instead reads every partition; the first to
//!   reach a batch applies it, and the others find it behind the stored
//!   positions and skip it (the positions' rows are locked while a batch is
//!   applied). Either way a replica is ready once the database is (nothing
//!   to replay).
//!
//! The store's positions are the record of progress, written in the
//! transaction that applies the events, so an event is never lost or
//! counted twice across crashes and rebalances. In a group, the applied
//! positions are also committed to Kafka after each batch, best effort, so
//! that Kafka's own tools and autoscalers that read the group's offsets see
//! the true lag; where a partition starts is still read from the database.
//!
//! A message that cannot be decoded or validated (a poison pill), or that
//! the store refuses, is logged with its topic, partition and offset, copied
//! to the dead-letter topic with the reason in the `x-dlq-reason` header,
//! counted, and skipped. While the database is unreachable, ingestion
//! pauses and retries the same batch: nothing is skipped.
use std::{
    collections::{BTreeMap, HashMap},
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use backon::{BackoffBuilder, ExponentialBuilder};
use contract::event::{KeyMatch, KeyedEvent, MessageError};
use platform::shutdown::CancellationToken;
use rdkafka::{
    ClientContext, Message, Offset, Statistics, TopicPartitionList,
    consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, RebalanceProtocol, StreamConsumer},
    error::{KafkaError, KafkaResult},
    message::{BorrowedMessage, Header, OwnedHeaders},
    producer::{FutureProducer, FutureRecord},
    types::RDKafkaRespErr,
    util::Timeout,
};
use telemetry::{Chain, log_throttle::Throttle};
use tokio::sync::Notify;

use super::{AppliedOffsets, DLQ_REASON_HEADER, EventLogSettings, Prefetch, topics::ensure_topics};
use crate::{
    controller::RatingController,
    model::{RatingEvent, RatingRange},
    repository::{LoggedEvent, RatingRepository, RepositoryError, SharedPositions, Sharing},
};

/// The most messages applied in one transaction. Only an instance catching
/// up fills it: a steady stream comes in small batches. Large, because a
/// batch of random keys dirties about one page of the ratings' B-tree per
/// event until the batch outnumbers its pages (BENCHMARKS.md, "Settings
/// chosen by measurement").
const MAX_BATCH: usize = 20_000;
/// How long a batch rolled back by a conflict waits before it runs again.
const CONFLICT_RETRY: Duration = Duration::from_millis(5);
/// How often events without their canonical key are reported in the log: a
/// producer that sends no key sends none for any event, so one line a
/// minute says all there is to say.
const KEY_REPORT_INTERVAL: Duration = Duration::from_secs(60);

/// The dead-letter reason of an event the store refused.
const REFUSED_BY_STORE: &str = "refused_by_store";

/// Why ingestion stopped for good.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error("the store refused to record a refused event's position")]
    Store(#[source] RepositoryError),
}

/// The partitions this instance holds now, each with the end of the
/// partition (its high watermark) as librdkafka last reported it: the
/// consumer lag of exactly those partitions, asked for at each scrape, so a
/// partition handed to another replica takes its series with it.
pub struct Assignment {
    applied: Arc<AppliedOffsets>,
    held: Mutex<BTreeMap<i32, Option<i64>>>,
}

impl Assignment {
    fn new(applied: Arc<AppliedOffsets>) -> Self {
        Self { applied, held: Mutex::default() }
    }

    fn held(&self) -> std::sync::MutexGuard<'_, BTreeMap<i32, Option<i64>>> {
        self.held.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn hold(&self, partitions: impl IntoIterator<Item = i32>) {
        let mut held = self.held();
        for partition in partitions {
            held.entry(partition).or_insert(None);
        }
    }

    fn release(&self, partitions: impl IntoIterator<Item = i32>) {
        let mut held = self.held();
        for partition in partitions {
            held.remove(&partition);
        }
    }

    /// The partitions held now.
    pub fn partitions(&self) -> Vec<i32> {
        self.held().keys().copied().collect()
    }

    /// Records a held partition's end, from librdkafka's statistics.
    fn saw_end(&self, partition: i32, end: i64) {
        if let Some(known) = self.held().get_mut(&partition) {
            *known = Some(end);
        }
    }
}

impl telemetry::metrics::Collector for Assignment {
    /// How far behind the topic this instance is, per partition it holds:
    /// the partition's end minus the next offset this instance will apply.
    fn collect(&self, samples: &mut Vec<telemetry::metrics::GaugeSample>) {
        for (&partition, end) in self.held().iter() {
            let Some(end) = *end else { continue };
            let lag = (end - self.applied.next_offset(partition)).max(0);
            samples.push(telemetry::metrics::GaugeSample {
                name: "rating_consumer_lag",
                labels: vec![("partition", partition.to_string())],
                value: lag as f64,
            });
        }
    }
}

/// The consumer's librdkafka context: keeps [`Assignment`] up to date, and,
/// in a consumer group, starts each assigned partition at the store's
/// position.
pub struct IngestContext {
    topic: String,
    /// The partitions held, and what was applied of each.
    assignment: Arc<Assignment>,
    /// In a consumer group: the shared store, where each assigned partition
    /// resumes.
    shared: Option<Arc<dyn SharedPositions>>,
    /// Commits to the group that failed, reported now and then.
    commit_failures: Throttle,
}

impl ClientContext for IngestContext {
    /// The end of each held partition, from librdkafka's periodic
    /// statistics (which list every partition it knows of, held or not).
    fn stats(&self, statistics: Statistics) {
        let Some(topic) = statistics.topics.get(&self.topic) else { return };
        for (&partition, figures) in &topic.partitions {
            self.assignment.saw_end(partition, figures.hi_offset);
        }
    }
}

impl ConsumerContext for IngestContext {
    fn rebalance(&self, consumer: &BaseConsumer<Self>, error: RDKafkaRespErr, partitions: &mut TopicPartitionList) {
        // Cooperative assignment hands over only the partitions that move:
        // they are added to, or taken from, what is held.
        let incremental = matches!(consumer.rebalance_protocol(), RebalanceProtocol::Cooperative);
        let ids: Vec<i32> =
            partitions.elements_for_topic(&self.topic).iter().map(|element| element.partition()).collect();
        let outcome = match error {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => {
                self.start_at_stored_positions(partitions, &ids);
                let assigned =
                    if incremental { consumer.incremental_assign(partitions) } else { consumer.assign(partitions) };
                if assigned.is_ok() {
                    self.assignment.hold(ids);
                }
                assigned
            }
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => {
                tracing::info!(partitions = %partition_ids(partitions), "partitions revoked");
                self.assignment.release(ids);
                if incremental { consumer.incremental_unassign(partitions) } else { consumer.unassign() }
            }
            other => {
                tracing::warn!(error = ?other, "consumer group rebalance failed; dropping the assignment");
                self.assignment.release(self.assignment.partitions());
                consumer.unassign()
            }
        };
        if let Err(error) = outcome {
            tracing::error!(%error, "cannot apply the consumer group's assignment");
        }
    }

    /// A commit of applied positions to the group is best effort: the
    /// database holds the positions that count.
    fn commit_callback(&self, result: KafkaResult<()>, offsets: &TopicPartitionList) {
        if let Err(error) = result
            && let Some(held_back) = self.commit_failures.admit()
        {
            tracing::warn!(%error, partitions = %partition_ids(offsets), held_back,
                "cannot commit the applied positions to the consumer group; the database keeps them");
        }
    }
}

impl IngestContext {
    /// Sets the start of each assigned partition (`assigned`, the topic's
    /// partitions in `partitions`) to the store's position. When
    /// the store cannot be read, each starts from the beginning: slower, but
    /// the store skips what it holds already.
    fn start_at_stored_positions(&self, partitions: &mut TopicPartitionList, assigned: &[i32]) {
        let Some(shared) = &self.shared else { return };
        // A cooperative rebalance can hand a member nothing new.
        if assigned.is_empty() {
            return;
        }
        let stored = shared.read_blocking(&self.topic).unwrap_or_else(|error| {
            tracing::warn!(error = %Chain(&error),
                "cannot read the stored positions; the assigned partitions start from the beginning");
            HashMap::new()
        });
        for &partition in assigned {
            let start = stored.get(&partition).map_or(Offset::Beginning, |next| Offset::Offset(*next));
            if let Err(error) = partitions.set_partition_offset(&self.topic, partition, start) {
                tracing::error!(partition, %error, "cannot set the start of an assigned partition");
            }
            if let Some(&next) = stored.get(&partition) {
                self.assignment.applied.advance_to(partition, next);
            }
        }
        tracing::info!(partitions = %partition_ids(partitions), "partitions assigned; each resumes at its stored position");
    }
}

fn partition_ids(partitions: &TopicPartitionList) -> String {
    let ids: Vec<String> = partitions.elements().iter().map(|element| element.partition().to_string()).collect();
    ids.join(",")
}

/// What the consumer has done so far.
#[derive(Debug, Default)]
pub struct ConsumerStats {
    pub applied: AtomicU64,
    pub skipped: AtomicU64,
    pub dead_lettered: AtomicU64,
}

pub struct EventConsumer<R> {
    settings: EventLogSettings,
    sharing: Sharing,
    prefetch: Prefetch,
    /// Shared with the write path: one producer per process.
    dead_letters: FutureProducer,
    controller: Arc<RatingController<R>>,
    applied: Arc<AppliedOffsets>,
    stats: Arc<ConsumerStats>,
    range: RatingRange,
    /// Events applied without their canonical key: one throttle for no key, one for another key.
    key_reports: [Throttle; 2],
    /// The partitions held, and their lag, reported at each scrape.
    assignment: Arc<Assignment>,
}

type Connected = (StreamConsumer<IngestContext>, Option<HashMap<i32, i64>>);

impl<R: RatingRepository> EventConsumer<R> {
    pub fn new(
        settings: EventLogSettings,
        sharing: Sharing,
        dead_letters: FutureProducer,
        controller: Arc<RatingController<R>>,
        applied: Arc<AppliedOffsets>,
        range: RatingRange,
    ) -> Self {
        let key_reports = [Throttle::new(KEY_REPORT_INTERVAL), Throttle::new(KEY_REPORT_INTERVAL)];
        let prefetch = Prefetch::for_store(&sharing);
        let assignment = Arc::new(Assignment::new(applied.clone()));
        telemetry::metrics::register_collector(&assignment);
        // Every series at 0 from the start, so that a rate or an increase
        // counts the first event too.
        for reason in MessageError::KINDS.into_iter().chain([REFUSED_BY_STORE]) {
            metrics::counter!("rating_events_dead_lettered_total", "reason" => reason).increment(0);
        }
        for event_type in ["put", "delete"] {
            metrics::counter!("rating_events_applied_total", "event_type" => event_type).increment(0);
        }
        Self {
            assignment,
            settings,
            sharing,
            prefetch,
            dead_letters,
            controller,
            applied,
            stats: Arc::default(),
            range,
            key_reports,
        }
    }

    /// Ingests until `stop` is cancelled. `caught_up` is notified once this
    /// instance holds everything the topic held when it started (at once
    /// when the replicas share the store: it holds what the topic held).
    /// Retries with backoff while the broker or the database cannot be
    /// reached; returns an error only when ingestion cannot go on at all.
    pub async fn run(self, caught_up: &Notify, stop: CancellationToken) -> Result<(), IngestError> {
        let mut ready = Some(caught_up);
        metrics::gauge!("rating_consumer_caught_up").set(0.0);
        if self.sharing.shared().is_some() {
            caught_up.notify_one();
            ready = None;
        }
        let mut backoff = retry_backoff();
        let (consumer, targets) = loop {
            match self.connect().await {
                Ok(connected) => break connected,
                Err(error) => {
                    let delay = backoff.next().unwrap_or(Duration::from_secs(5));
                    tracing::warn!(brokers = %self.settings.brokers, error = %Chain(&error), retry_in = ?delay,
                        "cannot start ingestion; reads are served, ingestion waits");
                    tokio::select! {
                        _ = stop.cancelled() => return Ok(()),
                        _ = tokio::time::sleep(delay) => {}
                    }
                }
            }
        };
        let in_group = self.group().is_some();
        let started = Instant::now();
        let mut last_progress = Instant::now();
        let consumer_errors = Throttle::new(telemetry::log_throttle::REPORT_INTERVAL);
        loop {
            if ready.is_some() && targets.as_ref().is_none_or(|targets| self.caught_up(targets)) {
                if targets.is_some() {
                    tracing::info!(events = self.stats.applied.load(Ordering::Relaxed),
                        dead_lettered = self.stats.dead_lettered.load(Ordering::Relaxed),
                        took = ?started.elapsed(), "caught up with the topic; ingesting new events");
                }
                if let Some(caught_up) = ready.take() {
                    caught_up.notify_one();
                }
                metrics::gauge!("rating_consumer_caught_up").set(1.0);
            }
            let first = tokio::select! {
                _ = stop.cancelled() => break,
                message = consumer.recv() => message,
            };
            match first {
                Ok(first) => {
                    let batch = next_batch(&consumer, first).await;
                    if !self.handle(&batch, &stop).await? {
                        break;
                    }
                    if in_group {
                        self.commit_to_group(&consumer, &batch);
                    }
                    if ready.is_some() && last_progress.elapsed() >= Duration::from_secs(2) {
                        last_progress = Instant::now();
                        tracing::info!(
                            applied = self.stats.applied.load(Ordering::Relaxed),
                            of = targets.as_ref().map(|targets| targets.values().sum::<i64>()),
                            "catching up"
                        );
                    }
                }
                // What librdkafka reports here (a broker connection lost,
                // all brokers down) it recovers from by itself, and each
                // report waits in the queue ahead of the messages fetched
                // after it: waiting after each one held those messages back,
                // a broker outage's worth of reports times the wait. So the
                // next message is asked for at once; librdkafka's own
                // reconnect backoff paces the reports.
                Err(error) => {
                    if let Some(held_back) = consumer_errors.admit() {
                        tracing::warn!(%error, held_back, "Kafka consumer error; librdkafka retries by itself");
                    }
                }
            }
        }
        tracing::info!(
            applied = self.stats.applied.load(Ordering::Relaxed),
            skipped = self.stats.skipped.load(Ordering::Relaxed),
            dead_lettered = self.stats.dead_lettered.load(Ordering::Relaxed),
            "ingestion stopped"
        );
        Ok(())
    }

    /// Creates the topics if needed and starts consuming: every partition
    /// from the store's positions, with each partition's end offset at this
    /// moment (what "caught up" means), or as a member of the consumer
    /// group.
    async fn connect(&self) -> Result<Connected, ConnectError> {
        ensure_topics(&self.settings).await?;
        let group = self.group();
        let context = IngestContext {
            topic: self.settings.topic.clone(),
            assignment: self.assignment.clone(),
            shared: group.as_ref().map(|(_, shared)| shared.clone()),
            commit_failures: Throttle::new(telemetry::log_throttle::REPORT_INTERVAL),
        };
        if let Some((group, _)) = group {
            let consumer = self.settings.consumer(context, Some(group), self.prefetch)?;
            consumer.subscribe(&[&self.settings.topic])?;
            tracing::info!(topic = %self.settings.topic, group, "joining the consumer group; partitions resume at the positions stored in the database");
            return Ok((consumer, None));
        }
        let stored = self.controller.positions(&self.settings.topic).await?;
        let consumer = self.settings.consumer(context, None, self.prefetch)?;
        let topic = self.settings.topic.clone();
        let (consumer, ends) = tokio::task::spawn_blocking(move || -> Result<_, KafkaError> {
            let timeout = Duration::from_secs(10);
            let metadata = consumer.fetch_metadata(Some(&topic), timeout)?;
            let partitions: Vec<i32> = metadata
                .topics()
                .iter()
                .filter(|found| found.name() == topic)
                .flat_map(|found| found.partitions().iter().map(|partition| partition.id()))
                .collect();
            if partitions.is_empty() {
                return Err(KafkaError::MetadataFetch(rdkafka::types::RDKafkaErrorCode::UnknownTopicOrPartition));
            }
            let mut ends = HashMap::new();
            for partition in partitions {
                let (_low, high) = consumer.fetch_watermarks(&topic, partition, timeout)?;
                ends.insert(partition, high);
            }
            Ok((consumer, ends))
        })
        .await
        .map_err(|_| KafkaError::Canceled)??;
        let mut assignment = TopicPartitionList::new();
        for (&partition, &end) in &ends {
            let start = match stored.get(&partition) {
                Some(&next) if next > end => {
                    // Either the broker lost events the store holds (a
                    // broker in memory that restarted), or it reports its end
                    // offsets coarsely (Tansu 0.6 gives the start of the
                    // last record batch): not an error that can be told
                    // apart, so it is said loudly and ingestion goes on.
                    tracing::warn!(topic = %self.settings.topic, partition, stored = next, end,
                        "the broker says the partition ends before the store's position; if the broker lost its \
                         data, new events below the store's position will be skipped: start on an empty store");
                    self.applied.advance_to(partition, next);
                    Offset::Offset(next)
                }
                Some(&next) => {
                    self.applied.advance_to(partition, next);
                    Offset::Offset(next)
                }
                None => Offset::Beginning,
            };
            assignment.add_partition_offset(&self.settings.topic, partition, start)?;
        }
        consumer.assign(&assignment)?;
        self.assignment.hold(ends.keys().copied());
        let (stored_events, total): (i64, i64) = (stored.values().sum(), ends.values().sum());
        tracing::info!(topic = %self.settings.topic, partitions = ends.len(), events = total,
            already_applied = stored_events, "reading every partition from the store's positions");
        Ok((consumer, Some(ends)))
    }

    /// The consumer group this instance splits the partitions in, and the
    /// store it shares: replicas that share a store join the group, when one
    /// is configured.
    fn group(&self) -> Option<(&str, Arc<dyn SharedPositions>)> {
        self.settings.consumer_group.as_deref().zip(self.sharing.shared())
    }

    /// Commits to the group the position each partition of `batch` reached,
    /// now that the store holds it: what the database says, so the group's
    /// offsets never run ahead of the store. Asynchronous and best effort
    /// (failures reach [`IngestContext::commit_callback`]).
    fn commit_to_group(&self, consumer: &StreamConsumer<IngestContext>, batch: &[BorrowedMessage<'_>]) {
        let mut partitions: Vec<i32> = batch.iter().map(BorrowedMessage::partition).collect();
        partitions.sort_unstable();
        partitions.dedup();
        let mut offsets = TopicPartitionList::new();
        for partition in partitions {
            let next = self.applied.next_offset(partition);
            if let Err(error) = offsets.add_partition_offset(&self.settings.topic, partition, Offset::Offset(next)) {
                tracing::debug!(partition, %error, "cannot name a position to commit");
            }
        }
        if let Err(error) = consumer.commit(&offsets, CommitMode::Async) {
            tracing::debug!(%error, "cannot commit the applied positions to the consumer group");
        }
    }

    fn caught_up(&self, targets: &HashMap<i32, i64>) -> bool {
        targets.iter().all(|(partition, end)| self.applied.next_offset(*partition) >= *end)
    }

    /// Applies one batch: decodes and validates each message, dead-letters
    /// what it refuses, then applies the rest with every position in one
    /// step, retrying while the store is unavailable. False when `stop`
    /// came first (nothing of the batch is then recorded).
    async fn handle(&self, batch: &[BorrowedMessage<'_>], stop: &CancellationToken) -> Result<bool, IngestError> {
        let mut logged = Vec::with_capacity(batch.len());
        let mut spans = Vec::new();
        for message in batch {
            let decoded = RatingEvent::from_message(message.key(), message.payload(), self.range, self.settings.keys);
            let event = match decoded {
                Ok(KeyedEvent { event, key }) => {
                    if key != KeyMatch::Canonical {
                        self.report_key(message, &event, key);
                    }
                    tracing::debug!(partition = message.partition(), offset = message.offset(), %event, "applying");
                    if telemetry::exporting_traces() {
                        let headers = contract::kafka::text_headers(message.headers());
                        spans.push(telemetry::trace_context::consumer_span("ratings apply", message.topic(), headers));
                    }
                    Some(event)
                }
                Err(error) => {
                    // What is too large to keep whole stays only in the ratings topic,
                    // at the offset the dead letter names.
                    let keep_content = !matches!(error, MessageError::TooLarge { .. });
                    self.dead_letter(message, error.kind(), &error.to_string(), keep_content).await;
                    None
                }
            };
            logged.push(LoggedEvent { partition: message.partition(), offset: message.offset(), event });
        }
        let applied = match self.apply(&logged, stop).await {
            Applied::Done => true,
            Applied::Stopped => false,
            Applied::Refused(error) => {
                tracing::warn!(error = %Chain(&error), events = logged.len(),
                    "the store refused the batch; applying its events one at a time");
                self.apply_one_at_a_time(batch, logged, stop).await?
            }
        };
        drop(spans);
        Ok(applied)
    }

    /// Applies `logged` as one batch, waiting while the store is unavailable.
    async fn apply(&self, logged: &[LoggedEvent], stop: &CancellationToken) -> Applied {
        let mut backoff = retry_backoff();
        loop {
            match self.controller.ingest(&self.settings.topic, logged).await {
                Ok(progress) => {
                    for &(partition, next) in &progress.positions {
                        self.applied.advance_to(partition, next);
                    }
                    self.stats.applied.fetch_add(progress.puts + progress.deletes, Ordering::Relaxed);
                    self.stats.skipped.fetch_add(progress.skipped, Ordering::Relaxed);
                    metrics::counter!("rating_events_applied_total", "event_type" => "put").increment(progress.puts);
                    metrics::counter!("rating_events_applied_total", "event_type" => "delete")
                        .increment(progress.deletes);
                    return Applied::Done;
                }
                Err(error) if error.is_conflict() => {
                    // Another replica's transaction held what this one
                    // needed: the database rolled this one back whole.
                    tracing::debug!(error = %Chain(&error), "the batch collided with a concurrent one; applying it again");
                    tokio::select! {
                        _ = stop.cancelled() => return Applied::Stopped,
                        _ = tokio::time::sleep(CONFLICT_RETRY) => {}
                    }
                }
                Err(error) if error.is_unavailable() => {
                    let delay = backoff.next().unwrap_or(Duration::from_secs(5));
                    tracing::warn!(error = %Chain(&error), retry_in = ?delay,
                        "the store is unavailable; ingestion pauses, nothing is skipped");
                    tokio::select! {
                        _ = stop.cancelled() => return Applied::Stopped,
                        _ = tokio::time::sleep(delay) => {}
                    }
                }
                Err(error) => return Applied::Refused(error),
            }
        }
    }

    /// Applies each event of a refused batch on its own, dead-lettering the
    /// ones the store refuses, so one bad event never stops a partition.
    async fn apply_one_at_a_time(
        &self,
        batch: &[BorrowedMessage<'_>],
        logged: Vec<LoggedEvent>,
        stop: &CancellationToken,
    ) -> Result<bool, IngestError> {
        for (message, entry) in batch.iter().zip(logged) {
            let refused = match self.apply(std::slice::from_ref(&entry), stop).await {
                Applied::Done => continue,
                Applied::Stopped => return Ok(false),
                Applied::Refused(error) => error,
            };
            let reason = Chain(&refused).to_string();
            self.dead_letter(message, REFUSED_BY_STORE, &reason, true).await;
            let position_only = LoggedEvent { event: None, ..entry };
            match self.apply(std::slice::from_ref(&position_only), stop).await {
                Applied::Done => {}
                Applied::Stopped => return Ok(false),
                Applied::Refused(error) => return Err(IngestError::Store(error)),
            }
        }
        Ok(true)
    }

    /// Counts an event applied without its canonical key, and says so in the
    /// log now and then: its order relative to the same rating's other
    /// events is only what its producer made it.
    fn report_key(&self, message: &BorrowedMessage<'_>, event: &RatingEvent, key: KeyMatch) {
        metrics::counter!("rating_events_noncanonical_key_total", "key" => key.kind()).increment(1);
        let throttle = &self.key_reports[usize::from(key == KeyMatch::Other)];
        if let Some(held_back) = throttle.admit() {
            // Quoted (escaped) and cut short: a key is whatever a producer sent.
            let found: String = String::from_utf8_lossy(message.key().unwrap_or_default()).chars().take(60).collect();
            tracing::warn!(
                topic = message.topic(),
                partition = message.partition(),
                offset = message.offset(),
                key = key.kind(),
                found = ?found,
                canonical = %event.kafka_key(),
                held_back,
                "applying an event without its canonical key; one rating's events stay in order only if its \
                 producer sends them all to one partition (--strict-event-keys dead-letters such events)"
            );
        }
    }

    /// Writes `message` to the dead-letter topic with `reason`; its key and
    /// payload too if `keep_content`.
    async fn dead_letter(&self, message: &BorrowedMessage<'_>, kind: &'static str, reason: &str, keep_content: bool) {
        metrics::counter!("rating_events_dead_lettered_total", "reason" => kind).increment(1);
        let count = self.stats.dead_lettered.fetch_add(1, Ordering::Relaxed) + 1;
        let (topic, partition, offset) = (message.topic(), message.partition(), message.offset());
        tracing::warn!(
            topic,
            partition,
            offset,
            reason,
            dead_lettered = count,
            "refused event moved to the dead-letter topic"
        );
        let (partition_text, offset_text) = (partition.to_string(), offset.to_string());
        let headers = OwnedHeaders::new()
            .insert(Header { key: DLQ_REASON_HEADER, value: Some(reason) })
            .insert(Header { key: "x-original-topic", value: Some(topic) })
            .insert(Header { key: "x-original-partition", value: Some(&partition_text) })
            .insert(Header { key: "x-original-offset", value: Some(&offset_text) });
        let mut record = FutureRecord::<[u8], [u8]>::to(&self.settings.dlq_topic).headers(headers);
        if let Some(key) = message.key().filter(|_| keep_content) {
            record = record.key(key);
        }
        if let Some(payload) = message.payload().filter(|_| keep_content) {
            record = record.payload(payload);
        }
        if let Err((error, _)) = self.dead_letters.send(record, Timeout::After(Duration::from_secs(5))).await {
            tracing::error!(topic, partition, offset, %error, "cannot write to the dead-letter topic; the event stays only in the log above");
        }
    }
}

/// The outcome of applying a batch.
enum Applied {
    Done,
    /// Shutdown came while the store was unavailable.
    Stopped,
    /// The store refused the batch (not for being unavailable).
    Refused(RepositoryError),
}

/// Why ingestion could not start yet.
#[derive(Debug, thiserror::Error)]
enum ConnectError {
    #[error("Kafka")]
    Kafka(#[from] KafkaError),
    #[error("the store")]
    Store(#[from] RepositoryError),
}

/// `first` and the messages already waiting behind it, up to [`MAX_BATCH`].
async fn next_batch<'c>(
    consumer: &'c StreamConsumer<IngestContext>,
    first: BorrowedMessage<'c>,
) -> Vec<BorrowedMessage<'c>> {
    let mut batch = vec![first];
    while batch.len() < MAX_BATCH {
        match tokio::time::timeout(Duration::ZERO, consumer.recv()).await {
            Ok(Ok(message)) => batch.push(message),
            Ok(Err(error)) => {
                tracing::warn!(%error, "Kafka consumer error; applying what was read so far");
                break;
            }
            // Nothing more waiting.
            Err(_) => break,
        }
    }
    batch
}

/// Retries of the broker and of the store: quick at first, then every few
/// seconds, without end (shutdown ends the wait).
fn retry_backoff() -> impl Iterator<Item = Duration> {
    ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(200))
        .with_max_delay(Duration::from_secs(5))
        .with_jitter()
        .without_max_times()
        .build()
}
