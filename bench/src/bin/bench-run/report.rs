//! BENCHMARKS.md: the ratios against the targets and the charts first, then
//! how to run, the machine, the figures (medians of the runs), the sweep,
//! and the per-run values.
use std::{fmt::Write, path::PathBuf, time::Duration};

use bench::{
    charts::Chart,
    stats::{median, ratio},
    sweep::{KNEE_ACHIEVED_SHARE, KNEE_P99_FACTOR, Sweep},
};

use crate::{
    Settings,
    grpc::GrpcRun,
    ingest::IngestRun,
    machine::Machine,
    storage::{DETAILS_CONCURRENCIES, STORES, StorageRun, Store},
};

/// Every run of every phase measured.
pub struct Measured<'a> {
    pub grpc: &'a [GrpcRun],
    /// The open-loop sweep of GetMovieDetails, run once after the gRPC runs.
    pub sweep: Option<&'a Sweep>,
    pub ingest: &'a [IngestRun],
    pub storage: &'a [StorageRun],
}

const TARGETS: [&str; 3] = ["movie", "metadata", "constant-server"];

fn describe_target(target: &str) -> &'static str {
    match target {
        "movie" => "GetMovieDetails via movie",
        "metadata" => "GetMetadata on metadata",
        _ => "GetMetadata on constant-server",
    }
}

/// The median over runs of `figure`, formatted, or "n/a".
fn med(values: impl IntoIterator<Item = Option<f64>>) -> Option<f64> {
    let values: Vec<f64> = values.into_iter().flatten().collect();
    median(&values)
}

fn show(value: Option<f64>, decimals: usize) -> String {
    value.map_or_else(|| "n/a".to_owned(), |value| format!("{value:.decimals$}"))
}

fn per_run(values: impl IntoIterator<Item = Option<f64>>, decimals: usize) -> String {
    values.into_iter().map(|value| show(value, decimals)).collect::<Vec<_>>().join(" / ")
}

/// A row of a table of figures: what it shows, its value in one run (`None`
/// when it was not measured or cannot be computed), and its decimals.
struct Row<Run> {
    label: &'static str,
    value: fn(&Run) -> Option<f64>,
    decimals: usize,
}

/// A row of the ingestion timings: what was timed, and its seconds in one
/// run.
struct Timing {
    label: &'static str,
    seconds: fn(&IngestRun) -> f64,
}

struct Goal {
    name: &'static str,
    measured: Option<f64>,
    shown: String,
    goal: &'static str,
    met: Option<bool>,
}

pub fn render(
    settings: &Settings,
    machine: &Machine,
    measured: &Measured,
    charts: &[(Chart, PathBuf)],
    took: Duration,
) -> String {
    let Measured { grpc, sweep, ingest, storage } = *measured;
    let mut out = String::new();
    let mode = if settings.quick { "quick (smoke test: short runs, figures not to quote)" } else { "full" };
    let _ = writeln!(out, "# Benchmarks\n");
    let _ = writeln!(
        out,
        "Written by `scripts/bench.sh` (the `bench-run` binary of the `bench` crate); do not edit by hand, run it again.\n"
    );
    let mut goals = goals(grpc, ingest);
    goals.extend(storage_goals(storage));
    render_goals(&mut out, &goals);
    render_charts(&mut out, charts, sweep);
    let _ = writeln!(out, "## How to run\n");
    let _ = writeln!(
        out,
        "```sh\nscripts/bench.sh                 # full: 3 runs, 10 s per load run, a sweep, 1,000,000 events (about 25 minutes)\n\
         BENCH_QUICK=1 scripts/bench.sh   # smoke test: 1 run, 3 s per load run, 100,000 events\n\
         BENCH_RUNS=5 BENCH_DURATION=20s scripts/bench.sh\n```\n\n\
         It builds the release binaries, starts an in-memory Tansu broker, the three services (static discovery) and \
         `constant-server` on free 127.0.0.1 ports, seeds {} movies (metadata and one rating each, the rating written \
         through Kafka), measures (closed loop, open loop at half the saturation, then a sweep of open-loop rates from 10 % to \
         100 % of it), stops everything, and writes this file, the figures behind the charts \
         (`docs/benchmarks/figures.json`, keeping those `scripts/compare-go.sh` recorded) and the charts \
         (`docs/benchmarks/*.svg`; `target/release/bench-run charts` draws them again from the figures). The storage phase also runs a throwaway \
         PostgreSQL cluster. Needs `tansu` (`cargo install tansu --features dynostore,libsql`), PostgreSQL's server \
         binaries (`scripts/install-tools.sh --for-tests` installs both) and, for the cross-check, `h2load` \
         (nghttp2-client). Other settings: `BENCH_EVENTS`, `BENCH_WARMUP`, `BENCH_CONNECTIONS`, `BENCH_MOVIES`, \
         `BENCH_PHASES=grpc,ingest,storage`; `target/release/bench-run --help`.\n",
        settings.movies
    );
    let _ = writeln!(out, "{COMPARE_GO_HOW_TO}");

    let _ = writeln!(out, "## Machine and run\n");
    let _ = writeln!(out, "| | |\n|---|---|");
    for (name, value) in [
        ("CPU", machine.cpu.clone()),
        ("cores (nproc)", machine.cores.to_string()),
        ("memory", machine.memory.clone()),
        ("kernel", machine.kernel.clone()),
        ("rustc", machine.rustc.clone()),
        ("date", machine.date.clone()),
        ("commit", machine.commit.clone()),
        ("mode", mode.to_owned()),
        ("runs (figures are medians)", settings.runs.to_string()),
        (
            "gRPC load runs",
            format!(
                "{} warm-up (not recorded) + {} measured; up to {} HTTP/2 connections",
                humantime::format_duration(settings.warmup),
                humantime::format_duration(settings.duration),
                settings.connections
            ),
        ),
        ("events ingested", format!("{} + 64 probe events", settings.events)),
        ("took", format!("{:.0?}", took)),
    ] {
        let _ = writeln!(out, "| {name} | {value} |");
    }
    let _ = writeln!(out);

    if !grpc.is_empty() {
        render_grpc(&mut out, grpc);
    }
    if let Some(sweep) = sweep {
        render_sweep(&mut out, sweep, settings);
    }
    if !ingest.is_empty() {
        render_ingest(&mut out, ingest);
    }
    if !storage.is_empty() {
        render_storage(&mut out, storage);
    }
    let _ = writeln!(out, "## Method\n");
    let _ = writeln!(out, "{METHOD}");
    out
}

