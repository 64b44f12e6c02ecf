//! `bench-run compare-go`: this suite against the book's Go suite
//! (*Microservices with Go*, binaries the user provides; `scripts/compare-go.sh`
//! states what they must offer) and the floor, all measured with the same
//! `h2load` lines.
//!
//! Starts this suite (rating without Kafka), the Go suite (its movie service
//! twice: one pooled connection per target, and as published, a new
//! connection per call) and the constant server on free ports, seeds the
//! same movies into both suites through their Put RPCs, and checks that
//! `grpcurl` reads the same JSON from both movie services and that `curl`
//! receives the same response bytes. Then, in rounds whose order alternates
//! (forwards, then backwards), runs h2load at each load against each target:
//! a warm-up run, then the measured one. h2load counts any HTTP/2 response as
//! a success, a gRPC error included (its body is empty), so every run is
//! checked by its bytes: the DATA received must be exactly the requests done
//! times the size of one successful response, with nothing failed, errored
//! or timed out (see [`check_run`] for the responses h2load counts past its
//! deadline). A run that fails the check fails the comparison. Then it
//! sweeps GetMovieDetails with `loadgen` in open loop at the same rates
//! against this suite and the pooled Go suite, from 10 % to 100 % of this
//! suite's closed-loop saturation (see [`bench::sweep`]), records the
//! figures in `--charts-dir` (`figures.json`, keeping what `bench-run`
//! recorded there) and draws the charts beside them.
use std::{
    collections::BTreeMap,
    fmt::{self, Write as _},
    path::{Path, PathBuf},
    str::FromStr,
    time::{Duration, Instant},
};

use anyhow::Context as _;
use bench::{
    parse::{H2loadReport, h2load_log_durations, h2load_report},
    procfs,
    rpc::{Rpc, grpc_frame},
    stats::{median, nearest_rank, ratio},
};
use testbed::ChildProcess;

use bench::{
    charts::{self, ComparisonFigures, Figures, TargetFigures},
    processes::{run_tool, start_service, stop_all},
    sweep::Sweep,
};

use crate::{
    grpc::{Loadgen, print_step},
    machine::Machine,
};

#[derive(Debug, Clone, clap::Args)]
pub struct CompareGoArgs {
    /// Directory of the Go suite's binaries (`metadata`, `rating`, `movie`, `movie-per-call`); see
    /// `scripts/compare-go.sh --help` for what they must offer
    #[arg(long)]
    go_dir: PathBuf,
    /// Directory of this suite's release binaries and `constant-server` [default: the runner's own]
    #[arg(long)]
    rust_dir: Option<PathBuf>,
    /// Rounds; each measures every target at every load, in the opposite order of the round before
    #[arg(long, env = "COMPARE_GO_ROUNDS", default_value_t = 3)]
    rounds: usize,
    /// Measuring time of each h2load run
    #[arg(long, env = "COMPARE_GO_DURATION", value_parser = humantime::parse_duration, default_value = "10s")]
    duration: Duration,
    /// Warm-up h2load run before each measured one (its responses checked, its figures not recorded)
    #[arg(long, env = "COMPARE_GO_WARMUP", value_parser = humantime::parse_duration, default_value = "2s")]
    warmup: Duration,
    /// h2load loads as CONNECTIONSxSTREAMS (`-c` and `-m`), in this order
    #[arg(long, env = "COMPARE_GO_LOADS", value_delimiter = ',', default_value = "16x8,64x16,1x1")]
    loads: Vec<Load>,
    /// The loads at which the Go suite as published (a new connection per call) is measured too
    #[arg(long, env = "COMPARE_GO_PER_CALL_LOADS", value_delimiter = ',', default_value = "16x8,1x1")]
    per_call_loads: Vec<Load>,
    /// Leave out the Go suite as published
    #[arg(long, env = "COMPARE_GO_NO_PER_CALL", value_parser = clap::builder::FalseyValueParser::new())]
    no_per_call: bool,
    /// Movies seeded into both suites (metadata and one rating each); h2load asks for movie 1
    #[arg(long, env = "BENCH_MOVIES", default_value_t = 1000)]
    movies: u32,
    /// The Go toolchain, for the report (`go version`, the grpc-go version)
    #[arg(long, env = "COMPARE_GO_TOOLCHAIN", default_value = "unknown")]
    go_toolchain: String,
    /// Measuring time of each rate of the open-loop sweep (after a warm-up of --warmup)
    #[arg(long, env = "COMPARE_GO_SWEEP_DURATION", value_parser = humantime::parse_duration, default_value = "10s")]
    sweep_duration: Duration,
    /// HTTP/2 connections of the sweep's load generator
    #[arg(long, env = "BENCH_CONNECTIONS", default_value_t = 2)]
    sweep_connections: usize,
    /// Leave out the open-loop sweep
    #[arg(long, env = "COMPARE_GO_NO_SWEEP", value_parser = clap::builder::FalseyValueParser::new())]
    no_sweep: bool,
    /// Where the figures behind the charts (figures.json) and the charts (SVG) go
    #[arg(long, default_value = "docs/benchmarks")]
    charts_dir: PathBuf,
    /// Scratch directory: the services' logs, h2load's request body and per-request logs
    #[arg(long, default_value = "target/compare-go")]
    work_dir: PathBuf,
    /// A flag given to each of this suite's services (repeatable), e.g. `--rust-flag=--worker-threads=1`
    #[arg(long = "rust-flag", allow_hyphen_values = true)]
    rust_flags: Vec<String>,
    /// An environment variable set for each of the Go suite's services (repeatable), as KEY=VALUE, e.g.
    /// `--go-env=GOMAXPROCS=1`
    #[arg(long = "go-env", value_parser = crate::ab::key_value)]
    go_envs: Vec<(String, String)>,
}

