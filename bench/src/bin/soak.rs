//! `soak`: the suite under a steady load for a long time, the driver behind
//! `scripts/soak.sh`. Starts an in-memory Tansu broker and the three
//! services (static discovery, free 127.0.0.1 ports, the binaries next to
//! this one), seeds `--movies` movies, then for `--duration`: calls
//! `GetMovieDetails` at `--rate` per second on a fixed schedule (open loop,
//! latencies from each call's intended send time) while ratingingester
//! publishes `--events` rating events every `--interval` (over the same
//! movies and users, so that a store that keeps only the latest rating per
//! user stays the same size). Prints a line per interval (calls, errors,
//! p99) and the services' resident memory at the start (after the first
//! interval, the warm-up) and at the end; writes it all as JSON to
//! `<work-dir>/soak.json`. Exits non-zero on any failed call or ingester
//! run, when the events published were not applied (the generator's probe
//! record does not have its average), or when a service's memory grew by
//! more than `--max-rss-growth-mib`.
use std::{
    collections::BTreeMap,
    fs::File,
    io::BufWriter,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use anyhow::Context as _;
use bench::{
    events::{EventSpec, PROBE_AVERAGE, PROBE_RECORD, write_events},
    load::{Extent, IdSet, OpenLoop, Tally},
    processes::{ingester_args, run_tool, sent_all, start_service, stop_all},
    procfs::resident_bytes,
    rpc::{Rpc, await_average, await_serving, connect, seed},
};
use clap::Parser;
use testbed::{ChildProcess, Output, Storage, Tansu};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Debug, Parser)]
#[command(
    about = "Drives GetMovieDetails at a steady rate with ingestion running; fails on any error or memory growth."
)]
struct Args {
    /// How long to drive the load, after the first interval (the warm-up)
    #[arg(long, env = "SOAK_DURATION", value_parser = humantime::parse_duration, default_value = "10m")]
    duration: Duration,
    /// GetMovieDetails calls per second
    #[arg(long, env = "SOAK_RATE", default_value_t = 200.0)]
    rate: f64,
    /// How often figures are reported, and ratingingester runs
    #[arg(long, value_parser = humantime::parse_duration, default_value = "10s")]
    interval: Duration,
    /// Rating events ratingingester publishes each interval
    #[arg(long, default_value_t = 2_000)]
    events: u64,
    /// Movies seeded and asked for (ids 0..movies)
    #[arg(long, default_value_t = 100)]
    movies: u32,
    /// The most a service's resident memory may grow from the start to the end, in MiB
    #[arg(long, default_value_t = 32)]
    max_rss_growth_mib: u64,
    /// HTTP/2 connections the calls are spread over
    #[arg(long, default_value_t = 4)]
    connections: usize,
    /// Where the logs, the events file and soak.json go
    #[arg(long, default_value = "target/soak")]
    work_dir: PathBuf,
}

/// The services whose memory is watched, in the order they start.
const SERVICES: [&str; 3] = ["metadata", "rating", "movie"];

struct Stack {
    broker: Tansu,
    /// In the order of [`SERVICES`].
    services: Vec<ChildProcess>,
    movie_address: String,
    brokers: String,
}

fn start_stack(bin_dir: &Path, work_dir: &Path) -> anyhow::Result<(Stack, String, String)> {
    let port = testbed::free_port()?;
    let broker = Tansu::start(
        &Tansu::program()?,
        port,
        Storage::Memory,
        &work_dir.join("tansu"),
        Output::File(work_dir.join("tansu.log")),
    )?;
    let brokers = broker.address();
    let start = |name: &str, extra: &[String]| {
        start_service(name, &bin_dir.join(name), extra, &[], work_dir, work_dir.join(format!("{name}.log")))
    };
    let (metadata, metadata_address) = start("metadata", &[])?;
    let (rating, rating_address) = start("rating", &["--kafka-brokers".into(), brokers.clone()])?;
    let (movie, movie_address) = start(
        "movie",
        &["--metadata-addrs".into(), metadata_address.clone(), "--rating-addrs".into(), rating_address.clone()],
    )?;
    let stack = Stack { broker, services: vec![metadata, rating, movie], movie_address, brokers };
    Ok((stack, metadata_address, rating_address))
}

fn resident(stack: &Stack) -> anyhow::Result<BTreeMap<&'static str, u64>> {
    SERVICES.iter().zip(&stack.services).map(|(name, process)| Ok((*name, resident_bytes(process.pid())?))).collect()
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

/// What one interval saw.
#[derive(Debug, serde::Serialize)]
struct Interval {
    second: f64,
    calls: u64,
    errors: BTreeMap<String, u64>,
    p99_ms: f64,
    max_ms: f64,
    /// Why ratingingester's run failed, if it did.
    ingester_error: Option<String>,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    anyhow::ensure!(args.rate > 0.0 && args.connections > 0, "--rate and --connections must be positive");
    let bin_dir = std::env::current_exe()?.parent().context("the directory of this binary")?.to_owned();
    std::fs::create_dir_all(&args.work_dir)?;
    let work_dir = args.work_dir.canonicalize()?;
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;