fn render_goals(out: &mut String, goals: &[Goal]) {
    let _ = writeln!(out, "## Targets\n");
    let _ = writeln!(
        out,
        "Each ratio is computed within one run (A and B measured back to back), then the median taken.\n"
    );
    let _ = writeln!(out, "| target | measured | goal | met |\n|---|---|---|---|");
    for goal in goals {
        let met = match goal.met {
            Some(true) => "met",
            Some(false) => "**not met**",
            None => "not measured",
        };
        let _ = writeln!(out, "| {} | {} | {} | {met} |", goal.name, goal.shown, goal.goal);
        let _ = goal.measured;
    }
    let _ = writeln!(out);
}

/// Where the knee of the first curve of `sweep` is, as a sentence.
pub fn knee_sentence(sweep: &Sweep) -> String {
    let knees: Vec<String> = sweep
        .curves
        .iter()
        .map(|curve| match curve.knee() {
            Some(step) => format!(
                "{} at {:.0} requests/s ({:.0} % of saturation)",
                curve.name,
                step.offered_rps,
                100.0 * step.offered_rps / sweep.saturation_rps
            ),
            None => format!("{}: not below the knee even at the lightest rate", curve.name),
        })
        .collect();
    format!(
        "The knee (the last rate up to which every rate kept its p99 within {KNEE_P99_FACTOR}× the lightest rate's, \
         achieved {:.0} % of its rate and failed no request; saturation {:.0} requests/s): {}.",
        KNEE_ACHIEVED_SHARE * 100.0,
        sweep.saturation_rps,
        knees.join("; ")
    )
}

fn render_charts(out: &mut String, charts: &[(Chart, PathBuf)], sweep: Option<&Sweep>) {
    if charts.is_empty() {
        return;
    }
    let _ = writeln!(out, "## Charts\n");
    let _ = writeln!(
        out,
        "Drawn by `bench-run` from `figures.json` beside them (this run's figures, and those of the last \
         `scripts/compare-go.sh`); each caption gives the date, commit and machine of its figures.\n"
    );
    for (chart, path) in charts {
        let _ = writeln!(out, "![{}]({})\n", chart.title, path.display());
    }
    if let Some(sweep) = sweep {
        let _ = writeln!(out, "{}\n", knee_sentence(sweep));
    }
}