/// One h2load load: `-c connections -m streams`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Load {
    pub connections: usize,
    pub streams: usize,
}

impl FromStr for Load {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let parse = |part: &str| part.trim().parse::<usize>().ok().filter(|value| *value > 0);
        text.split_once('x')
            .and_then(|(connections, streams)| {
                Some(Load { connections: parse(connections)?, streams: parse(streams)? })
            })
            .ok_or_else(|| format!("{text:?} is not CONNECTIONSxSTREAMS, e.g. 16x8"))
    }
}

impl fmt::Display for Load {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "`-c{} -m{}`", self.connections, self.streams)
    }
}

/// What is measured: one server's RPC and the processes whose CPU it costs.
struct Target {
    name: &'static str,
    rpc: Rpc,
    address: String,
    pids: Vec<u32>,
    loads: Vec<Load>,
    /// The DATA payload of one successful response (gRPC frame header included).
    response_bytes: u64,
}

/// What one measured h2load run gave.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Point {
    pub requests_per_s: f64,
    pub p99_us: Option<u64>,
    pub cpu_us_per_request: f64,
}

/// Points by (load, target name), one per round.
pub type Points = BTreeMap<(Load, &'static str), Vec<Point>>;

pub const RUST: &str = "this suite";
pub const GO_POOLED: &str = "Go, pooled connections";
pub const GO_PER_CALL: &str = "Go as published (a connection per call)";
pub const FLOOR: &str = "floor (constant-server GetMetadata)";

/// A target's name on the charts.
fn short_name(name: &str) -> &str {
    match name {
        RUST => crate::THIS_SUITE,
        GO_POOLED => "Go, pooled",
        GO_PER_CALL => "Go as published",
        FLOOR => "floor",
        other => other,
    }
}

/// Each target's best load (by its median requests/s) and its CPU per request there.
pub fn target_figures(loads: &[Load], names: &[&'static str], points: &Points) -> Vec<TargetFigures> {
    let median_of =
        |points: &[Point], figure: fn(&Point) -> f64| median(&points.iter().map(figure).collect::<Vec<_>>());
    names
        .iter()
        .filter_map(|&name| {
            let (load, rps, cpu) = loads
                .iter()
                .filter_map(|&load| {
                    let points = points.get(&(load, name))?;
                    Some((
                        load,
                        median_of(points, |point| point.requests_per_s)?,
                        median_of(points, |point| point.cpu_us_per_request)?,
                    ))
                })
                .max_by(|a, b| a.1.total_cmp(&b.1))?;
            Some(TargetFigures {
                name: short_name(name).to_owned(),
                load: format!("-c{} -m{}", load.connections, load.streams),
                saturation_rps: rps,
                cpu_us_per_request: cpu,
            })
        })
        .collect()
}

/// Checks an h2load run by its bytes: every request done got a 2xx and
/// one successful response's DATA, none failed, errored or timed out.
///
/// h2load stops counting at the deadline with up to `most_open` streams
/// (connections × streams) still open, and counts a status as soon as a
/// response's headers arrive: a response still open then can have its 2xx
/// counted with its DATA (it finished, but not among the requests done) or
/// without it (its DATA came after). So the 2xx may exceed the requests done
/// by at most `most_open`, and the DATA must hold a whole number of
/// successful responses, at least one per request done and at most one per
/// 2xx. A gRPC error is a 2xx with no DATA, so it leaves the DATA a
/// response short; only an error that coincides with a response counted
/// past the deadline could hide, one for one.
pub fn check_run(report: &H2loadReport, response_bytes: u64, most_open: u64) -> Result<(), String> {
    if report.done == 0 {
        return Err("no request was done".into());
    }
    if report.failed + report.errored + report.timeout > 0 {
        return Err(format!("{} failed, {} errored, {} timed out", report.failed, report.errored, report.timeout));
    }
    if report.status_2xx < report.done || report.status_2xx > report.done + most_open {
        return Err(format!(
            "{} 2xx statuses for {} requests done (at most {most_open} streams open at the end)",
            report.status_2xx, report.done
        ));
    }
    let expected = report.done * response_bytes;
    let whole = response_bytes > 0 && report.data_bytes.is_multiple_of(response_bytes);
    let responses = if whole { report.data_bytes / response_bytes } else { 0 };
    if !whole || responses < report.done || responses > report.status_2xx {
        return Err(format!(
            "{} bytes of DATA for {} requests done and {} 2xx statuses, not {expected} or one more successful \
             response ({response_bytes} bytes) per 2xx past the requests done: some responses were not successes",
            report.data_bytes, report.done, report.status_2xx
        ));
    }
    Ok(())
}

fn check_binaries(dir: &Path, names: &[&str]) -> anyhow::Result<()> {
    for name in names {
        let path = dir.join(name);
        anyhow::ensure!(path.is_file(), "{} is missing", path.display());
    }
    Ok(())
}

/// The running processes; killed if dropped on an error.
struct Suites {
    processes: Vec<ChildProcess>,
}

impl Suites {
    /// Starts a server; returns its address and pid.
    fn start(
        &mut self,
        name: &str,
        program: &Path,
        extra: &[String],
        envs: &[(String, String)],
        work_dir: &Path,
    ) -> anyhow::Result<(String, u32)> {
        let log = work_dir.join(format!("{}.log", name.replace(' ', "-")));
        let (process, address) = start_service(name, program, extra, envs, work_dir, log)?;
        let pid = process.pid();
        self.processes.push(process);
        Ok((address, pid))
    }
}

/// One request by curl (HTTP/2 without TLS), for the size and bytes of a
/// real response: the body, once its trailers said `grpc-status: 0`.
fn one_response(rpc: Rpc, address: &str, request: &Path, work_dir: &Path, name: &str) -> anyhow::Result<Vec<u8>> {
    let body = work_dir.join(format!("{}.response", name.replace(' ', "-")));
    let args: Vec<String> = [
        "-sS",
        "--http2-prior-knowledge",
        "-X",
        "POST",
        "-H",
        "content-type: application/grpc",
        "-H",
        "te: trailers",
        "--data-binary",
        &format!("@{}", request.display()),
        "--dump-header",
        "-",
        "--output",
        &body.display().to_string(),
        &format!("http://{address}{}", rpc.path()),
    ]
    .iter()
    .map(|arg| arg.to_string())
    .collect();
    let output = run_tool(Path::new("curl"), &args, Duration::from_secs(30))?;
    let succeeded = output.stdout.lines().any(|line| line.trim().eq_ignore_ascii_case("grpc-status: 0"));
    anyhow::ensure!(succeeded, "{} at {address} did not succeed:\n{}", rpc.name(), output.stdout);
    Ok(std::fs::read(&body)?)
}

/// `grpcurl`'s JSON of movie 1's details at `address`.
fn movie_json(address: &str) -> anyhow::Result<String> {
    let args: Vec<String> = ["-plaintext", "-d", r#"{"movie_id":"1"}"#, address, "MovieService/GetMovieDetails"]
        .iter()
        .map(|arg| arg.to_string())
        .collect();
    Ok(run_tool(Path::new("grpcurl"), &args, Duration::from_secs(30))?.stdout)
}

struct H2load<'a> {
    work_dir: &'a Path,
    requests: BTreeMap<&'static str, PathBuf>,
}

impl H2load<'_> {
    /// One h2load run of `duration`; its per-request log in `log` if given.
    fn run(&self, target: &Target, load: Load, duration: Duration, log: Option<&Path>) -> anyhow::Result<H2loadReport> {
        let mut args: Vec<String> = vec![
            "-c".into(),
            load.connections.to_string(),
            "-m".into(),
            load.streams.to_string(),
            "-t".into(),
            "1".into(),
            "-D".into(),
            duration.as_secs().max(1).to_string(),
            "-d".into(),
            self.requests[target.rpc.name()].display().to_string(),
            "-H".into(),
            "content-type: application/grpc".into(),
            "-H".into(),
            "te: trailers".into(),
        ];
        if let Some(log) = log {
            // h2load appends to its log file.
            match std::fs::remove_file(log) {
                Err(error) if error.kind() != std::io::ErrorKind::NotFound => return Err(error.into()),
                _ => {}
            }
            args.extend(["--log-file".into(), log.display().to_string()]);
        }
        args.push(format!("http://{}{}", target.address, target.rpc.path()));
        let output = run_tool(Path::new("h2load"), &args, duration + Duration::from_secs(60))?;
        let report = h2load_report(&output.stdout)
            .ok_or_else(|| anyhow::anyhow!("unexpected h2load output:\n{}", output.stdout))?;
        check_run(&report, target.response_bytes, (load.connections * load.streams) as u64).map_err(|problem| {
            anyhow::anyhow!("h2load {load} against {}: {problem}\n{}", target.name, output.stdout)
        })?;
        Ok(report)
    }

    /// A checked warm-up run, then the measured one with the CPU of the
    /// target's processes read around it.
    fn measure(&self, target: &Target, load: Load, args: &CompareGoArgs) -> anyhow::Result<Point> {
        self.run(target, load, args.warmup, None)?;
        let log = self.work_dir.join("h2load-requests.log");
        let before: u64 = target.pids.iter().map(|pid| procfs::cpu_ticks(*pid)).sum::<Result<_, _>>()?;
        let report = self.run(target, load, args.duration, Some(&log))?;
        let after: u64 = target.pids.iter().map(|pid| procfs::cpu_ticks(*pid)).sum::<Result<_, _>>()?;
        let cpu_s = after.saturating_sub(before) as f64 / procfs::clock_ticks_per_second() as f64;
        let mut durations = h2load_log_durations(&std::fs::read_to_string(&log)?)
            .with_context(|| format!("unexpected line in {}", log.display()))?;
        Ok(Point {
            requests_per_s: report.requests_per_s,
            p99_us: nearest_rank(&mut durations, 0.99),
            cpu_us_per_request: cpu_s * 1e6 / report.done as f64,
        })
    }
}

pub fn main(args: &CompareGoArgs) -> anyhow::Result<()> {
    anyhow::ensure!(!args.loads.is_empty(), "no loads to measure");
    let rust_dir = match &args.rust_dir {
        Some(dir) => dir.clone(),
        None => crate::own_dir()?,
    };
    let rust_names: &[&str] = if args.no_sweep {
        &["metadata", "rating", "movie", "constant-server"]
    } else {
        &["metadata", "rating", "movie", "constant-server", "loadgen"]
    };
    check_binaries(&rust_dir, rust_names)?;
    let go_names: &[&str] = if args.no_per_call {
        &["metadata", "rating", "movie"]
    } else {
        &["metadata", "rating", "movie", "movie-per-call"]
    };
    check_binaries(&args.go_dir, go_names)?;
    let (rust_dir, go_dir) = (rust_dir.canonicalize()?, args.go_dir.canonicalize()?);
    std::fs::create_dir_all(&args.work_dir)?;
    let work_dir = args.work_dir.canonicalize()?;
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    // Read before measuring, so that a file this runner cannot read fails the run at once, not at its end.
    let mut figures = Figures::read(&args.charts_dir)?;
    let machine = Machine::describe();
    let started = Instant::now();

    // The suite refuses calls past --max-concurrent-requests (default 1000) with RESOURCE_EXHAUSTED;
    // the Go suite has no such limit, so ours is raised to the most streams a load keeps open.
    let max_concurrent = args.loads.iter().map(|load| load.connections * load.streams).max().unwrap_or(1).max(1000);
    let mut limit = vec!["--max-concurrent-requests".to_owned(), max_concurrent.to_string()];
    limit.extend(args.rust_flags.iter().cloned());
    let go_envs = &args.go_envs[..];
    let mut suites = Suites { processes: Vec::new() };
    let result = (|| {
        let movie_flags = |metadata: &str, rating: &str, metadata_flag: &str, rating_flag: &str| {
            vec![metadata_flag.to_owned(), metadata.to_owned(), rating_flag.to_owned(), rating.to_owned()]
        };
        let (rust_metadata, rust_metadata_pid) =
            suites.start("rust metadata", &rust_dir.join("metadata"), &limit, &[], &work_dir)?;
        let (rust_rating, rust_rating_pid) =
            suites.start("rust rating", &rust_dir.join("rating"), &limit, &[], &work_dir)?;
        let mut rust_flags = movie_flags(&rust_metadata, &rust_rating, "--metadata-addrs", "--rating-addrs");
        rust_flags.extend(limit.iter().cloned());
        let (rust_movie, rust_movie_pid) =
            suites.start("rust movie", &rust_dir.join("movie"), &rust_flags, &[], &work_dir)?;
        let (go_metadata, go_metadata_pid) =
            suites.start("go metadata", &go_dir.join("metadata"), &[], go_envs, &work_dir)?;
        let (go_rating, go_rating_pid) = suites.start("go rating", &go_dir.join("rating"), &[], go_envs, &work_dir)?;
        let go_flags = movie_flags(&go_metadata, &go_rating, "--metadata-addr", "--rating-addr");
        let (go_movie, go_movie_pid) =
            suites.start("go movie", &go_dir.join("movie"), &go_flags, go_envs, &work_dir)?;
        let (floor, floor_pid) =
            suites.start("constant-server", &rust_dir.join("constant-server"), &[], &[], &work_dir)?;
        let go_per_call = if args.no_per_call {
            None
        } else {
            Some(suites.start("go movie-per-call", &go_dir.join("movie-per-call"), &go_flags, go_envs, &work_dir)?)
        };

        runtime.block_on(bench::rpc::await_serving(&rust_rating, Instant::now() + Duration::from_secs(60)))?;
        eprintln!("seeding {} movies into both suites", args.movies);
        runtime.block_on(bench::rpc::seed(&rust_metadata, &rust_rating, args.movies))?;
        // The book's in-memory rating store has no lock: one put at a time.
        runtime.block_on(bench::rpc::seed_at_most(&go_metadata, &go_rating, args.movies, 1))?;

        let mut targets = vec![
            Target {
                name: GO_POOLED,
                rpc: Rpc::GetMovieDetails,
                address: go_movie,
                pids: vec![go_metadata_pid, go_rating_pid, go_movie_pid],
                loads: args.loads.clone(),
                response_bytes: 0,
            },
            Target {
                name: RUST,
                rpc: Rpc::GetMovieDetails,
                address: rust_movie,
                pids: vec![rust_metadata_pid, rust_rating_pid, rust_movie_pid],
                loads: args.loads.clone(),
                response_bytes: 0,
            },
        ];
        if let Some((address, per_call_pid)) = go_per_call {
            targets.push(Target {
                name: GO_PER_CALL,
                rpc: Rpc::GetMovieDetails,
                address,
                pids: vec![go_metadata_pid, go_rating_pid, per_call_pid],
                loads: args.per_call_loads.clone(),
                response_bytes: 0,
            });
        }
        targets.push(Target {
            name: FLOOR,
            rpc: Rpc::GetMetadata,
            address: floor,
            pids: vec![floor_pid],
            loads: args.loads.clone(),
            response_bytes: 0,
        });

        // The same answer from every movie service, as JSON and as bytes.
        let rust_json = movie_json(&targets[1].address)?;
        for target in targets.iter().filter(|target| target.rpc == Rpc::GetMovieDetails) {
            let json = movie_json(&target.address)?;
            anyhow::ensure!(
                json == rust_json,
                "grpcurl reads different details of movie 1:\n{RUST}: {rust_json}\n{}: {json}",
                target.name
            );
        }
        eprintln!("grpcurl reads the same details of movie 1 from every movie service:\n{rust_json}");
        let mut requests = BTreeMap::new();
        for rpc in [Rpc::GetMovieDetails, Rpc::GetMetadata] {
            let path = work_dir.join(format!("{}.grpc-request", rpc.name()));
            std::fs::write(&path, grpc_frame(&rpc.encoded_request("1")))?;
            requests.insert(rpc.name(), path);
        }
        let mut rust_body = None;
        for target in &mut targets {
            let body = one_response(target.rpc, &target.address, &requests[target.rpc.name()], &work_dir, target.name)?;
            if target.rpc == Rpc::GetMovieDetails {
                let rust_body = rust_body.get_or_insert_with(|| body.clone());
                anyhow::ensure!(
                    *rust_body == body,
                    "{} answers other bytes than the first movie service: {body:?} against {rust_body:?}",
                    target.name
                );
            }
            target.response_bytes = body.len() as u64;
            eprintln!("{}: one successful response is {} bytes of DATA", target.name, body.len());
        }

        let h2load = H2load { work_dir: &work_dir, requests };
        let mut points = Points::new();
        for round in 0..args.rounds.max(1) {
            let order: Vec<&Target> =
                if round % 2 == 0 { targets.iter().collect() } else { targets.iter().rev().collect() };
            eprintln!("round {} of {}", round + 1, args.rounds.max(1));
            for &load in &args.loads {
                for target in order.iter().filter(|target| target.loads.contains(&load)) {
                    let point = h2load
                        .measure(target, load, args)
                        .with_context(|| format!("round {}, {load}, {}", round + 1, target.name))?;
                    eprintln!(
                        "  {load:<14} {:<42} {:>8.0} req/s  p99 {:>7}µs  cpu {:>6.1}µs/req",
                        target.name,
                        point.requests_per_s,
                        point.p99_us.map_or_else(|| "n/a".into(), |p99| p99.to_string()),
                        point.cpu_us_per_request
                    );
                    points.entry((load, target.name)).or_default().push(point);
                }
            }
        }
        let sweep = if args.no_sweep {
            None
        } else {
            let loadgen = Loadgen {
                program: rust_dir.join("loadgen"),
                movies: args.movies,
                warmup: args.warmup,
                duration: args.sweep_duration,
                connections: args.sweep_connections.max(1),
            };
            let address = |name: &str| targets.iter().find(|target| target.name == name).map(|target| &target.address);
            let (rust_address, go_address) =
                (address(RUST).context("this suite's target")?, address(GO_POOLED).context("pooled Go's target")?);
            let closed_loop =
                ["--concurrency".into(), "64".into(), "--connections".into(), loadgen.connections.to_string()];
            let saturation = loadgen.run(Rpc::GetMovieDetails, rust_address, &closed_loop)?.requests_per_s;
            eprintln!("open-loop sweep of GetMovieDetails up to this suite's saturation, {saturation:.0} requests/s");
            let go_name = short_name(GO_POOLED);
            Some(bench::sweep::run(&[crate::THIS_SUITE, go_name], saturation, |name, rate| {
                let address = if name == go_name { go_address } else { rust_address };
                let step = loadgen.open_loop_step(Rpc::GetMovieDetails, address, rate)?;
                print_step(name, &step, saturation);
                Ok(step)
            })?)
        };
        let names: Vec<&'static str> = targets.iter().map(|target| target.name).collect();
        let bytes_of =
            |rpc: Rpc| targets.iter().find(|target| target.rpc == rpc).map_or(0, |target| target.response_bytes);
        anyhow::Ok((names, points, sweep, (bytes_of(Rpc::GetMovieDetails), bytes_of(Rpc::GetMetadata))))
    })();
    let stopped = stop_all(suites.processes.drain(..).rev());
    let (names, points, sweep, (movie_response_bytes, floor_response_bytes)) = result?;
    stopped?;
    let info = Info {
        date: machine.date.clone(),
        commit: machine.commit.clone(),
        rustc: machine.rustc.clone(),
        go_toolchain: args.go_toolchain.clone(),
        cores: machine.cores,
        cpu: machine.cpu.clone(),
        rounds: args.rounds.max(1),
        warmup: args.warmup,
        duration: args.duration,
        movies: args.movies,
        max_concurrent,
        settings: settings(&args.rust_flags, &args.go_envs),
        movie_response_bytes,
        floor_response_bytes,
    };
    println!("{}", render(&info, &args.loads, &names, &points, sweep.as_ref()));
    let mut run = machine.provenance(false);
    run.note = Some(format!("Go: {}", args.go_toolchain));
    figures.comparison = Some(ComparisonFigures {
        run,
        targets: target_figures(&args.loads, &[RUST, GO_POOLED, GO_PER_CALL, FLOOR], &points),
        sweep,
    });
    figures.write(&args.charts_dir)?;
    for (_, path) in charts::write_all(&figures, &args.charts_dir)? {
        eprintln!("wrote {}", path.display());
    }
    eprintln!("took {:.0?}", started.elapsed());
    Ok(())
}

/// The particulars of a comparison, for its report.
pub struct Info {
    pub date: String,
    pub commit: String,
    pub rustc: String,
    pub go_toolchain: String,
    pub cores: usize,
    pub cpu: String,
    pub rounds: usize,
    pub warmup: Duration,
    pub duration: Duration,
    pub movies: u32,
    /// This suite's `--max-concurrent-requests`.
    pub max_concurrent: usize,
    /// How both suites were run, when not as they come: `--rust-flag`s and `--go-env`s.
    pub settings: String,
    /// One successful response's DATA: GetMovieDetails (the same bytes from every movie service) and the floor's.
    pub movie_response_bytes: u64,
    pub floor_response_bytes: u64,
}

fn show(value: Option<f64>, decimals: usize) -> String {
    value.map_or_else(|| "n/a".to_owned(), |value| format!("{value:.decimals$}"))
}

/// The settings the suites ran with, for the report.
fn settings(rust_flags: &[String], go_envs: &[(String, String)]) -> String {
    let ours = match rust_flags {
        [] => "this suite's services with their defaults".to_owned(),
        flags => format!("this suite's services with `{}`", flags.join(" ")),
    };
    let go = match go_envs {
        [] => "the Go services with theirs".to_owned(),
        envs => {
            let envs: Vec<String> = envs.iter().map(|(key, value)| format!("{key}={value}")).collect();
            format!("the Go services with `{}`", envs.join(" "))
        }
    };
    format!("{ours}, {go}")
}

/// The markdown report: per load and target the medians of the rounds and
/// every round's requests/s, then the ratios of the medians.
pub fn render(info: &Info, loads: &[Load], names: &[&'static str], points: &Points, sweep: Option<&Sweep>) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "### This suite against the book's Go suite (`scripts/compare-go.sh`)\n");
    let _ = writeln!(
        out,
        "{date}; commit `{commit}`; {rustc}; {go}; {cores} cores ({cpu}); {settings}. Rounds: {rounds}, the order of \
         the targets reversed every other round; each run a {warmup} warm-up then {duration} of `h2load -t1` on \
         `MovieService/GetMovieDetails` for movie 1 ({movies} movies seeded into both suites through their Put \
         RPCs; this suite's `--max-concurrent-requests` at {max_concurrent}, so that it refuses none), the floor \
         `MetadataService/GetMetadata` on constant-server. Every response checked by its \
         bytes: DATA received = one successful response per request done, and per response h2load counted past \
         its deadline ({movie_bytes} bytes for GetMovieDetails, the same bytes from every movie service; {floor_bytes} for the floor), nothing failed, errored or \
         timed out. Figures are medians of the rounds; p99 from h2load's per-request log; CPU is utime + stime \
         of the target's processes (metadata + rating + movie; constant-server for the floor) over the \
         measured run, per request done.\n",
        date = info.date,
        commit = info.commit,
        rustc = info.rustc,
        go = info.go_toolchain,
        cores = info.cores,
        cpu = info.cpu,
        settings = info.settings,
        rounds = info.rounds,
        warmup = humantime::format_duration(info.warmup),
        duration = humantime::format_duration(info.duration),
        movies = info.movies,
        max_concurrent = info.max_concurrent,
        movie_bytes = info.movie_response_bytes,
        floor_bytes = info.floor_response_bytes,
    );
    let _ = writeln!(
        out,
        "| load | target | requests/s | p99 µs | CPU µs/request | requests/s per round |\n|---|---|---:|---:|---:|---|"
    );
    let values = |load: Load, name: &str, figure: fn(&Point) -> Option<f64>| -> Vec<f64> {
        points.get(&(load, name)).map(|points| points.iter().filter_map(figure).collect()).unwrap_or_default()
    };
    let med = |load: Load, name: &str, figure: fn(&Point) -> Option<f64>| median(&values(load, name, figure));
    let rps = |point: &Point| Some(point.requests_per_s);
    let p99 = |point: &Point| point.p99_us.map(|p99| p99 as f64);
    let cpu = |point: &Point| Some(point.cpu_us_per_request);
    for &load in loads {
        for &name in names {
            if !points.contains_key(&(load, name)) {
                continue;
            }
            let per_round: Vec<String> = values(load, name, rps).iter().map(|value| format!("{value:.0}")).collect();
            let _ = writeln!(
                out,
                "| {load} | {name} | {} | {} | {} | {} |",
                show(med(load, name, rps), 0),
                show(med(load, name, p99), 0),
                show(med(load, name, cpu), 1),
                per_round.join(" / ")
            );
        }
    }
    let ratio_of = |load: Load, a: &str, b: &str, figure: fn(&Point) -> Option<f64>| {
        med(load, a, figure).zip(med(load, b, figure)).and_then(|(a, b)| ratio(a, b))
    };
    let _ = writeln!(
        out,
        "\n| load | requests/s: this suite / Go pooled | this suite / floor | Go pooled / floor | this suite / Go as \
         published | CPU per request: Go pooled / this suite |\n|---|---:|---:|---:|---:|---:|"
    );
    for &load in loads {
        let _ = writeln!(
            out,
            "| {load} | {} | {} | {} | {} | {} |",
            show(ratio_of(load, RUST, GO_POOLED, rps), 2),
            show(ratio_of(load, RUST, FLOOR, rps), 2),
            show(ratio_of(load, GO_POOLED, FLOOR, rps), 2),
            show(ratio_of(load, RUST, GO_PER_CALL, rps), 2),
            show(ratio_of(load, GO_POOLED, RUST, cpu), 2),
        );
    }
    if let Some(sweep) = sweep {
        render_sweep(&mut out, sweep);
    }
    out
}

/// The sweep: per rate, each suite's p50 and p99 (µs), errors and the machine's busy share.
fn render_sweep(out: &mut String, sweep: &Sweep) {
    let _ = writeln!(
        out,
        "\nOpen-loop sweep (`loadgen`, latency from each request's intended send time), the same rates against \
         each suite, from 10 % to 100 % of this suite's closed-loop saturation ({:.0} requests/s, `loadgen` at 64 \
         workers), then finer rates after each knee; one run per rate. Per suite: p50 / p99 µs, errors, machine \
         busy.\n",
        sweep.saturation_rps
    );
    let _ = write!(out, "| offered requests/s | share |");
    for curve in &sweep.curves {
        let _ = write!(out, " {} |", curve.name);
    }
    let _ = writeln!(out, "\n|---:|---:|{}", "---|".repeat(sweep.curves.len()));
    let rates: Vec<f64> =
        sweep.curves.first().map(|curve| curve.steps.iter().map(|step| step.offered_rps).collect()).unwrap_or_default();
    for rate in rates {
        let _ = write!(out, "| {rate:.0} | {:.1} % |", 100.0 * rate / sweep.saturation_rps);
        for curve in &sweep.curves {
            let cell = curve.steps.iter().find(|step| step.offered_rps == rate).map_or_else(
                || "n/a".to_owned(),
                |step| {
                    let busy =
                        step.machine_busy.map_or_else(|| "n/a".to_owned(), |busy| format!("{:.0} %", busy * 100.0));
                    format!("{} / {}, {} errors, {busy}", step.p50_us, step.p99_us, step.errors)
                },
            );
            let _ = write!(out, " {cell} |");
        }
        let _ = writeln!(out);
    }
    let _ = writeln!(out, "\n{}", crate::report::knee_sentence(sweep));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(done: u64, data_bytes: u64) -> H2loadReport {
        H2loadReport {
            requests_per_s: 1000.0,
            started: done + 3,
            done,
            succeeded: done,
            failed: 0,
            errored: 0,
            timeout: 0,
            status_2xx: done,
            data_bytes,
        }
    }

    #[test]
    fn a_run_passes_only_with_one_successful_response_per_request() {
        assert_eq!(check_run(&report(1000, 36_000), 36, 8), Ok(()));
        // A gRPC error is an HTTP/2 success with no DATA: h2load counts it as succeeded.
        let with_errors = check_run(&report(1000, 35_964), 36, 8).unwrap_err();
        assert!(with_errors.contains("35964 bytes of DATA for 1000 requests done and 1000 2xx"), "{with_errors}");
        // More DATA than 2xx statuses, or DATA that is not whole responses.
        assert!(check_run(&report(1000, 36_036), 36, 8).is_err());
        assert!(check_run(&H2loadReport { status_2xx: 1001, ..report(1000, 36_010) }, 36, 8).is_err());
        assert!(check_run(&report(0, 0), 36, 8).is_err());
        // A response whose headers came before the end of the run, its DATA after.
        let headers_only_at_the_end = H2loadReport { status_2xx: 1001, ..report(1000, 36_000) };
        assert_eq!(check_run(&headers_only_at_the_end, 36, 8), Ok(()));
        // A response finished at the deadline: its 2xx and DATA counted, not among the requests done.
        let finished_at_the_end = H2loadReport { status_2xx: 1001, ..report(1000, 36_036) };
        assert_eq!(check_run(&finished_at_the_end, 36, 8), Ok(()));
        // The same, and a gRPC error among the requests done.
        let headers_only_and_an_error = H2loadReport { status_2xx: 1001, ..report(1000, 35_964) };
        assert!(check_run(&headers_only_and_an_error, 36, 8).is_err());
        let missing_status = H2loadReport { status_2xx: 999, ..report(1000, 36_000) };
        assert!(check_run(&missing_status, 36, 8).unwrap_err().contains("999 2xx statuses for 1000 requests done"));
        let too_many = H2loadReport { status_2xx: 1004, ..report(1000, 36_000) };
        assert!(check_run(&too_many, 36, 3).unwrap_err().contains("(at most 3 streams open at the end)"));
        let failed = H2loadReport { failed: 1, ..report(1000, 36_000) };
        assert!(check_run(&failed, 36, 8).unwrap_err().contains("1 failed"));
        let errored = H2loadReport { errored: 2, ..report(1000, 36_000) };
        assert!(check_run(&errored, 36, 8).is_err());
    }

    /// h2load's report of a `-c64 -m16` run against the floor (104 bytes per response), its counts
    /// replaced by `status_2xx` and `data_bytes`.
    fn floor_run(status_2xx: u64, data_bytes: u64) -> H2loadReport {
        let output = format!(
            "starting benchmark...\n\
             spawning thread #0: 64 total client(s). Timing-based test with 2s of warm-up time and 10s of main \
             duration for measurements.\n\
             Main benchmark duration is over for thread #0. Stopping all clients.\n\
             Stopped all clients for thread #0\n\n\
             finished in 10.00s, 161227.10 req/s, 25.21MB/s\n\
             requests: 1612271 total, 1613295 started, 1612271 done, 1612271 succeeded, 0 failed, 0 errored, 0 \
             timeout\n\
             status codes: {status_2xx} 2xx, 0 3xx, 0 4xx, 0 5xx\n\
             traffic: 252.08MB (264329872) total, 4.61MB (4837212) headers (space savings 95.38%), 159.91MB \
             ({data_bytes}) data\n\
             \x20                    min         max         mean         sd        +/- sd\n\
             time for request:       61us     29.91ms      6.25ms      2.37ms    70.16%\n"
        );
        h2load_report(&output).expect("h2load's report")
    }

    #[test]
    fn h2load_counting_one_response_past_the_requests_done_passes_and_a_grpc_error_fails() {
        let (done, floor_bytes, most_open) = (1_612_271, 104, 64 * 16);
        let one_extra = floor_run(done + 1, (done + 1) * floor_bytes);
        assert_eq!(one_extra.done, done);
        assert_eq!(check_run(&one_extra, floor_bytes, most_open), Ok(()));
        // One of the requests done answered a gRPC error: a 2xx whose DATA is empty.
        let one_error = floor_run(done, (done - 1) * floor_bytes);
        let problem = check_run(&one_error, floor_bytes, most_open).unwrap_err();
        assert!(problem.contains("some responses were not successes"), "{problem}");
        let one_extra_one_error = floor_run(done + 1, done * floor_bytes - floor_bytes);
        assert!(check_run(&one_extra_one_error, floor_bytes, most_open).is_err());
    }

    #[test]
    fn each_target_is_charted_at_its_best_load() {
        let (light, heavy) = (Load { connections: 1, streams: 1 }, Load { connections: 64, streams: 16 });
        let point =
            |requests_per_s: f64, cpu_us_per_request: f64| Point { requests_per_s, p99_us: None, cpu_us_per_request };
        let points = Points::from([
            ((light, RUST), vec![point(7000.0, 150.0)]),
            ((heavy, RUST), vec![point(40000.0, 40.0), point(42000.0, 38.0), point(30000.0, 50.0)]),
            ((light, FLOOR), vec![point(17000.0, 24.0)]),
        ]);
        let figures = target_figures(&[light, heavy], &[RUST, GO_POOLED, FLOOR], &points);
        assert_eq!(
            figures,
            [
                TargetFigures {
                    name: "this suite".into(),
                    load: "-c64 -m16".into(),
                    saturation_rps: 40000.0,
                    cpu_us_per_request: 40.0
                },
                TargetFigures {
                    name: "floor".into(),
                    load: "-c1 -m1".into(),
                    saturation_rps: 17000.0,
                    cpu_us_per_request: 24.0
                },
            ]
        );
    }

    #[test]
    fn loads_are_connections_by_streams() {
        assert_eq!("16x8".parse(), Ok(Load { connections: 16, streams: 8 }));
        assert!("16".parse::<Load>().is_err());
        assert!("0x8".parse::<Load>().is_err());
        assert_eq!(Load { connections: 64, streams: 16 }.to_string(), "`-c64 -m16`");
    }

    #[test]
    fn the_report_gives_medians_rounds_and_ratios() {
        let load = Load { connections: 16, streams: 8 };
        let point =
            |requests_per_s: f64, cpu: f64| Point { requests_per_s, p99_us: Some(5000), cpu_us_per_request: cpu };
        let points = Points::from([
            ((load, RUST), vec![point(20000.0, 60.0), point(24000.0, 58.0), point(22000.0, 62.0)]),
            ((load, GO_POOLED), vec![point(10000.0, 120.0), point(11000.0, 130.0), point(12000.0, 125.0)]),
            ((load, FLOOR), vec![point(44000.0, 10.0), point(40000.0, 11.0), point(48000.0, 9.0)]),
        ]);
        let info = Info {
            date: "2026-11-24 05:00 UTC".into(),
            commit: "abc1234".into(),
            rustc: "rustc 1.95.0".into(),
            go_toolchain: "go version go1.19.8 linux/amd64, grpc-go 1.33.3".into(),
            cores: 2,
            cpu: "AMD EPYC".into(),
            rounds: 3,
            warmup: Duration::from_secs(2),
            duration: Duration::from_secs(10),
            movies: 1000,
            max_concurrent: 1024,
            settings: settings(&["--worker-threads=1".into()], &[("GOMAXPROCS".into(), "1".into())]),
            movie_response_bytes: 113,
            floor_response_bytes: 104,
        };
        let out = render(&info, &[load], &[GO_POOLED, RUST, GO_PER_CALL, FLOOR], &points, None);
        assert!(out.contains("commit `abc1234`; rustc 1.95.0; go version go1.19.8 linux/amd64, grpc-go 1.33.3;"));
        assert!(out.contains(
            "(AMD EPYC); this suite's services with `--worker-threads=1`, the Go services with `GOMAXPROCS=1`. Rounds"
        ));
        assert_eq!(settings(&[], &[]), "this suite's services with their defaults, the Go services with theirs");
        assert!(
            out.contains("(113 bytes for GetMovieDetails, the same bytes from every movie service; 104 for the floor)")
        );
        assert!(out.contains("`--max-concurrent-requests` at 1024"));
        assert!(out.contains("| `-c16 -m8` | this suite | 22000 | 5000 | 60.0 | 20000 / 24000 / 22000 |\n"));
        assert!(
            out.contains("| `-c16 -m8` | Go, pooled connections | 11000 | 5000 | 125.0 | 10000 / 11000 / 12000 |\n")
        );
        assert!(!out.contains("| `-c16 -m8` | Go as published"));
        assert!(out.contains("| `-c16 -m8` | 2.00 | 0.50 | 0.25 | n/a | 2.08 |\n"));
    }
}
