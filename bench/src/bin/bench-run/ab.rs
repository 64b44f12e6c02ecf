//! `bench-run ab`: one before/after comparison of a change, measured in one
//! run.
//!
//! Two directories hold two builds of `metadata`, `rating` and `movie`: A
//! (the base) and B (the candidate). Each round starts one variant's suite
//! (rating without Kafka, static discovery) on free ports, seeds it as the
//! main gRPC phase does, measures closed-loop `GetMovieDetails` with the
//! same `loadgen` at each concurrency, stops the suite completely, then does
//! the same with the other variant. Rounds alternate the order (A,B then
//! B,A, ...), so a slow drift of the machine weighs on both sides alike.
//! Reports per-round values, medians and the ratios B/A as a markdown table,
//! and appends it to the A/B section of BENCHMARKS.md.
use std::{
    collections::BTreeMap,
    fmt::Write as _,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use anyhow::Context as _;
use bench::{
    processes::start_service,
    stats::{median, ratio},
};

use crate::{Context, Settings, grpc, machine::Machine, report};

#[derive(Debug, Clone, clap::Args)]
pub struct AbArgs {
    /// Directory holding variant A's (the base's) `metadata`, `rating` and `movie`
    #[arg(long)]
    a_dir: PathBuf,
    /// Directory holding variant B's (the candidate's) `metadata`, `rating` and `movie`
    #[arg(long)]
    b_dir: PathBuf,
    /// What A is called in the report, e.g. its short commit hash [default: the directory's name]
    #[arg(long)]
    a_name: Option<String>,
    /// What B is called in the report [default: the directory's name]
    #[arg(long)]
    b_name: Option<String>,
    /// A flag given to every service of variant A (repeatable), e.g. `--a-flag=--metrics-addr=127.0.0.1:0`:
    /// with the same binaries on both sides, measures what a setting costs
    #[arg(long = "a-flag", allow_hyphen_values = true)]
    a_flags: Vec<String>,
    /// A flag given to every service of variant B (repeatable)
    #[arg(long = "b-flag", allow_hyphen_values = true)]
    b_flags: Vec<String>,
    /// An environment variable set for every service of variant A (repeatable), as KEY=VALUE
    #[arg(long = "a-env", value_parser = key_value)]
    a_envs: Vec<(String, String)>,
    /// An environment variable set for every service of variant B (repeatable), as KEY=VALUE
    #[arg(long = "b-env", value_parser = key_value)]
    b_envs: Vec<(String, String)>,
    /// Rounds; each measures A and B once, in the order A,B then B,A, alternating
    #[arg(long, env = "BENCH_AB_ROUNDS", default_value_t = 5)]
    rounds: usize,
    /// Measuring time of each load run
    #[arg(long, env = "BENCH_AB_DURATION", value_parser = humantime::parse_duration, default_value = "5s")]
    duration: Duration,
    /// Warm-up of each load run (sent, not recorded)
    #[arg(long, env = "BENCH_AB_WARMUP", value_parser = humantime::parse_duration, default_value = "1s")]
    warmup: Duration,
    /// Closed-loop concurrencies measured, in this order
    #[arg(long, env = "BENCH_AB_CONCURRENCY", value_delimiter = ',', default_value = "64,1")]
    concurrency: Vec<usize>,
    /// Most HTTP/2 connections the load generator opens (fewer at lower concurrency)
    #[arg(long, env = "BENCH_CONNECTIONS", default_value_t = 2)]
    connections: usize,
    /// Movies seeded (metadata and one rating each); requests pick among them
    #[arg(long, env = "BENCH_MOVIES", default_value_t = 1000)]
    movies: u32,
    /// Title of the entry: what the change is
    #[arg(long, default_value = "unnamed change")]
    label: String,
    /// The report whose A/B section gets the entry
    #[arg(long, default_value = "BENCHMARKS.md")]
    output: PathBuf,
    /// Print the entry only; leave the report alone
    #[arg(long)]
    no_record: bool,
    /// Scratch directory: the services' logs
    #[arg(long, default_value = "target/ab/work")]
    work_dir: PathBuf,
    /// Directory of `loadgen` [default: the runner's own]
    #[arg(long)]
    loadgen_dir: Option<PathBuf>,
}

/// One of the two variants compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    A,
    B,
}