/// The sweep's steps, one row each.
fn render_sweep(out: &mut String, sweep: &Sweep, settings: &Settings) {
    let _ = writeln!(out, "## gRPC: latency against offered load (open-loop sweep)\n");
    let _ = writeln!(
        out,
        "GetMovieDetails at constant rates from 10 % to 100 % of its median closed-loop saturation ({:.0} \
         requests/s), then finer rates after the knee; one run of each rate ({} warm-up, {} measured), latency \
         from each request's intended send time as in the open loop above, in µs; machine busy as there.\n",
        sweep.saturation_rps,
        humantime::format_duration(settings.warmup),
        humantime::format_duration(settings.duration)
    );
    let _ = writeln!(
        out,
        "| offered requests/s | share of saturation | achieved requests/s | p50 | p90 | p99 | p99.9 | errors | machine busy |\n\
         |---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    );
    for curve in &sweep.curves {
        for step in &curve.steps {
            let _ = writeln!(
                out,
                "| {:.0} | {:.1} % | {:.0} | {} | {} | {} | {} | {} | {} |",
                step.offered_rps,
                100.0 * step.offered_rps / sweep.saturation_rps,
                step.achieved_rps,
                step.p50_us,
                step.p90_us,
                step.p99_us,
                step.p999_us,
                step.errors,
                step.machine_busy.map_or_else(|| "n/a".to_owned(), |busy| format!("{:.0} %", busy * 100.0))
            );
        }
    }
    let _ = writeln!(out, "\n{}\n", knee_sentence(sweep));
}

fn goals(grpc: &[GrpcRun], ingest: &[IngestRun]) -> Vec<Goal> {
    let percent = |value: Option<f64>| show(value.map(|value| value * 100.0), 0) + " %";
    let times = |value: Option<f64>| show(value, 2) + "×";
    let saturation =
        med(grpc.iter().map(|run| ratio(run.saturation_rps("movie"), run.saturation_rps("constant-server"))));
    let p99 = med(grpc.iter().map(|run| run.at_constant_rate.get("movie").map(|open| open.summary.p99_us as f64)));
    let cpu = med(grpc.iter().map(cpu_ratio));
    let apply = med(ingest.iter().map(|run| ratio(run.bare_consume_s, run.apply_s)));
    let replay = med(ingest.iter().map(|run| ratio(run.replay_s, run.bare_consume_s)));
    let rss =
        med(ingest.iter().map(|run| Some(run.apply_rss_bytes.max(run.replay_rss_bytes) as f64 / (1 << 20) as f64)));
    let producer = med(ingest.iter().map(|run| ratio(run.bare_produce_s, run.ingester_publish_s)));
    vec![
        Goal {
            name: "GetMovieDetails saturation / constant-server GetMetadata saturation",
            measured: saturation,
            shown: percent(saturation),
            goal: "≥ 35 %",
            met: saturation.map(|value| value >= 0.35),
        },
        Goal {
            name: "GetMovieDetails p99 at half its saturation rate (open loop)",
            measured: p99,
            shown: show(p99.map(|micros| micros / 1000.0), 2) + " ms",
            goal: "≤ 2 ms",
            met: p99.map(|micros| micros <= 2000.0),
        },
        Goal {
            name: "CPU per GetMovieDetails (metadata+rating+movie) / CPU per GetMetadata (metadata)",
            measured: cpu,
            shown: times(cpu),
            goal: "≤ 4×",
            met: cpu.map(|value| value <= 4.0),
        },
        Goal {
            name: "rating apply rate / bare consumer rate",
            measured: apply,
            shown: percent(apply),
            goal: "≥ 90 %",
            met: apply.map(|value| value >= 0.9),
        },
        Goal {
            name: "replay time of a fresh rating instance / bare consumer read time",
            measured: replay,
            shown: times(replay),
            goal: "≤ 1.2×",
            met: replay.map(|value| value <= 1.2),
        },
        Goal {
            name: "rating RSS holding all ratings (the larger of the two instances)",
            measured: rss,
            shown: show(rss, 0) + " MB",
            goal: "≤ 200 MB",
            met: rss.map(|value| value <= 200.0),
        },
        Goal {
            name: "ratingingester publish rate / bare producer rate",
            measured: producer,
            shown: percent(producer),
            goal: "≥ 90 %",
            met: producer.map(|value| value >= 0.9),
        },
    ]
}

/// The targets of the stores: apply rates, a restart without replay, and
/// the memory of a rating instance whose ratings are in PostgreSQL.
fn storage_goals(storage: &[StorageRun]) -> Vec<Goal> {
    if storage.is_empty() {
        return Vec::new();
    }
    let rate = |store| med(storage.iter().map(|run| run.apply_rate(store)));
    let restart = |store| med(storage.iter().map(|run| run.applied.get(&store)?.restart_serving_s));
    let rss = med(storage.iter().map(|run| run.applied.get(&Store::Postgres)?.restart_rss_bytes.map(megabytes)));
    let ratings = med(storage.iter().map(|run| run.applied.get(&Store::Postgres)?.ratings.map(|rows| rows as f64)));
    let mut goals = Vec::new();
    for (store, name) in [
        (Store::Postgres, "rating apply rate, PostgreSQL (a fresh instance applying the full topic)"),
        (Store::Sqlite, "rating apply rate, SQLite (a fresh instance applying the full topic)"),
    ] {
        let measured = rate(store);
        goals.push(Goal {
            name,
            measured,
            shown: show(measured, 0) + " events/s",
            goal: "≥ 50,000 events/s",
            met: measured.map(|value| value >= 50_000.0),
        });
    }
    for (store, name) in [
        (Store::Postgres, "restarted rating instance, spawn to SERVING, PostgreSQL"),
        (Store::Sqlite, "restarted rating instance, spawn to SERVING, SQLite"),
    ] {
        let measured = restart(store);
        goals.push(Goal {
            name,
            measured,
            shown: show(measured, 3) + " s",
            goal: "≤ 1 s",
            met: measured.map(|value| value <= 1.0),
        });
    }
    goals.push(Goal {
        name: "rating RSS with its ratings in PostgreSQL (an instance started on them, SERVING and caught up)",
        measured: rss,
        shown: format!("{} MB ({} ratings)", show(rss, 0), show(ratings, 0)),
        goal: "≤ 50 MB",
        met: rss.map(|value| value <= 50.0),
    });
    goals
}

fn render_storage(out: &mut String, storage: &[StorageRun]) {
    let events = storage.first().map_or(0, |run| run.events);
    let _ = writeln!(
        out,
        "## Storage ({events} puts, in-memory Tansu, 3 partitions; one PostgreSQL 15 cluster)
"
    );
    let _ = writeln!(
        out,
        "Each run on a fresh broker and fresh databases. A fresh rating instance on each store applies the full \
         topic (spawn to the probe average read); the SQL stores are then restarted on what they hold. Median of \
         the runs.\n"
    );
    let _ = writeln!(
        out,
        "| store | applies, events/s | / bare consumer | SERVING after, s | rating CPU, cores | database CPU, cores \
         | RSS, MB | restarted: SERVING after, s | restarted: first answer, s | restarted: RSS, MB |\n\
         |---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    );
    for store in STORES {
        let of = |figure: fn(&StorageRun, &crate::storage::Applied) -> Option<f64>| {
            med(storage.iter().map(|run| figure(run, run.applied.get(&store)?)))
        };
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            store.name(),
            show(of(|run, applied| Some(run.events as f64 / applied.apply_s)), 0),
            show(of(|run, applied| ratio(run.bare_consume_s, applied.apply_s)).map(|value| value * 100.0), 0) + " %",
            show(of(|_, applied| Some(applied.first_serving_s)), 3),
            show(of(|_, applied| ratio(applied.rating_cpu_s, applied.apply_s)), 2),
            show(of(|_, applied| ratio(applied.database_cpu_s?, applied.apply_s)), 2),
            show(of(|_, applied| Some(megabytes(applied.rss_bytes))), 0),
            show(of(|_, applied| applied.restart_serving_s), 3),
            show(of(|_, applied| applied.restart_answer_s), 3),
            show(of(|_, applied| applied.restart_rss_bytes.map(megabytes)), 0),
        );
    }
    let bare = med(storage.iter().map(|run| Some(run.events as f64 / run.bare_consume_s)));
    let _ = writeln!(out, "\nThe bare consumer read the same topic at {} events/s.\n", show(bare, 0));

    let _ = writeln!(out, "### GetMovieDetails on each store\n");
    let _ = writeln!(
        out,
        "Metadata and rating on the same store (rating without Kafka, seeded through the RPCs), closed loop. \
         The services' CPU is metadata + rating + movie; the database's is the PostgreSQL server's processes. \
         Each run measures the stores in a different order.\n"
    );
    let _ = writeln!(
        out,
        "| store | concurrency | requests/s | / memory | p50 µs | p99 µs | services CPU µs/request \
         | database CPU µs/request | errors |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|"
    );
    for concurrency in DETAILS_CONCURRENCIES {
        for store in STORES {
            let of = |figure: fn(&crate::storage::Details) -> Option<f64>| {
                med(storage.iter().map(|run| figure(run.details.get(&(store, concurrency))?)))
            };
            let versus_memory = med(storage.iter().map(|run| {
                let memory = run.details.get(&(Store::Memory, concurrency))?;
                ratio(run.details.get(&(store, concurrency))?.requests_per_s, memory.requests_per_s)
            }));
            let errors: u64 = storage
                .iter()
                .filter_map(|run| run.details.get(&(store, concurrency)))
                .map(|details| details.errors)
                .sum();
            let _ = writeln!(
                out,
                "| {} | {concurrency} | {} | {} | {} | {} | {} | {} | {errors} |",
                store.name(),
                show(of(|details| Some(details.requests_per_s)), 0),
                show(versus_memory.map(|value| value * 100.0), 0) + " %",
                show(of(|details| Some(details.p50_us)), 0),
                show(of(|details| Some(details.p99_us)), 0),
                show(of(|details| Some(details.services_cpu_us)), 1),
                show(of(|details| details.database_cpu_us), 1),
            );
        }
    }
    let _ = writeln!(out);

    let _ = writeln!(out, "### Per run\n");
    let _ = writeln!(out, "| figure | run 1 / run 2 / ... |\n|---|---|");
    for store in STORES {
        let rates = per_run(storage.iter().map(|run| run.apply_rate(store)), 0);
        let _ = writeln!(out, "| {} applies, events/s | {rates} |", store.name());
    }
    for store in [Store::Sqlite, Store::Postgres] {
        let restarts = per_run(storage.iter().map(|run| run.applied.get(&store)?.restart_serving_s), 3);
        let _ = writeln!(out, "| {} restarted, SERVING after, s | {restarts} |", store.name());
    }
    for store in STORES {
        let rps = per_run(storage.iter().map(|run| Some(run.details.get(&(store, 64))?.requests_per_s)), 0);
        let _ = writeln!(out, "| {} GetMovieDetails c=64, requests/s | {rps} |", store.name());
    }
    let _ = writeln!(out);
}

/// CPU per GetMovieDetails over CPU per GetMetadata, both from the
/// concurrency-16 closed-loop runs.
fn cpu_ratio(run: &GrpcRun) -> Option<f64> {
    let (movie, metadata) = (run.saturation.get(&("movie", 16))?, run.saturation.get(&("metadata", 16))?);
    ratio(movie.server_cpu_us_per_request("movie"), metadata.server_cpu_us_per_request("metadata"))
}

fn render_grpc(out: &mut String, grpc: &[GrpcRun]) {
    let _ = writeln!(out, "## gRPC: throughput at saturation (closed loop)\n");
    let _ = writeln!(
        out,
        "Requests/s with N workers each keeping one request in flight; latency of this closed loop in µs (it slows down \
         with the server, so its tail understates; see the constant-rate table). Median of the runs; per-run values \
         below.\n"
    );
    let _ =
        writeln!(out, "| RPC | concurrency | requests/s | p50 µs | p99 µs | errors |\n|---|---:|---:|---:|---:|---:|");
    for target in TARGETS {
        for concurrency in crate::grpc::CONCURRENCIES {
            let of =
                |run: &GrpcRun| run.saturation.get(&(target, concurrency)).map(|measured| measured.summary.clone());
            let rps = med(grpc.iter().map(|run| of(run).map(|summary| summary.requests_per_s)));
            let p50 = med(grpc.iter().map(|run| of(run).map(|summary| summary.p50_us as f64)));
            let p99 = med(grpc.iter().map(|run| of(run).map(|summary| summary.p99_us as f64)));
            let errors: u64 = grpc.iter().filter_map(of).map(|summary| summary.requests - summary.ok).sum();
            let _ = writeln!(
                out,
                "| {} | {concurrency} | {} | {} | {} | {errors} |",
                describe_target(target),
                show(rps, 0),
                show(p50, 0),
                show(p99, 0)
            );
        }
    }
    let _ = writeln!(out);

    let rate = med(grpc.iter().map(|run| Some(run.constant_rate)));
    let _ = writeln!(out, "## gRPC: latency at a constant rate (open loop)\n");
    let _ = writeln!(
        out,
        "Each RPC at half of GetMovieDetails' saturation throughput of the same run (median rate {} requests/s), \
         latency measured from each request's intended send time on a fixed schedule (coordinated omission \
         accounted for), in µs; the load generator sends every {:?} what fell due meanwhile (a late request \
         is still timed from its intended time). Requests that arrive one at a time share few system calls or \
         wake-ups with each other, so each costs more CPU than in the closed loop: server CPU is per request, \
         as in the CPU table below, and machine busy is the share of both cores' time in use during the run, \
         load generator included.\n",
        show(rate, 0),
        bench::load::OpenLoop::SEND_GRANULARITY,
    );
    let _ = writeln!(
        out,
        "| RPC | achieved requests/s | p50 | p90 | p99 | p99.9 | max | errors | server CPU µs/request | machine busy |\n\
         |---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    );
    for target in TARGETS {
        let of = |run: &GrpcRun| run.at_constant_rate.get(target).cloned();
        let figure = |pick: fn(&bench::load::LoadSummary) -> f64| {
            show(med(grpc.iter().map(|run| of(run).map(|open| pick(&open.summary)))), 0)
        };
        let errors: u64 = grpc.iter().filter_map(of).map(|open| open.summary.requests - open.summary.ok).sum();
        let cpu = med(grpc.iter().map(|run| of(run).map(|open| open.server_cpu_us_per_request(target))));
        let busy = med(grpc.iter().map(|run| of(run).and_then(|open| open.machine_busy).map(|busy| busy * 100.0)));
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} | {errors} | {} | {} % |",
            describe_target(target),
            figure(|s| s.requests_per_s),
            figure(|s| s.p50_us as f64),
            figure(|s| s.p90_us as f64),
            figure(|s| s.p99_us as f64),
            figure(|s| s.p999_us as f64),
            figure(|s| s.max_us as f64),
            show(cpu, 1),
            show(busy, 0),
        );
    }
    let _ = writeln!(out);

    let _ = writeln!(out, "## gRPC: CPU per request and where it goes\n");
    let _ = writeln!(
        out,
        "CPU seconds (utime + stime from `/proc/<pid>/stat`) each process spent during a closed-loop run, over the \
         requests sent in it (warm-up included, as the CPU was). Server CPU per request counts the processes that \
         serve the RPC. Cores = CPU seconds over the run's wall time; the machine has 2, shared with the load \
         generator.\n"
    );
    let _ = writeln!(
        out,
        "| RPC | concurrency | server CPU µs/request | cores: movie | metadata | rating | constant-server | loadgen |\n\
         |---|---:|---:|---:|---:|---:|---:|---:|"
    );
    for target in TARGETS {
        for concurrency in crate::grpc::CONCURRENCIES {
            let of = |run: &GrpcRun| run.saturation.get(&(target, concurrency)).cloned();
            let per_request =
                med(grpc.iter().map(|run| of(run).map(|measured| measured.server_cpu_us_per_request(target))));
            let cores = |process: &str| {
                show(
                    med(grpc.iter().map(|run| {
                        of(run).and_then(|measured| {
                            let wall = measured.summary.elapsed_s;
                            measured.cpu_s.get(process).map(|cpu| cpu / wall.max(1e-9))
                        })
                    })),
                    2,
                )
            };
            let _ = writeln!(
                out,
                "| {} | {concurrency} | {} | {} | {} | {} | {} | {} |",
                describe_target(target),
                show(per_request, 1),
                cores("movie"),
                cores("metadata"),
                cores("rating"),
                cores("constant-server"),
                cores("loadgen")
            );
        }
    }
    let _ = writeln!(
        out,
        "\nCores are CPU seconds of the whole run (warm-up included) over the measured seconds, so they read a little \
         high; compare them with each other.\n"
    );

    let _ = writeln!(out, "### Per run\n");
    let _ = writeln!(out, "| figure | run 1 / run 2 / ... |\n|---|---|");
    let rows: [Row<GrpcRun>; 6] = [
        Row {
            label: "GetMovieDetails saturation, requests/s",
            value: |run| Some(run.saturation_rps("movie")),
            decimals: 0,
        },
        Row {
            label: "constant-server GetMetadata saturation, requests/s",
            value: |run| Some(run.saturation_rps("constant-server")),
            decimals: 0,
        },
        Row {
            label: "GetMovieDetails / constant-server saturation",
            value: |run| ratio(run.saturation_rps("movie"), run.saturation_rps("constant-server")),
            decimals: 3,
        },
        Row { label: "constant rate, requests/s", value: |run| Some(run.constant_rate), decimals: 0 },
        Row {
            label: "GetMovieDetails p99 at the constant rate, µs",
            value: |run| run.at_constant_rate.get("movie").map(|open| open.summary.p99_us as f64),
            decimals: 0,
        },
        Row { label: "CPU per GetMovieDetails / CPU per GetMetadata", value: cpu_ratio, decimals: 2 },
    ];
    for Row { label, value, decimals } in rows {
        let _ = writeln!(out, "| {label} | {} |", per_run(grpc.iter().map(value), decimals));
    }
    let _ = writeln!(out);

    if grpc.iter().any(|run| !run.h2load.is_empty()) {
        let _ = writeln!(out, "## gRPC: h2load cross-check\n");
        let _ = writeln!(
            out,
            "h2load (C, one thread) with 16 connections × 8 streams, the same gRPC-framed request for id 1, against \
             the same servers. It counts HTTP status only: a gRPC error (HTTP 200 with a non-zero `grpc-status` \
             trailer) counts as a success, so it checks throughput, not correctness.\n"
        );
        let _ = writeln!(out, "| RPC | h2load requests/s | loadgen best closed-loop requests/s |\n|---|---:|---:|");
        for target in ["movie", "constant-server"] {
            let h2 = med(grpc.iter().map(|run| run.h2load.get(target).map(|report| report.requests_per_s)));
            let ours = med(grpc.iter().map(|run| Some(run.saturation_rps(target))));
            let _ = writeln!(out, "| {} | {} | {} |", describe_target(target), show(h2, 0), show(ours, 0));
        }
        let _ = writeln!(out);
    }
}

