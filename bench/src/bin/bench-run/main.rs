//! `bench-run`: the benchmark runner behind `scripts/bench.sh`.
//!
//! Starts an in-memory Tansu broker and the three services (static
//! discovery, 127.0.0.1, free ports) plus the constant server, seeds
//! metadata and ratings, and measures: closed-loop saturation and
//! constant-rate latency of `GetMovieDetails` (movie), `GetMetadata`
//! (metadata) and `GetMetadata` (constant server); CPU per request from
//! `/proc`; then an open-loop sweep of `GetMovieDetails` from 10 % to 100 %
//! of its saturation (see [`bench::sweep`]); then, on a fresh broker per
//! run, ingestion: bare producer, ratingingester, the rating service's apply
//! rate, bare consumer, replay by a fresh instance, and its resident memory. Each figure is the median
//! of `--runs`; each ratio is computed within a run, then its median taken.
//! Records the figures the charts are drawn from in `--charts-dir`
//! (`figures.json`, keeping what `compare-go` recorded there), draws the
//! charts beside them, and writes the report to `--output` (BENCHMARKS.md),
//! the charts embedded, and prints it, keeping the section of A/B entries at
//! its end.
//!
//! `bench-run ab` compares two builds of the services instead (see [`ab`]);
//! `bench-run compare-go` measures them against the book's Go suite (see
//! [`compare_go`]); `bench-run charts` draws the charts again from the
//! recorded figures.
mod ab;
mod compare_go;
mod grpc;
mod ingest;
mod machine;
mod report;
mod storage;

use std::{
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use anyhow::Context as _;
use bench::{
    charts::{self, Figures, SuiteFigures},
    processes::{run_tool, start_service},
    sweep::Sweep,
};
use clap::Parser;
use testbed::{Output, Storage, Tansu};

#[derive(Debug, Clone, Parser)]
#[command(about = "Runs the benchmark suite and writes BENCHMARKS.md.")]
pub struct Args {
    /// Shorter runs and 100,000 events: a smoke test of the harness, not figures to quote
    #[arg(long, env = "BENCH_QUICK", value_parser = clap::builder::FalseyValueParser::new())]
    quick: bool,
    /// Runs of each measurement; figures are medians [default: 3, quick 1]
    #[arg(long, env = "BENCH_RUNS")]
    runs: Option<usize>,
    /// Rating events to ingest, before the probe block [default: 1000000, quick 100000]
    #[arg(long, env = "BENCH_EVENTS")]
    events: Option<u64>,
    /// Measuring time of each gRPC load run [default: 10s, quick 3s]
    #[arg(long, env = "BENCH_DURATION", value_parser = humantime::parse_duration)]
    duration: Option<Duration>,
    /// Warm-up of each gRPC load run [default: 2s, quick 1s]
    #[arg(long, env = "BENCH_WARMUP", value_parser = humantime::parse_duration)]
    warmup: Option<Duration>,
    /// Most HTTP/2 connections the load generator opens (fewer at lower concurrency)
    #[arg(long, env = "BENCH_CONNECTIONS", default_value_t = 2)]
    connections: usize,
    /// Movies seeded (metadata and one rating each); requests pick among them
    #[arg(long, env = "BENCH_MOVIES", default_value_t = 1000)]
    movies: u32,
    /// Which phases to run
    #[arg(long, env = "BENCH_PHASES", value_delimiter = ',', default_value = "grpc,ingest,storage")]
    phases: Vec<Phase>,
    /// Where the report goes
    #[arg(long, default_value = "BENCHMARKS.md")]
    output: PathBuf,
    /// Where the figures behind the charts (figures.json) and the charts (SVG) go; the report links
    /// them by this path
    #[arg(long, default_value = "docs/benchmarks")]
    charts_dir: PathBuf,
    /// Scratch directory: logs, the events file, broker directories
    #[arg(long, default_value = "target/bench")]
    work_dir: PathBuf,
    /// Directory of the release binaries [default: the runner's own]
    #[arg(long)]
    bin_dir: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Clone, clap::Subcommand)]
