//! The gRPC measurements: saturation throughput in closed loop, latency at a
//! constant rate, CPU per request, and an h2load cross-check.
use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    time::Duration,
};

use bench::{
    load::LoadSummary,
    parse::{H2loadReport, h2load_report},
    processes::run_tool,
    procfs,
    rpc::{Rpc, grpc_frame},
    sweep::Step,
};

use crate::Context;

/// What is called, where.
#[derive(Debug, Clone)]
pub struct Target {
    /// `movie`, `metadata` or `constant-server`.
    pub name: &'static str,
    pub rpc: Rpc,
    pub address: String,
}

/// The processes that serve a target, whose CPU time its requests cost.
pub fn serving_processes(target: &str) -> &'static [&'static str] {
    match target {
        "movie" => &["metadata", "rating", "movie"],
        "metadata" => &["metadata"],
        _ => &["constant-server"],
    }
}

pub const CONCURRENCIES: [usize; 3] = [1, 16, 64];

/// One run of the load generator, the CPU each process spent during it,
/// and how busy the whole machine was.
#[derive(Debug, Clone)]
pub struct Measured {
    pub summary: LoadSummary,
    /// CPU seconds by process name over the run (the load generator's own included).
    pub cpu_s: BTreeMap<&'static str, f64>,
    /// Share of the machine's CPU time (all cores) that was busy, 0 to 1.
    pub machine_busy: Option<f64>,
}

impl Measured {
    /// CPU of the processes serving `target` per request sent, in µs.
    pub fn server_cpu_us_per_request(&self, target: &str) -> f64 {
        let cpu: f64 = serving_processes(target).iter().filter_map(|name| self.cpu_s.get(name)).sum();
        cpu * 1e6 / self.summary.all_requests.max(1) as f64
    }
}

/// Everything one run of the gRPC phase measured.
#[derive(Debug, Clone, Default)]
pub struct GrpcRun {
    /// By (target, concurrency).
    pub saturation: BTreeMap<(&'static str, usize), Measured>,
    pub constant_rate: f64,
    pub at_constant_rate: BTreeMap<&'static str, Measured>,
    pub h2load: BTreeMap<&'static str, H2loadReport>,
}

impl GrpcRun {
    /// The best closed-loop throughput of a target.
    pub fn saturation_rps(&self, target: &str) -> f64 {
        self.saturation
            .iter()
            .filter(|((name, _), _)| *name == target)
            .map(|(_, measured)| measured.summary.requests_per_s)
            .fold(0.0, f64::max)
    }
}

/// How the runner calls `loadgen`: its binary, the ids it asks for, and the
/// length of each run.
#[derive(Debug, Clone)]
pub struct Loadgen {
    pub program: PathBuf,
    /// Ids `0..movies`.
    pub movies: u32,
    pub warmup: Duration,
    pub duration: Duration,
    /// HTTP/2 connections of an open-loop run.
    pub connections: usize,
}

impl Loadgen {
    pub fn of(context: &Context) -> Self {
        Loadgen {
            program: context.binary("loadgen"),
            movies: context.settings.movies,
            warmup: context.settings.warmup,
            duration: context.settings.duration,
            connections: context.settings.connections,
        }
    }

    /// One run of `rpc` at `address`, shaped by `shape` (`--rate` or `--concurrency` and `--connections`).
    pub fn run(&self, rpc: Rpc, address: &str, shape: &[String]) -> anyhow::Result<LoadSummary> {
        let mut args = vec![
            "--rpc".to_owned(),
            match rpc {
                Rpc::GetMovieDetails => "get-movie-details".to_owned(),
                Rpc::GetMetadata => "get-metadata".to_owned(),
            },
            "--address".to_owned(),
            address.to_owned(),
            "--ids".to_owned(),
            format!("0..{}", self.movies),
            "--warmup".to_owned(),
            humantime::format_duration(self.warmup).to_string(),
            "--duration".to_owned(),
            humantime::format_duration(self.duration).to_string(),
        ];
        args.extend_from_slice(shape);
        let timeout = self.warmup + self.duration + Duration::from_secs(60);
        let output = run_tool(&self.program, &args, timeout)?;
        let line = output.stdout.lines().last().unwrap_or_default();
        serde_json::from_str(line).map_err(|error| anyhow::anyhow!("loadgen printed {line:?}: {error}"))
    }