fn render_ingest(out: &mut String, ingest: &[IngestRun]) {
    let events = ingest.first().map_or(0, |run| run.events);
    let _ = writeln!(out, "## Ingestion ({events} events, in-memory Tansu, 3 partitions)\n");
    let _ = writeln!(
        out,
        "Each run on a fresh broker. Rates are events per second; times in seconds; median of the runs.\n"
    );
    let _ = writeln!(out, "| measurement | seconds | events/s |\n|---|---:|---:|");
    let timings = [
        Timing {
            label: "bare producer (kafka-bare produce: first send to last delivery report)",
            seconds: |run| run.bare_produce_s,
        },
        Timing {
            label: "ratingingester publishing (its own summary: first send to last report)",
            seconds: |run| run.ingester_publish_s,
        },
        Timing {
            label: "ratingingester in all (reading and validating the file, then publishing)",
            seconds: |run| run.ingester_wall_s,
        },
        Timing {
            label: "rating service applying (first publish to the probe average read)",
            seconds: |run| run.apply_s,
        },
        Timing { label: "bare consumer reading `ratings` from the beginning", seconds: |run| run.bare_consume_s },
        Timing {
            label: "fresh rating instance replaying `ratings` (spawn to the probe average read)",
            seconds: |run| run.replay_s,
        },
    ];
    for Timing { label, seconds } in timings {
        let time = med(ingest.iter().map(|run| Some(seconds(run))));
        let rate = med(ingest.iter().map(|run| Some(run.rate(seconds(run)))));
        let _ = writeln!(out, "| {label} | {} | {} |", show(time, 2), show(rate, 0));
    }
    let _ = writeln!(out);
    let _ = writeln!(out, "| resources | median |\n|---|---:|");
    let rows: [Row<IngestRun>; 6] = [
        Row {
            label: "VmRSS of the applying rating instance, MB",
            value: |run| Some(megabytes(run.apply_rss_bytes)),
            decimals: 0,
        },
        Row {
            label: "VmRSS of the replaying rating instance, MB",
            value: |run| Some(megabytes(run.replay_rss_bytes)),
            decimals: 0,
        },
        Row {
            label: "rating CPU while applying, cores",
            value: |run| ratio(run.apply_rating_cpu_s, run.apply_s),
            decimals: 2,
        },
        Row {
            label: "rating CPU while replaying, cores",
            value: |run| ratio(run.replay_rating_cpu_s, run.replay_s),
            decimals: 2,
        },
        Row {
            label: "broker CPU while replaying, cores",
            value: |run| ratio(run.replay_broker_cpu_s, run.replay_s),
            decimals: 2,
        },
        Row {
            label: "broker CPU while the bare consumer reads, cores",
            value: |run| ratio(run.bare_consume_broker_cpu_s, run.bare_consume_s),
            decimals: 2,
        },
    ];
    for Row { label, value, decimals } in rows {
        let _ = writeln!(out, "| {label} | {} |", show(med(ingest.iter().map(value)), decimals));
    }
    let _ = writeln!(out);

    let _ = writeln!(out, "### Per run\n");
    let _ = writeln!(out, "| figure | run 1 / run 2 / ... |\n|---|---|");
    let rows: [Row<IngestRun>; 5] = [
        Row {
            label: "apply rate / bare consumer rate",
            value: |run| ratio(run.bare_consume_s, run.apply_s),
            decimals: 3,
        },
        Row {
            label: "replay time / bare read time",
            value: |run| ratio(run.replay_s, run.bare_consume_s),
            decimals: 3,
        },
        Row {
            label: "ratingingester rate / bare producer rate",
            value: |run| ratio(run.bare_produce_s, run.ingester_publish_s),
            decimals: 3,
        },
        Row { label: "bare consumer, s", value: |run| Some(run.bare_consume_s), decimals: 2 },
        Row { label: "replay, s", value: |run| Some(run.replay_s), decimals: 2 },
    ];
    for Row { label, value, decimals } in rows {
        let _ = writeln!(out, "| {label} | {} |", per_run(ingest.iter().map(value), decimals));
    }
    let _ = writeln!(out);
}