enum Command {
    /// Compares two builds of metadata, rating and movie (A, the base, and B, the candidate) in
    /// alternating rounds, and appends the result to the A/B section of BENCHMARKS.md.
    Ab(ab::AbArgs),
    /// Measures this suite against the book's Go suite (binaries you provide, see scripts/compare-go.sh
    /// --help) and the floor with h2load, in alternating rounds, checking every response by its bytes,
    /// then sweeps both suites in open loop; prints a markdown report and draws the charts.
    CompareGo(compare_go::CompareGoArgs),
    /// Draws the charts again from the figures recorded in CHARTS_DIR/figures.json.
    Charts {
        /// Where figures.json is and the charts go
        #[arg(long, default_value = "docs/benchmarks")]
        charts_dir: PathBuf,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Phase {
    Grpc,
    Ingest,
    /// Each store (memory, SQLite, PostgreSQL) applying the topic, restarted, and serving GetMovieDetails
    Storage,
}

/// The settings a run uses, defaults resolved.
#[derive(Debug, Clone)]
pub struct Settings {
    pub quick: bool,
    pub runs: usize,
    pub events: u64,
    pub duration: Duration,
    pub warmup: Duration,
    pub connections: usize,
    pub movies: u32,
    pub phases: Vec<Phase>,
}

impl Settings {
    fn from_args(args: &Args) -> Self {
        let quick = args.quick;
        Settings {
            quick,
            runs: args.runs.unwrap_or(if quick { 1 } else { 3 }).max(1),
            events: args.events.unwrap_or(if quick { 100_000 } else { 1_000_000 }),
            duration: args.duration.unwrap_or(Duration::from_secs(if quick { 3 } else { 10 })),
            warmup: args.warmup.unwrap_or(Duration::from_secs(if quick { 1 } else { 2 })),
            connections: args.connections.max(1),
            movies: args.movies.max(1),
            phases: args.phases.clone(),
        }
    }
}

/// What every measurement needs.
pub struct Context {
    pub settings: Settings,
    pub runtime: tokio::runtime::Runtime,
    pub bin_dir: PathBuf,
    /// The broker; `None` in the A/B mode, which runs none.
    pub tansu: Option<PathBuf>,
    pub h2load_available: bool,
}

impl Context {
    pub fn binary(&self, name: &str) -> PathBuf {
        self.bin_dir.join(name)
    }

    /// A Tansu broker keeping everything in memory, in a directory of its own.
    pub fn start_broker(&self, work_dir: &Path) -> anyhow::Result<Tansu> {
        let tansu = self.tansu.as_deref().context("no tansu binary (the A/B mode runs no broker)")?;
        let port = testbed::free_port()?;
        let directory = work_dir.join(format!("tansu-{port}"));
        let log = Output::File(work_dir.join(format!("tansu-{port}.log")));
        Ok(Tansu::start(tansu, port, Storage::Memory, &directory, log)?)
    }
}

/// The name of this suite's curve in the sweeps and charts.
pub const THIS_SUITE: &str = "this suite";

/// Starts metadata, rating (with Kafka), movie and the constant server,
/// seeds them, runs the gRPC measurements `runs` times, then sweeps
/// GetMovieDetails up to the median of its saturation throughputs.
fn grpc_phase(context: &Context, work_dir: &Path) -> anyhow::Result<(Vec<grpc::GrpcRun>, Sweep)> {
    let broker = context.start_broker(work_dir)?;
    let brokers = broker.address();
    let start = |name: &'static str, extra: &[String]| {
        start_service(name, &context.binary(name), extra, &[], work_dir, work_dir.join(format!("{name}.log")))
    };
    let (metadata, metadata_address) = start("metadata", &[])?;
    let (rating, rating_address) = start("rating", &["--kafka-brokers".into(), brokers.clone()])?;
    let (movie, movie_address) = start(
        "movie",
        &["--metadata-addrs".into(), metadata_address.clone(), "--rating-addrs".into(), rating_address.clone()],
    )?;
    let (constant, constant_address) = start("constant-server", &[])?;
    context.runtime.block_on(bench::rpc::await_serving(&rating_address, Instant::now() + Duration::from_secs(60)))?;
    eprintln!("seeding {} movies (metadata and a rating each)", context.settings.movies);
    context.runtime.block_on(bench::rpc::seed(&metadata_address, &rating_address, context.settings.movies))?;

    let all = [
        ("metadata", metadata.pid()),
        ("rating", rating.pid()),
        ("movie", movie.pid()),
        ("constant-server", constant.pid()),
    ];
    let targets = [
        grpc::Target { name: "movie", rpc: bench::rpc::Rpc::GetMovieDetails, address: movie_address },
        grpc::Target { name: "metadata", rpc: bench::rpc::Rpc::GetMetadata, address: metadata_address },
        grpc::Target { name: "constant-server", rpc: bench::rpc::Rpc::GetMetadata, address: constant_address },
    ];
    let mut runs = Vec::new();
    for run in 1..=context.settings.runs {
        eprintln!("gRPC run {run} of {}", context.settings.runs);
        runs.push(grpc::run(context, &targets, &all, work_dir)?);
    }
    let saturations: Vec<f64> = runs.iter().map(|run| run.saturation_rps("movie")).collect();
    let saturation = bench::stats::median(&saturations).unwrap_or(0.0);
    eprintln!("open-loop sweep of GetMovieDetails up to {saturation:.0} requests/s");
    let loadgen = grpc::Loadgen::of(context);
    let movie_address = &targets[0].address;
    let sweep = bench::sweep::run(&[THIS_SUITE], saturation, |name, rate| {
        let step = loadgen.open_loop_step(bench::rpc::Rpc::GetMovieDetails, movie_address, rate)?;
        grpc::print_step(name, &step, saturation);
        Ok(step)
    })?;
    for mut process in [constant, movie, rating, metadata] {
        process.stop(Duration::from_secs(10))?;
    }
    broker.stop(Duration::from_secs(10))?;
    Ok((runs, sweep))
}

fn ingest_phase(context: &Context, work_dir: &Path) -> anyhow::Result<Vec<ingest::IngestRun>> {
    let events_file = work_dir.join("events.ndjson");
    let events = context.settings.events;
    let generated = Instant::now();
    run_tool(
        &context.binary("gen-events"),
        &["--events".into(), events.to_string(), "--output".into(), events_file.display().to_string()],
        Duration::from_secs(300),
    )?;
    let lines = events + u64::from(bench::events::PROBE_USERS);
    eprintln!("generated {lines} events in {:.1?}", generated.elapsed());
    let mut runs = Vec::new();
    for run in 1..=context.settings.runs {
        eprintln!("ingestion run {run} of {}", context.settings.runs);
        runs.push(ingest::run(context, &events_file, lines, work_dir)?);
    }
    Ok(runs)
}

/// Starts a throwaway PostgreSQL cluster, generates a file of puts only (so
/// that the stores end up holding about `events` ratings), and runs the
/// storage measurements `runs` times.
fn storage_phase(context: &Context, work_dir: &Path) -> anyhow::Result<Vec<storage::StorageRun>> {
    let postgres = testbed::postgres::Postgres::start(testbed::free_port()?)?;
    let events_file = work_dir.join("storage-events.ndjson");
    let events = context.settings.events;
    run_tool(
        &context.binary("gen-events"),
        &[
            "--events".into(),
            events.to_string(),
            "--delete-share".into(),
            "0".into(),
            "--output".into(),
            events_file.display().to_string(),
        ],
        Duration::from_secs(300),
    )?;
    let lines = events + u64::from(bench::events::PROBE_USERS);
    let mut runs = Vec::new();
    for run in 1..=context.settings.runs {
        eprintln!("storage run {run} of {}", context.settings.runs);
        runs.push(storage::run(context, &postgres, &events_file, lines, work_dir, run)?);
    }
    Ok(runs)
}

/// The directory of the runner's own binary, where the tools it runs are built too.
fn own_dir() -> anyhow::Result<PathBuf> {
    Ok(std::env::current_exe()?.parent().context("the runner's directory")?.to_path_buf())
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    match &args.command {
        Some(Command::Ab(ab_args)) => return ab::main(ab_args),
        Some(Command::CompareGo(compare_args)) => return compare_go::main(compare_args),
        Some(Command::Charts { charts_dir }) => {
            for (_, path) in charts::write_all(&Figures::read(charts_dir)?, charts_dir)? {
                eprintln!("wrote {}", path.display());
            }
            return Ok(());
        }
        None => {}
    }
    let settings = Settings::from_args(&args);
    let bin_dir = match &args.bin_dir {
        Some(dir) => dir.clone(),
        None => own_dir()?,
    };
    std::fs::create_dir_all(&args.work_dir)?;
    let work_dir = args.work_dir.canonicalize()?;
    let context = Context {
        settings,
        runtime: tokio::runtime::Builder::new_current_thread().enable_all().build()?,
        bin_dir,
        tansu: Some(Tansu::program()?),
        h2load_available: std::process::Command::new("h2load")
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success()),
    };
    // Read before measuring, so that a file this runner cannot read fails the run at once, not at its end.
    let mut figures = Figures::read(&args.charts_dir)?;
    let machine = machine::Machine::describe();
    let started = Instant::now();
    let (grpc_runs, sweep) = if context.settings.phases.contains(&Phase::Grpc) {
        let (runs, sweep) = grpc_phase(&context, &work_dir)?;
        (runs, Some(sweep))
    } else {
        (Vec::new(), None)
    };
    let ingest_runs =
        if context.settings.phases.contains(&Phase::Ingest) { ingest_phase(&context, &work_dir)? } else { Vec::new() };
    let storage_runs = if context.settings.phases.contains(&Phase::Storage) {
        storage_phase(&context, &work_dir)?
    } else {
        Vec::new()
    };
    figures.suite = Some(SuiteFigures {
        run: machine.provenance(context.settings.quick),
        sweep: sweep.clone(),
        ingestion: storage::ingestion_figures(&storage_runs),
    });
    figures.write(&args.charts_dir)?;
    let charts: Vec<(charts::Chart, PathBuf)> = charts::write_all(&figures, &args.charts_dir)?;
    for (_, path) in &charts {
        eprintln!("wrote {}", path.display());
    }
    let report = report::render(
        &context.settings,
        &machine,
        &report::Measured { grpc: &grpc_runs, sweep: sweep.as_ref(), ingest: &ingest_runs, storage: &storage_runs },
        &charts,
        started.elapsed(),
    );
    // The A/B entries at the end of the file are not this run's: they are kept as they are.
    let existing = std::fs::read_to_string(&args.output).ok();
    let report = report::with_ab_section(&report, existing.as_deref());
    std::fs::write(&args.output, &report).with_context(|| format!("write {}", args.output.display()))?;
    println!("{report}");
    eprintln!("wrote {}", args.output.display());
    Ok(())
}