impl Side {
    fn index(self) -> usize {
        match self {
            Side::A => 0,
            Side::B => 1,
        }
    }
}

/// The order of a round (0-based): A,B in even rounds, B,A in odd ones.
pub fn round_order(round: usize) -> [Side; 2] {
    if round.is_multiple_of(2) { [Side::A, Side::B] } else { [Side::B, Side::A] }
}

/// What one closed-loop run of one variant measured.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Point {
    pub requests_per_s: f64,
    pub p50_us: f64,
    pub p99_us: f64,
    /// CPU (user + system) of metadata, rating and movie per request sent.
    pub cpu_us_per_request: f64,
    pub errors: u64,
}

/// By concurrency.
pub type Figures = BTreeMap<usize, Point>;

/// Every round's figures, A's and B's.
#[derive(Debug, Clone, Default)]
pub struct Rounds(pub Vec<[Figures; 2]>);

impl Rounds {
    /// A figure of one side at one concurrency, round by round.
    fn values(&self, side: Side, concurrency: usize, figure: fn(&Point) -> f64) -> Vec<f64> {
        self.0.iter().filter_map(|round| round[side.index()].get(&concurrency).map(figure)).collect()
    }
}

/// What the entry says besides the figures.
#[derive(Debug, Clone)]
pub struct EntryInfo {
    pub label: String,
    pub date: String,
    pub a_name: String,
    pub b_name: String,
    pub cores: usize,
    pub cpu: String,
    pub rounds: usize,
    pub duration: Duration,
    pub warmup: Duration,
    pub connections: usize,
    pub movies: u32,
}

/// A figure of the entry's table: what it is, how a point gives it, and its
/// decimals.
struct Figure {
    label: &'static str,
    of: fn(&Point) -> f64,
    decimals: usize,
}

const FIGURES: [Figure; 4] = [
    Figure { label: "requests/s", of: |point| point.requests_per_s, decimals: 0 },
    Figure { label: "CPU µs/request (metadata+rating+movie)", of: |point| point.cpu_us_per_request, decimals: 1 },
    Figure { label: "p50 µs", of: |point| point.p50_us, decimals: 0 },
    Figure { label: "p99 µs", of: |point| point.p99_us, decimals: 0 },
];

fn show(value: Option<f64>, decimals: usize) -> String {
    value.map_or_else(|| "n/a".to_owned(), |value| format!("{value:.decimals$}"))
}