fn megabytes(bytes: u64) -> f64 {
    bytes as f64 / (1 << 20) as f64
}

const METHOD: &str = "\
- **Load generator** (`loadgen`): tonic client, requests spread over the HTTP/2 connections, ids drawn uniformly \
from the seeded movies. Closed loop for saturation (requests/s = requests recorded after the warm-up over the time \
from the end of the warm-up to the last answer). Open loop for latency: request k is due at `start + k/rate`; on \
one thread, a task sleeping on a kernel timer sends what fell due at most every `--send-granularity`, and each \
latency runs from the due time, so a stall is charged to every request due during it. Latencies are recorded in \
an HDR histogram (3 significant digits); failed requests are counted by status code and kept out of the \
latencies.
- **Everything shares 2 cores**: the load generator, the services and the broker. Saturation figures are those of \
the whole box, not of a service alone; the constant server is measured the same way, so the ratio is fair, but \
absolute numbers on a bigger machine (or with the client elsewhere) will differ. The CPU-per-request figures do \
not depend on that sharing. Other work on the machine during the run (builds) adds noise: the medians and the \
per-run values show how much.
- **Ingestion probe**: `gen-events` ends the file with 64 puts on record `bench-probe` (user 0 rates 5, the others 1); \
the average is exactly 1.0625 only once all 64 are applied, and their keys cover the 3 partitions, each applied \
in order, so reading 1.0625 means everything before is applied too. The harness polls GetAggregatedRating every \
20 ms.
- **Apply rate** runs from ratingingester's first publish (its exit time minus its own publishing time) to the \
probe, so it cannot beat the publishing rate: it measures whether the service keeps up with a live stream. The \
**replay** measures the service alone against a topic that is already full, from process spawn (start-up, topic \
check, assignment included) to the probe; the bare consumer's time includes its connection and metadata fetch \
likewise.
- **Bare producer** uses ratingingester's producer settings (idempotent, acks=all, linger 5 ms, 10,000-message \
batches, lz4, murmur2_random partitioner), keyed by line number; the file is read before the clock starts. \
ratingingester's figure is its own publishing time, after its first pass has validated the file; it includes \
the second pass, which reads the file again alongside the sending (the \"in all\" row includes the first pass too).
- **RSS** is VmRSS from `/proc/<pid>/status` once the probe is read.
- **Storage**: the events are puts only (`gen-events --delete-share 0`), so each store ends up holding about as \
many ratings as there are events; the PostgreSQL row count is read with `psql`. Each store's apply time runs from \
spawning a fresh instance (empty SQLite file, new PostgreSQL database) against the full topic to the probe. The \
restart is a SIGTERM then a new process on the same store: SERVING is polled every 10 ms, then the probe average \
every 1 ms. The PostgreSQL cluster runs with `fsync=off` (a throwaway cluster: it measures the suite's work, not \
the disk); the database CPU is that of the postmaster and every process it forked. The fresh instance's RSS, read \
right after it applied the whole topic, is mostly what the Kafka client fetched ahead while it caught up (bounded \
by the consumer's fetch settings, not by the ratings held); the restarted instance's RSS is the steady state of an \
instance whose ratings are in the database.";