    let (stack, metadata_address, rating_address) = start_stack(&bin_dir, &work_dir)?;
    let deadline = Instant::now() + Duration::from_secs(60);
    runtime.block_on(await_serving(&rating_address, deadline))?;
    runtime.block_on(seed(&metadata_address, &rating_address, args.movies))?;
    let events_file = work_dir.join("events.ndjson");
    let spec = EventSpec { events: args.events, movies: args.movies, users: 100, ..EventSpec::default() };
    let events = write_events(spec, BufWriter::new(File::create(&events_file)?))?;
    let ingester = bin_dir.join("ratingingester");
    let ingester_args = ingester_args(&stack.brokers, &events_file);

    let mut channels = Vec::with_capacity(args.connections);
    for _ in 0..args.connections {
        channels.push(runtime.block_on(connect(&stack.movie_address, Duration::from_secs(5)))?);
    }
    let ids: IdSet = format!("0..{}", args.movies).parse().map_err(anyhow::Error::msg)?;
    let call = move |k: u64| {
        let channel = channels[k as usize % channels.len()].clone();
        Rpc::GetMovieDetails.call(channel, ids.pick(&mut rand::rng()).to_owned())
    };

    let intervals = 1 + args.duration.as_nanos().div_ceil(args.interval.as_nanos().max(1)) as u64;
    eprintln!(
        "soak: {:.0} GetMovieDetails/s and {events} events every {:?}, {} intervals (the first is the warm-up)",
        args.rate, args.interval, intervals
    );
    let started = Instant::now();
    let mut rss_start = BTreeMap::new();
    let mut total = Tally::default();
    let mut report = Vec::new();
    for index in 0..intervals {
        let (ingester, ingester_args) = (ingester.clone(), ingester_args.clone());
        let publishing = std::thread::spawn(move || run_tool(&ingester, &ingester_args, Duration::from_secs(300)));
        let call = call.clone();
        let load = runtime.block_on(OpenLoop::new(args.rate, Extent::Duration(args.interval)).run(call))?;
        let published = publishing.join().map_err(|_| anyhow::anyhow!("the ratingingester thread panicked"))?;
        let ingester_error = published.and_then(|finished| sent_all(&finished, events)).err();
        let tally = &load.tally;
        let interval = Interval {
            second: started.elapsed().as_secs_f64().round(),
            calls: tally.requests(),
            errors: tally.errors().clone(),
            p99_ms: tally.quantile_micros(0.99) as f64 / 1000.0,
            max_ms: tally.max_micros() as f64 / 1000.0,
            ingester_error: ingester_error.map(|error| format!("{error:#}")),
        };
        eprintln!(
            "  {:>5.0} s  calls {:>6}  errors {:>3}  p99 {:>7.2} ms  max {:>7.2} ms  ingester {}",
            interval.second,
            interval.calls,
            tally.failed(),
            interval.p99_ms,
            interval.max_ms,
            interval.ingester_error.as_deref().unwrap_or("ok")
        );
        if index == 0 {
            rss_start = resident(&stack)?;
        } else {
            total.merge(tally);
            report.push(interval);
        }
    }
    let rss_end = resident(&stack)?;
    // The events were applied, not only published: the probe record's average is the generator's.
    let applied = runtime.block_on(await_average(
        &rating_address,
        PROBE_RECORD,
        PROBE_AVERAGE,
        Duration::from_millis(50),
        Instant::now() + Duration::from_secs(30),
    ));
    let Stack { broker, services, .. } = stack;
    stop_all(services.into_iter().rev())?;
    broker.stop(Duration::from_secs(10))?;

    let limit = args.max_rss_growth_mib * 1024 * 1024;
    let mut problems = Vec::new();
    if total.failed() > 0 {
        problems.push(format!("{} calls failed: {:?}", total.failed(), total.errors()));
    }
    if let Err(error) = applied {
        problems.push(format!("the published events were not applied: {error:#}"));
    }
    let failed_ingester_runs = report.iter().filter(|interval| interval.ingester_error.is_some()).count();
    if failed_ingester_runs > 0 {
        problems.push(format!("{failed_ingester_runs} ratingingester runs failed"));
    }
    let mut memory = BTreeMap::new();
    for name in SERVICES {
        let (start, end) = (rss_start[name], rss_end[name]);
        eprintln!("  {name:<8} resident {:>6.1} MiB at the start, {:>6.1} MiB at the end", mib(start), mib(end));
        if end > start + limit {
            problems.push(format!("{name}'s memory grew from {:.1} to {:.1} MiB", mib(start), mib(end)));
        }
        memory.insert(name, serde_json::json!({"start_mib": mib(start), "end_mib": mib(end)}));
    }
    let summary = serde_json::json!({
        "duration_s": args.duration.as_secs_f64(),
        "rate_per_second": args.rate,
        "events_per_interval": events,
        "calls": total.requests(),
        "errors": total.errors(),
        "p99_ms": total.quantile_micros(0.99) as f64 / 1000.0,
        "max_ms": total.max_micros() as f64 / 1000.0,
        "max_rss_growth_mib": args.max_rss_growth_mib,
        "resident_memory": memory,
        "intervals": report,
        "problems": problems,
    });
    std::fs::write(work_dir.join("soak.json"), format!("{summary:#}\n"))?;
    eprintln!(
        "soak: {} calls, {} errors, p99 {:.2} ms over the whole run; figures in {}",
        total.requests(),
        total.failed(),
        total.quantile_micros(0.99) as f64 / 1000.0,
        work_dir.join("soak.json").display()
    );
    anyhow::ensure!(problems.is_empty(), "the soak failed: {}", problems.join("; "));
    Ok(())
}