/// The entry for the A/B section: a `### label` heading, the run's
/// particulars and the table (medians, B/A of the medians, per-round
/// values).
pub fn render_entry(info: &EntryInfo, concurrencies: &[usize], rounds: &Rounds) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "### {}\n", info.label.trim());
    let _ = writeln!(
        out,
        "{date}; A = `{a}` (base), B = `{b}` (candidate); {cores} cores ({cpu}); {rounds} rounds in the order \
         A,B / B,A / ...; each a {warmup} warm-up and {duration} of closed-loop `GetMovieDetails` via movie \
         (rating without Kafka, {movies} movies seeded, up to {connections} HTTP/2 connections). Medians of the \
         rounds; B/A is the ratio of the medians (above 1 is better for requests/s, below 1 for CPU and latency).\n",
        date = info.date,
        a = info.a_name,
        b = info.b_name,
        cores = info.cores,
        cpu = info.cpu,
        rounds = info.rounds,
        warmup = humantime::format_duration(info.warmup),
        duration = humantime::format_duration(info.duration),
        movies = info.movies,
        connections = info.connections,
    );
    let _ = writeln!(
        out,
        "| figure | A `{}` | B `{}` | B/A | A per round | B per round |\n|---|---:|---:|---:|---|---|",
        info.a_name, info.b_name
    );
    for &concurrency in concurrencies {
        for Figure { label, of, decimals } in FIGURES {
            let (a, b) = (rounds.values(Side::A, concurrency, of), rounds.values(Side::B, concurrency, of));
            let (a_median, b_median) = (median(&a), median(&b));
            let b_over_a = a_median.zip(b_median).and_then(|(a, b)| ratio(b, a));
            let per_round = |values: &[f64]| {
                values.iter().map(|value| format!("{value:.decimals$}")).collect::<Vec<_>>().join(" / ")
            };
            let _ = writeln!(
                out,
                "| c={concurrency} {label} | {} | {} | {} | {} | {} |",
                show(a_median, decimals),
                show(b_median, decimals),
                show(b_over_a, 3),
                per_round(&a),
                per_round(&b),
            );
        }
    }
    let errors =
        |side: Side| -> u64 { rounds.0.iter().flat_map(|round| round[side.index()].values()).map(|p| p.errors).sum() };
    let (a_errors, b_errors) = (errors(Side::A), errors(Side::B));
    if a_errors + b_errors > 0 {
        let _ = writeln!(out, "\nFailed requests (left out of the latencies): A {a_errors}, B {b_errors}.");
    }
    out
}

/// A variant: its name in the report and the directory of its binaries.
struct Variant {
    name: String,
    dir: PathBuf,
    /// Given to each of its services, after the flags the runner sets.
    flags: Vec<String>,
    envs: Vec<(String, String)>,
}

pub(crate) fn key_value(text: &str) -> Result<(String, String), String> {
    text.split_once('=')
        .map(|(key, value)| (key.to_string(), value.to_string()))
        .ok_or_else(|| format!("{text:?} is not KEY=VALUE"))
}

/// Starts one variant's suite, seeds it, measures every concurrency, and
/// stops it (every process exited) before returning.
fn measure(
    context: &Context,
    variant: &Variant,
    side: Side,
    concurrencies: &[usize],
    work_dir: &Path,
) -> anyhow::Result<Figures> {
    let tag = match side {
        Side::A => "a",
        Side::B => "b",
    };
    let start = |name: &str, extra: &[String]| {
        let args: Vec<String> = extra.iter().chain(&variant.flags).cloned().collect();
        let log = work_dir.join(format!("{tag}-{name}.log"));
        start_service(name, &variant.dir.join(name), &args, &variant.envs, work_dir, log)
    };
    let (metadata, metadata_address) = start("metadata", &[])?;
    let (rating, rating_address) = start("rating", &[])?;
    let (movie, movie_address) = start(
        "movie",
        &["--metadata-addrs".into(), metadata_address.clone(), "--rating-addrs".into(), rating_address.clone()],
    )?;
    let result = (|| {
        context
            .runtime
            .block_on(bench::rpc::await_serving(&rating_address, Instant::now() + Duration::from_secs(60)))?;
        context.runtime.block_on(bench::rpc::seed(&metadata_address, &rating_address, context.settings.movies))?;
        let all = [("metadata", metadata.pid()), ("rating", rating.pid()), ("movie", movie.pid())];
        let target =
            grpc::Target { name: "movie", rpc: bench::rpc::Rpc::GetMovieDetails, address: movie_address.clone() };
        let mut figures = Figures::new();
        for &concurrency in concurrencies {
            let measured = grpc::closed_loop(context, &target, concurrency, &all)?;
            let summary = &measured.summary;
            let point = Point {
                requests_per_s: summary.requests_per_s,
                p50_us: summary.p50_us as f64,
                p99_us: summary.p99_us as f64,
                cpu_us_per_request: measured.server_cpu_us_per_request("movie"),
                errors: summary.requests - summary.ok,
            };
            eprintln!(
                "  {side:?} {:<14} c={concurrency:<3} {:>8.0} req/s  p50 {:>6.0}µs  p99 {:>7.0}µs  cpu {:>6.1}µs/req  errors {}",
                variant.name, point.requests_per_s, point.p50_us, point.p99_us, point.cpu_us_per_request, point.errors
            );
            figures.insert(concurrency, point);
        }
        anyhow::Ok(figures)
    })();
    let stopped = bench::processes::stop_all([movie, rating, metadata]);
    let figures = result?;
    stopped?;
    Ok(figures)
}