/// How to run the comparison with the book's Go suite, which `bench.sh` does not run.
pub const COMPARE_GO_HOW_TO: &str = "The book's Go suite against this one (not run by `scripts/bench.sh`), \
against a directory of Go binaries you provide:\n\n\
```sh\n\
scripts/compare-go.sh DIR                     # 3 rounds, 2 s warm-up + 10 s per h2load run, then the sweep (about 14 minutes)\n\
COMPARE_GO_ROUNDS=1 COMPARE_GO_DURATION=2s COMPARE_GO_WARMUP=1s COMPARE_GO_SWEEP_DURATION=2s scripts/compare-go.sh DIR   # smoke test\n\
scripts/compare-go.sh DIR --rust-flag=--worker-threads=1 --go-env=GOMAXPROCS=1   # one thread per process, both sides\n\
```\n\n\
This repository carries neither the book's code nor a recipe to build it. DIR/bin must hold `metadata` and \
`rating` (each taking `--listen HOST:PORT`, serving `MetadataService` and `RatingService` of \
`proto/movie.proto`, seeded through `PutMetadata` and `PutRating`), `movie` (`--listen`, `--metadata-addr`, \
`--rating-addr`; `MovieService/GetMovieDetails` with server reflection, one pooled connection per upstream), \
`movie-per-call` (the same flags, a new upstream connection per call; not needed with \
`COMPARE_GO_NO_PER_CALL=1`) and optionally `toolchain.txt` (lines naming the Go toolchain, quoted in the \
report); `scripts/compare-go.sh --help` says the same. \
`compare-go.sh` starts both suites and `constant-server`, seeds the same movies into both, checks that \
both movie services answer the same bytes, runs the same `h2load` lines (`-c16 -m8`, `-c64 -m16`, \
`-c1 -m1`) against each in alternating rounds, checks every run by its bytes (h2load counts a gRPC error \
as a success), then sweeps GetMovieDetails in open loop at the same rates against this suite and the pooled \
Go suite (10 % to 100 % of this suite's closed-loop saturation), and prints a markdown report with the \
date, the commit and the Go toolchain. It records its figures in `docs/benchmarks/figures.json` and draws \
the charts there, which this file shows from its next regeneration. Settings: `COMPARE_GO_ROUNDS`, \
`COMPARE_GO_DURATION`, `COMPARE_GO_WARMUP`, `COMPARE_GO_LOADS`, `COMPARE_GO_PER_CALL_LOADS`, \
`COMPARE_GO_NO_PER_CALL`, `COMPARE_GO_SWEEP_DURATION`, `COMPARE_GO_NO_SWEEP`; \
`target/release/bench-run compare-go --help`.\n";