    /// One step of the open-loop sweep: `rate` requests/s, the machine's busy share read around it.
    pub fn open_loop_step(&self, rpc: Rpc, address: &str, rate: f64) -> anyhow::Result<Step> {
        let shape = ["--rate".into(), rate.to_string(), "--connections".into(), self.connections.to_string()];
        let machine_before = procfs::machine_ticks().ok();
        let summary = self.run(rpc, address, &shape)?;
        let machine_busy = machine_before
            .zip(procfs::machine_ticks().ok())
            .and_then(|(before, after)| procfs::busy_share(before, after));
        Ok(Step::from_summary(rate, &summary, machine_busy))
    }
}

/// Prints one step of a sweep as it is measured.
pub fn print_step(name: &str, step: &Step, saturation_rps: f64) {
    eprintln!(
        "  {name:<16} open loop {:>6.0}/s ({:>3.0} %)  p50 {:>6}µs  p90 {:>6}µs  p99 {:>7}µs  p99.9 {:>7}µs  errors {}  \
         machine busy {:.0} %",
        step.offered_rps,
        100.0 * step.offered_rps / saturation_rps,
        step.p50_us,
        step.p90_us,
        step.p99_us,
        step.p999_us,
        step.errors,
        step.machine_busy.unwrap_or(f64::NAN) * 100.0
    );
}

fn loadgen(context: &Context, target: &Target, shape: &[String]) -> anyhow::Result<LoadSummary> {
    Loadgen::of(context).run(target.rpc, &target.address, shape)
}

/// A closed-loop run with the CPU of every process of the suite read
/// around it.
pub fn closed_loop(
    context: &Context,
    target: &Target,
    concurrency: usize,
    all: &[(&'static str, u32)],
) -> anyhow::Result<Measured> {
    let connections = concurrency.min(context.settings.connections);
    let shape = ["--concurrency".into(), concurrency.to_string(), "--connections".into(), connections.to_string()];
    measured(context, target, &shape, all)
}

/// A run of the load generator shaped by `shape`, with the CPU of every
/// process of the suite, and of the machine, read around it.
fn measured(
    context: &Context,
    target: &Target,
    shape: &[String],
    all: &[(&'static str, u32)],
) -> anyhow::Result<Measured> {
    let before: Vec<u64> = all.iter().map(|(_, pid)| procfs::cpu_ticks(*pid).unwrap_or(0)).collect();
    let machine_before = procfs::machine_ticks().ok();
    let summary = loadgen(context, target, shape)?;
    let machine_busy =
        machine_before.zip(procfs::machine_ticks().ok()).and_then(|(before, after)| procfs::busy_share(before, after));
    let ticks = procfs::clock_ticks_per_second() as f64;
    let mut cpu_s: BTreeMap<&'static str, f64> = all
        .iter()
        .zip(before)
        .map(|((name, pid), before)| {
            (*name, procfs::cpu_ticks(*pid).unwrap_or(before).saturating_sub(before) as f64 / ticks)
        })
        .collect();
    cpu_s.insert("loadgen", summary.client_cpu_s);
    Ok(Measured { summary, cpu_s, machine_busy })
}

/// h2load at 16 connections × 8 streams for the measuring duration.
fn h2load(context: &Context, target: &Target, work_dir: &Path) -> anyhow::Result<H2loadReport> {
    let body = work_dir.join(format!("{}.grpc-request", target.name));
    std::fs::write(&body, grpc_frame(&target.rpc.encoded_request("1")))?;
    let args: Vec<String> = [
        "-c",
        "16",
        "-m",
        "8",
        "-t",
        "1",
        "-D",
        &context.settings.duration.as_secs().max(1).to_string(),
        "--warm-up-time",
        &context.settings.warmup.as_secs().max(1).to_string(),
        "-d",
        &body.display().to_string(),
        "-H",
        "content-type: application/grpc",
        "-H",
        "te: trailers",
        &format!("http://{}{}", target.address, target.rpc.path()),
    ]
    .iter()
    .map(|arg| arg.to_string())
    .collect();
    let timeout = context.settings.warmup + context.settings.duration + Duration::from_secs(60);
    let output = run_tool(Path::new("h2load"), &args, timeout)?;
    h2load_report(&output.stdout).ok_or_else(|| anyhow::anyhow!("unexpected h2load output:\n{}", output.stdout))
}

/// One run of the gRPC phase against running servers.
pub fn run(
    context: &Context,
    targets: &[Target],
    all: &[(&'static str, u32)],
    work_dir: &Path,
) -> anyhow::Result<GrpcRun> {
    let mut run = GrpcRun::default();
    for target in targets {
        for concurrency in CONCURRENCIES {
            let measured = closed_loop(context, target, concurrency, all)?;
            eprintln!(
                "  {:<16} closed loop c={concurrency:<3} {:>9.0} req/s  p50 {:>6}µs  p99 {:>7}µs  errors {}",
                target.name,
                measured.summary.requests_per_s,
                measured.summary.p50_us,
                measured.summary.p99_us,
                measured.summary.failures()
            );
            run.saturation.insert((target.name, concurrency), measured);
        }
    }
    run.constant_rate = (run.saturation_rps("movie") / 2.0).round().max(1.0);
    for target in targets {
        let connections = context.settings.connections.to_string();
        let shape = ["--rate".into(), run.constant_rate.to_string(), "--connections".into(), connections];
        let measured = measured(context, target, &shape, all)?;
        let summary = &measured.summary;
        eprintln!(
            "  {:<16} open loop {:>6.0}/s   p50 {:>6}µs  p90 {:>6}µs  p99 {:>7}µs  p99.9 {:>7}µs  errors {}  machine busy {:.0} %",
            target.name,
            run.constant_rate,
            summary.p50_us,
            summary.p90_us,
            summary.p99_us,
            summary.p999_us,
            summary.failures(),
            measured.machine_busy.unwrap_or(f64::NAN) * 100.0
        );
        run.at_constant_rate.insert(target.name, measured);
    }
    if context.h2load_available {
        for target in targets.iter().filter(|target| target.name != "metadata") {
            match h2load(context, target, work_dir) {
                Ok(report) => {
                    eprintln!(
                        "  {:<16} h2load -c16 -m8 {:>9.0} req/s ({} failed)",
                        target.name, report.requests_per_s, report.failed
                    );
                    run.h2load.insert(target.name, report);
                }
                Err(error) => eprintln!("  h2load against {} failed: {error:#}", target.name),
            }
        }
    }
    Ok(run)
}