fn check_binaries(dir: &Path) -> anyhow::Result<()> {
    for name in ["metadata", "rating", "movie"] {
        let path = dir.join(name);
        anyhow::ensure!(path.is_file(), "{} is missing", path.display());
    }
    Ok(())
}

fn dir_name(dir: &Path) -> String {
    dir.file_name().map_or_else(|| dir.display().to_string(), |name| name.to_string_lossy().into_owned())
}

pub fn main(args: &AbArgs) -> anyhow::Result<()> {
    check_binaries(&args.a_dir)?;
    check_binaries(&args.b_dir)?;
    anyhow::ensure!(!args.concurrency.is_empty() && !args.concurrency.contains(&0), "concurrencies must be at least 1");
    let variants = [
        Variant {
            name: args.a_name.clone().unwrap_or_else(|| dir_name(&args.a_dir)),
            dir: args.a_dir.canonicalize()?,
            flags: args.a_flags.clone(),
            envs: args.a_envs.clone(),
        },
        Variant {
            name: args.b_name.clone().unwrap_or_else(|| dir_name(&args.b_dir)),
            dir: args.b_dir.canonicalize()?,
            flags: args.b_flags.clone(),
            envs: args.b_envs.clone(),
        },
    ];
    std::fs::create_dir_all(&args.work_dir)?;
    let work_dir = args.work_dir.canonicalize()?;
    let rounds_wanted = args.rounds.max(1);
    let context = Context {
        settings: Settings {
            quick: false,
            runs: rounds_wanted,
            events: 0,
            duration: args.duration,
            warmup: args.warmup,
            connections: args.connections.max(1),
            movies: args.movies.max(1),
            phases: Vec::new(),
        },
        runtime: tokio::runtime::Builder::new_current_thread().enable_all().build()?,
        bin_dir: match &args.loadgen_dir {
            Some(dir) => dir.clone(),
            None => crate::own_dir()?,
        },
        tansu: None,
        h2load_available: false,
    };
    anyhow::ensure!(context.binary("loadgen").is_file(), "{} is missing", context.binary("loadgen").display());
    let machine = Machine::describe();
    let started = Instant::now();
    let mut rounds = Rounds::default();
    for round in 0..rounds_wanted {
        let order = round_order(round);
        eprintln!("round {} of {rounds_wanted}: {:?} then {:?}", round + 1, order[0], order[1]);
        let mut figures: [Figures; 2] = Default::default();
        for side in order {
            figures[side.index()] = measure(&context, &variants[side.index()], side, &args.concurrency, &work_dir)
                .with_context(|| format!("round {}, {side:?} ({})", round + 1, variants[side.index()].name))?;
        }
        rounds.0.push(figures);
    }
    let info = EntryInfo {
        label: args.label.clone(),
        date: machine.date.clone(),
        a_name: variants[0].name.clone(),
        b_name: variants[1].name.clone(),
        cores: machine.cores,
        cpu: machine.cpu.clone(),
        rounds: rounds_wanted,
        duration: args.duration,
        warmup: args.warmup,
        connections: context.settings.connections,
        movies: context.settings.movies,
    };
    let entry = render_entry(&info, &args.concurrency, &rounds);
    println!("{entry}");
    eprintln!("took {:.0?}", started.elapsed());
    if !args.no_record {
        let existing = std::fs::read_to_string(&args.output).ok();
        let document = report::append_ab_entry(existing.as_deref(), &entry);
        std::fs::write(&args.output, document).with_context(|| format!("write {}", args.output.display()))?;
        eprintln!("appended the entry to {}", args.output.display());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn environment_settings_are_key_value_pairs() {
        assert_eq!(key_value("A=b=c"), Ok(("A".to_string(), "b=c".to_string())));
        assert!(key_value("no-equals").is_err());
    }

    #[test]
    fn rounds_alternate_the_order_abba() {
        let order: Vec<Side> = (0..4).flat_map(round_order).collect();
        assert_eq!(order, [Side::A, Side::B, Side::B, Side::A, Side::A, Side::B, Side::B, Side::A]);
    }

    fn point(requests_per_s: f64, cpu: f64, p99: f64) -> Point {
        Point { requests_per_s, p50_us: p99 / 4.0, p99_us: p99, cpu_us_per_request: cpu, errors: 0 }
    }

    #[test]
    fn the_entry_shows_medians_their_ratio_and_every_round() {
        let round = |a: Point, b: Point| [Figures::from([(64, a)]), Figures::from([(64, b)])];
        let rounds = Rounds(vec![
            round(point(1000.0, 200.0, 4000.0), point(1500.0, 100.0, 2000.0)),
            round(point(1100.0, 220.0, 4400.0), point(1200.0, 110.0, 2200.0)),
            round(point(900.0, 180.0, 3600.0), point(1800.0, 90.0, 1800.0)),
        ]);
        let info = EntryInfo {
            label: "cheaper rating lookups".into(),
            date: "2026-11-23 13:07 UTC".into(),
            a_name: "8f24c6e".into(),
            b_name: "1a2b3c4".into(),
            cores: 2,
            cpu: "AMD EPYC".into(),
            rounds: 3,
            duration: Duration::from_secs(5),
            warmup: Duration::from_secs(1),
            connections: 2,
            movies: 1000,
        };
        let entry = render_entry(&info, &[64], &rounds);
        assert!(
            entry
                .starts_with("### cheaper rating lookups\n\n2026-11-23 13:07 UTC; A = `8f24c6e` (base), B = `1a2b3c4`")
        );
        assert!(entry.contains("2 cores (AMD EPYC); 3 rounds"));
        assert!(entry.contains("| figure | A `8f24c6e` | B `1a2b3c4` | B/A | A per round | B per round |\n"));
        assert!(entry.contains("| c=64 requests/s | 1000 | 1500 | 1.500 | 1000 / 1100 / 900 | 1500 / 1200 / 1800 |\n"));
        assert!(entry.contains(
            "| c=64 CPU µs/request (metadata+rating+movie) | 200.0 | 100.0 | 0.500 | 200.0 / 220.0 / 180.0 | 100.0 / 110.0 / 90.0 |\n"
        ));
        assert!(entry.contains("| c=64 p99 µs | 4000 | 2000 | 0.500 |"));
        assert!(!entry.contains("Failed requests"));
    }

    #[test]
    fn failed_requests_are_reported() {
        let mut failing = point(10.0, 1.0, 1.0);
        failing.errors = 3;
        let rounds = Rounds(vec![[Figures::from([(1, point(10.0, 1.0, 1.0))]), Figures::from([(1, failing)])]]);
        let info = EntryInfo {
            label: "x".into(),
            date: String::new(),
            a_name: "a".into(),
            b_name: "b".into(),
            cores: 1,
            cpu: String::new(),
            rounds: 1,
            duration: Duration::from_secs(1),
            warmup: Duration::ZERO,
            connections: 1,
            movies: 1,
        };
        assert!(render_entry(&info, &[1], &rounds).contains("Failed requests (left out of the latencies): A 0, B 3."));
    }
}