/// The heading of the hand-off section: from this line to the end of the
/// file, BENCHMARKS.md holds the A/B entries, which a regenerated report
/// keeps.
pub const AB_HEADING: &str = "## Changes, measured A/B";

const AB_INTRO: &str = "One entry per performance change, appended by `scripts/bench-ab.sh`: the base (A) and the \
candidate (B) measured in one run, in alternating rounds (A,B then B,A, ...) so that drift of the machine cancels; \
`scripts/bench.sh` keeps this section as it is when it rewrites the rest of the file.";

/// Where the line `## Changes, measured A/B` starts in `document`, if it
/// has one.
fn ab_heading_start(document: &str) -> Option<usize> {
    let mut start = 0;
    for line in document.split_inclusive('\n') {
        if line.trim_end() == AB_HEADING {
            return Some(start);
        }
        start += line.len();
    }
    None
}

/// The A/B section of `existing` (its heading to the end of the file), or
/// a new one with its heading and introduction when there is none.
pub fn ab_section(existing: Option<&str>) -> String {
    match existing.and_then(|document| Some(&document[ab_heading_start(document)?..])) {
        Some(section) => {
            let mut section = section.trim_end().to_owned();
            section.push('\n');
            section
        }
        None => format!("{AB_HEADING}\n\n{AB_INTRO}\n"),
    }
}

/// A freshly rendered `report` followed by the A/B section of the file it
/// replaces (`existing`), unchanged.
pub fn with_ab_section(report: &str, existing: Option<&str>) -> String {
    let report = match ab_heading_start(report) {
        Some(start) => &report[..start],
        None => report,
    };
    format!("{}\n\n{}", report.trim_end(), ab_section(existing))
}

/// `existing` (the current BENCHMARKS.md, if any) with `entry` appended at
/// the end of its A/B section, the section created at the end of the file
/// when it is missing.
pub fn append_ab_entry(existing: Option<&str>, entry: &str) -> String {
    let existing = existing.unwrap_or_default();
    let document = if ab_heading_start(existing).is_some() {
        existing.trim_end().to_owned()
    } else if existing.trim().is_empty() {
        ab_section(None).trim_end().to_owned()
    } else {
        format!("{}\n\n{}", existing.trim_end(), ab_section(None).trim_end())
    };
    format!("{document}\n\n{}\n", entry.trim())
}

#[cfg(test)]
mod tests {
    use super::*;

    const OLD: &str = "# Benchmarks\n\nold figures\n\n## Method\n\nold method\n\n## Changes, measured A/B\n\nintro\n\n\
                       ### faster parsing\n\n| figure | A |\n|---|---|\n| x | 1 |\n";

