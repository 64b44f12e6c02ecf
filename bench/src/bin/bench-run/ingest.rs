//! The ingestion measurements, each run on a fresh in-memory broker: bare
//! producer, ratingingester, the rating service applying what is published,
//! bare consumer, and a fresh rating instance replaying the topic.
use std::{
    path::Path,
    time::{Duration, Instant},
};

use bench::{
    events::{PROBE_AVERAGE, PROBE_RECORD},
    processes::{ingester_args, run_tool, sent_all, start_service},
    procfs,
    rpc::await_average,
};
use serde_json::Value;
use testbed::ChildProcess;

use crate::Context;

/// Everything one run of the ingestion phase measured.
#[derive(Debug, Clone, Default)]
pub struct IngestRun {
    pub events: u64,
    pub bare_produce_s: f64,
    pub ingester_publish_s: f64,
    /// ratingingester's whole run: reading and validating the file, then publishing.
    pub ingester_wall_s: f64,
    /// From ratingingester's first publish to the probe average read on the running rating instance.
    pub apply_s: f64,
    pub apply_rating_cpu_s: f64,
    pub apply_rss_bytes: u64,
    pub bare_consume_s: f64,
    pub bare_consume_broker_cpu_s: f64,
    /// From spawning a fresh rating instance to the probe average read there.
    pub replay_s: f64,
    pub replay_rating_cpu_s: f64,
    pub replay_broker_cpu_s: f64,
    pub replay_rss_bytes: u64,
}

impl IngestRun {
    pub fn rate(&self, seconds: f64) -> f64 {
        self.events as f64 / seconds
    }
}

pub fn kafka_bare(context: &Context, args: &[String], timeout: Duration) -> anyhow::Result<f64> {
    let output = run_tool(&context.binary("kafka-bare"), args, timeout)?;
    let line = output.stdout.lines().last().unwrap_or_default();
    let report: Value = serde_json::from_str(line)?;
    report["elapsed_s"].as_f64().ok_or_else(|| anyhow::anyhow!("kafka-bare printed {line:?}"))
}

/// The seconds the bare consumer takes to read `events` messages of
/// `ratings` from the beginning.
pub fn bare_consume(context: &Context, brokers: &str, events: u64, timeout: Duration) -> anyhow::Result<f64> {
    let args = [
        "--brokers".into(),
        brokers.to_owned(),
        "consume".into(),
        "--topic".into(),
        "ratings".into(),
        "--messages".into(),
        events.to_string(),
    ];
    kafka_bare(context, &args, timeout)
}

fn start_rating(
    context: &Context,
    brokers: &str,
    name: &str,
    work_dir: &Path,
) -> anyhow::Result<(ChildProcess, String)> {
    let args = ["--kafka-brokers".to_owned(), brokers.to_owned()];
    start_service(name, &context.binary("rating"), &args, &[], work_dir, work_dir.join(format!("{name}.log")))
}

pub fn ticks_to_s(ticks: u64) -> f64 {
    ticks as f64 / procfs::clock_ticks_per_second() as f64
}

/// One run of the ingestion phase; `events_file` holds `events` lines.
pub fn run(context: &Context, events_file: &Path, events: u64, work_dir: &Path) -> anyhow::Result<IngestRun> {
    let mut run = IngestRun { events, ..IngestRun::default() };
    let file = events_file.display().to_string();
    let slow = Duration::from_secs(600);
    let broker = context.start_broker(work_dir)?;
    let brokers = broker.address();

    // The ratings topic is created by the rating service at start-up; it is ready once health says SERVING.
    let (applying, applying_address) = start_rating(context, &brokers, "rating-apply", work_dir)?;
    context.runtime.block_on(bench::rpc::await_serving(&applying_address, Instant::now() + Duration::from_secs(60)))?;

    run.bare_produce_s = kafka_bare(
        context,
        &["--brokers".into(), brokers.clone(), "produce".into(), file, "--topic".into(), "bare-produce".into()],
        slow,
    )?;
    eprintln!("  bare producer     {:>9.0} events/s ({:.2}s)", run.rate(run.bare_produce_s), run.bare_produce_s);

    let cpu_before = procfs::cpu_ticks(applying.pid())?;
    let ingester = context.binary("ratingingester");
    let ingester_args = ingester_args(&brokers, events_file);
    let publishing = std::thread::spawn(move || run_tool(&ingester, &ingester_args, slow));
    let probed = context.runtime.block_on(await_average(
        &applying_address,
        PROBE_RECORD,
        PROBE_AVERAGE,
        Duration::from_millis(20),
        Instant::now() + slow,
    ));
    let published = publishing.join().map_err(|_| anyhow::anyhow!("the ratingingester thread panicked"))??;
    let probed = probed?;
    run.apply_rating_cpu_s = ticks_to_s(procfs::cpu_ticks(applying.pid())?.saturating_sub(cpu_before));
    run.apply_rss_bytes = procfs::resident_bytes(applying.pid())?;
    let summary = sent_all(&published, events)?;
    let publish = summary
        .publish_elapsed()
        .ok_or_else(|| anyhow::anyhow!("no publishing time from ratingingester:\n{}", published.stdout))?;
    run.ingester_publish_s = publish.as_secs_f64();
    run.ingester_wall_s = (published.finished - published.started).as_secs_f64();
    let first_publish = published.finished - publish;
    run.apply_s = probed.saturating_duration_since(first_publish).as_secs_f64();
    eprintln!(
        "  ratingingester    {:>9.0} events/s ({:.2}s publishing, {:.2}s in all)",
        run.rate(run.ingester_publish_s),
        run.ingester_publish_s,
        run.ingester_wall_s
    );
    eprintln!(
        "  rating applies    {:>9.0} events/s ({:.2}s from the first publish to the probe; RSS {} MB)",
        run.rate(run.apply_s),
        run.apply_s,
        run.apply_rss_bytes / (1 << 20)
    );

    let broker_before = procfs::cpu_ticks(broker.pid())?;
    run.bare_consume_s = bare_consume(context, &brokers, events, slow)?;
    run.bare_consume_broker_cpu_s = ticks_to_s(procfs::cpu_ticks(broker.pid())?.saturating_sub(broker_before));
    eprintln!("  bare consumer     {:>9.0} events/s ({:.2}s)", run.rate(run.bare_consume_s), run.bare_consume_s);

    let broker_before = procfs::cpu_ticks(broker.pid())?;
    let spawned = Instant::now();
    let (replaying, replaying_address) = start_rating(context, &brokers, "rating-replay", work_dir)?;
    let probed = context.runtime.block_on(await_average(
        &replaying_address,
        PROBE_RECORD,
        PROBE_AVERAGE,
        Duration::from_millis(20),
        Instant::now() + slow,
    ))?;
    run.replay_s = (probed - spawned).as_secs_f64();
    run.replay_rating_cpu_s = ticks_to_s(procfs::cpu_ticks(replaying.pid())?);
    run.replay_broker_cpu_s = ticks_to_s(procfs::cpu_ticks(broker.pid())?.saturating_sub(broker_before));
    run.replay_rss_bytes = procfs::resident_bytes(replaying.pid())?;
    eprintln!(
        "  rating replays    {:>9.0} events/s ({:.2}s from spawn to the probe; RSS {} MB)",
        run.rate(run.replay_s),
        run.replay_s,
        run.replay_rss_bytes / (1 << 20)
    );

    for mut process in [replaying, applying] {
        process.stop(Duration::from_secs(10))?;
    }
    broker.stop(Duration::from_secs(10))?;
    Ok(run)
}