    fn settings() -> Settings {
        Settings {
            quick: false,
            runs: 3,
            events: 1_000_000,
            duration: Duration::from_secs(10),
            warmup: Duration::from_secs(2),
            connections: 2,
            movies: 1000,
            phases: Vec::new(),
        }
    }

    fn machine() -> Machine {
        Machine {
            cpu: "AMD EPYC".into(),
            cores: 2,
            memory: "23.5 GiB".into(),
            kernel: "6.18".into(),
            rustc: "rustc 1.95.0".into(),
            date: "2026-12-07 01:00 UTC".into(),
            commit: "abc1234".into(),
        }
    }

    #[test]
    fn the_report_opens_with_the_targets_and_the_charts_and_gives_the_sweep_and_its_knee() {
        use bench::sweep::{Curve, Step};
        let step = |offered_rps: f64, p99_us: u64| Step {
            offered_rps,
            achieved_rps: offered_rps,
            p50_us: 200,
            p90_us: 400,
            p99_us,
            p999_us: p99_us * 2,
            errors: 0,
            machine_busy: Some(0.5),
        };
        let sweep = Sweep {
            saturation_rps: 40_000.0,
            curves: vec![Curve {
                name: "this suite".into(),
                steps: vec![step(4000.0, 500), step(28000.0, 1500), step(32000.0, 9000)],
            }],
        };
        let charts = [(bench::charts::LATENCY, PathBuf::from("docs/benchmarks/latency-vs-load.svg"))];
        let measured = Measured { grpc: &[], sweep: Some(&sweep), ingest: &[], storage: &[] };
        let out = render(&settings(), &machine(), &measured, &charts, Duration::from_secs(1500));
        let at = |heading: &str| out.find(heading).unwrap_or_else(|| panic!("{heading} missing:\n{out}"));
        assert!(at("## Targets") < at("## Charts") && at("## Charts") < at("## How to run"));
        assert!(at("## How to run") < at("## gRPC: latency against offered load (open-loop sweep)"));
        assert!(out.contains(
            "![GetMovieDetails latency percentiles against offered load (open loop)](docs/benchmarks/latency-vs-load.svg)"
        ));
        assert!(out.contains("| 28000 | 70.0 % | 28000 | 200 | 400 | 1500 | 3000 | 0 | 50 % |\n"), "{out}");
        let knee = "saturation 40000 requests/s): this suite at 28000 requests/s (70 % of saturation).";
        assert_eq!(out.matches(knee).count(), 2, "{out}");
    }

    #[test]
    fn a_regenerated_report_keeps_the_ab_section_word_for_word() {
        let new = "# Benchmarks\n\nnew figures\n\n## Method\n\nnew method\n";
        let written = with_ab_section(new, Some(OLD));
        assert_eq!(
            written,
            "# Benchmarks\n\nnew figures\n\n## Method\n\nnew method\n\n## Changes, measured A/B\n\nintro\n\n\
             ### faster parsing\n\n| figure | A |\n|---|---|\n| x | 1 |\n"
        );
        assert!(!written.contains("old"));
        // Regenerating again changes nothing more.
        assert_eq!(with_ab_section(new, Some(&written)), written);
    }

    #[test]
    fn without_an_ab_section_a_report_gets_the_heading_and_its_introduction() {
        let new = "# Benchmarks\n\n## Method\n\nmethod\n";
        for existing in [None, Some("# Benchmarks\n\nno section here\n")] {
            let written = with_ab_section(new, existing);
            assert_eq!(written, format!("# Benchmarks\n\n## Method\n\nmethod\n\n{AB_HEADING}\n\n{AB_INTRO}\n"));
        }
    }

    #[test]
    fn the_heading_counts_only_as_a_whole_line() {
        let existing = "# Benchmarks\n\nsee ## Changes, measured A/B below\n## Changes, measured A/B  \n\nkept\n";
        assert_eq!(ab_section(Some(existing)), "## Changes, measured A/B  \n\nkept\n");
        assert_eq!(ab_section(Some("## Changes, measured A/B, or not\n")), format!("{AB_HEADING}\n\n{AB_INTRO}\n"));
    }

    #[test]
    fn an_entry_goes_at_the_end_of_the_section() {
        let written = append_ab_entry(Some(OLD), "### smaller frames\n\n| figure | A |\n");
        assert_eq!(written, format!("{}\n### smaller frames\n\n| figure | A |\n", OLD));
        let twice = append_ab_entry(Some(&written), "\n### third\n\ntext\n\n\n");
        assert!(twice.starts_with(&written));
        assert!(twice.ends_with("| figure | A |\n\n### third\n\ntext\n"));
    }

    #[test]
    fn an_entry_creates_the_section_when_it_is_missing() {
        let written = append_ab_entry(Some("# Benchmarks\n\n## Method\n\nmethod\n\n"), "### first\n\nrow\n");
        assert_eq!(
            written,
            format!("# Benchmarks\n\n## Method\n\nmethod\n\n{AB_HEADING}\n\n{AB_INTRO}\n\n### first\n\nrow\n")
        );
        assert_eq!(append_ab_entry(None, "### first\n"), format!("{AB_HEADING}\n\n{AB_INTRO}\n\n### first\n"));
    }

    #[test]
    fn entries_appended_then_a_regenerated_report_keep_every_entry_in_order() {
        let first = append_ab_entry(Some("# Benchmarks\n\nold\n"), "### one\n\n1\n");
        let second = append_ab_entry(Some(&first), "### two\n\n2\n");
        let regenerated = with_ab_section("# Benchmarks\n\nnew\n", Some(&second));
        assert_eq!(
            regenerated,
            format!("# Benchmarks\n\nnew\n\n{AB_HEADING}\n\n{AB_INTRO}\n\n### one\n\n1\n\n### two\n\n2\n")
        );
    }
}
