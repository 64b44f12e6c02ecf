//! The storage measurements, one run on a fresh in-memory broker and fresh
//! databases (a throwaway PostgreSQL cluster for the whole benchmark):
//!
//! - each store (memory, SQLite, PostgreSQL) applying a full `ratings`
//!   topic from scratch, against the bare consumer reading it: the apply
//!   rate, the CPU of the rating instance and of the database server, and
//!   the resident memory once everything is applied;
//! - the SQL stores restarted on what they hold: spawn to SERVING and to the
//!   first correct answer, without replay;
//! - `GetMovieDetails` with metadata and rating on each store (rating
//!   without Kafka, seeded through the RPCs), closed loop, with the CPU per
//!   request of the services and of the database server.
use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use anyhow::Context as _;
use bench::{
    events::{PROBE_AVERAGE, PROBE_RECORD},
    procfs,
    rpc::{await_average, await_serving},
};
use testbed::{ChildProcess, postgres::Postgres};

use bench::processes::{run_tool, start_service, stop_all};

use crate::{Context, grpc, ingest::ticks_to_s};

/// Where a service keeps its data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Store {
    Memory,
    Sqlite,
    Postgres,
}

pub const STORES: [Store; 3] = [Store::Memory, Store::Sqlite, Store::Postgres];

/// The closed-loop concurrencies of `GetMovieDetails` on each store.
pub const DETAILS_CONCURRENCIES: [usize; 2] = [1, 64];

impl Store {
    pub fn name(self) -> &'static str {
        match self {
            Store::Memory => "memory",
            Store::Sqlite => "SQLite",
            Store::Postgres => "PostgreSQL",
        }
    }
}

/// One store applying the whole topic, then (SQL stores) restarted.
#[derive(Debug, Clone, Default)]
pub struct Applied {
    /// From spawning a fresh instance to its SERVING (memory and SQLite:
    /// once caught up with the topic; PostgreSQL: once migrated).
    pub first_serving_s: f64,
    /// From spawning a fresh instance to the probe average read there.
    pub apply_s: f64,
    pub rating_cpu_s: f64,
    /// CPU of the PostgreSQL server's processes over the same time.
    pub database_cpu_s: Option<f64>,
    pub rss_bytes: u64,
    /// The same store, restarted (SIGTERM, then a new process): spawn to
    /// SERVING, and spawn to the probe average read (its first answer).
    pub restart_serving_s: Option<f64>,
    pub restart_answer_s: Option<f64>,
    pub restart_rss_bytes: Option<u64>,
    /// Rows of the `ratings` table once applied (PostgreSQL).
    pub ratings: Option<u64>,
}

/// `GetMovieDetails` with metadata and rating on one store, at one
/// concurrency.
#[derive(Debug, Clone, Default)]
pub struct Details {
    pub requests_per_s: f64,
    pub p50_us: f64,
    pub p99_us: f64,
    /// CPU of metadata, rating and movie per request sent.
    pub services_cpu_us: f64,
    /// CPU of the PostgreSQL server per request sent.
    pub database_cpu_us: Option<f64>,
    pub errors: u64,
}

#[derive(Debug, Clone, Default)]
pub struct StorageRun {
    pub events: u64,
    pub bare_consume_s: f64,
    pub applied: BTreeMap<Store, Applied>,
    pub details: BTreeMap<(Store, usize), Details>,
}

impl StorageRun {
    pub fn apply_rate(&self, store: Store) -> Option<f64> {
        self.applied.get(&store).map(|applied| self.events as f64 / applied.apply_s)
    }
}

/// The medians of the storage runs the ingestion chart is drawn from:
/// each store's apply rate and the bare consumer's; none without runs.
pub fn ingestion_figures(storage: &[StorageRun]) -> Option<bench::charts::Ingestion> {
    let bare: Vec<f64> = storage.iter().map(|run| run.events as f64 / run.bare_consume_s).collect();
    let bare_consumer_eps = bench::stats::median(&bare)?;
    let stores = STORES
        .iter()
        .filter_map(|&store| {
            let rates: Vec<f64> = storage.iter().filter_map(|run| run.apply_rate(store)).collect();
            Some(bench::charts::Bar { name: store.name().to_owned(), value: bench::stats::median(&rates)? })
        })
        .collect();
    Some(bench::charts::Ingestion { bare_consumer_eps, stores })
}

/// Where the stores of one run live: SQLite files in the work directory,
/// fresh databases in the shared PostgreSQL cluster.
struct Places<'a> {
    postgres: &'a Postgres,
    work_dir: &'a Path,
    run: usize,
}

impl Places<'_> {
    /// The `--database-url` of a new, empty store, and the PostgreSQL
    /// database's name.
    fn new_store(&self, store: Store, owner: &str) -> anyhow::Result<Option<(String, Option<String>)>> {
        Ok(match store {
            Store::Memory => None,
            Store::Sqlite => {
                let file = self.work_dir.join(format!("{owner}-run{}.db", self.run));
                remove_sqlite(&file)?;
                Some((format!("sqlite://{}", file.display()), None))
            }
            Store::Postgres => {
                let url = self.postgres.create_database()?;
                let name = url.rsplit('/').next().unwrap_or_default().to_owned();
                Some((url, Some(name)))
            }
        })
    }

    /// CPU ticks of the PostgreSQL server so far, for a store there.
    fn database_cpu_ticks(&self, store: Store) -> Option<u64> {
        if store != Store::Postgres {
            return None;
        }
        procfs::tree_cpu_ticks(self.postgres.server_pid()?).ok()
    }
}

/// Removes a SQLite database and its write-ahead log files, if there.
fn remove_sqlite(file: &Path) -> anyhow::Result<()> {
    for suffix in ["", "-wal", "-shm"] {
        let path = PathBuf::from(format!("{}{suffix}", file.display()));
        match std::fs::remove_file(&path) {
            Err(error) if error.kind() != std::io::ErrorKind::NotFound => {
                return Err(error).with_context(|| format!("remove {}", path.display()));
            }
            _ => {}
        }
    }
    Ok(())
}

fn start(
    context: &Context,
    name: &str,
    program: &str,
    args: Vec<String>,
    work_dir: &Path,
) -> anyhow::Result<(ChildProcess, String)> {
    start_service(name, &context.binary(program), &args, &[], work_dir, work_dir.join(format!("{name}.log")))
}

/// One run: `events_file` (holding `events` lines) published on a fresh
/// broker, then applied by each store; then `GetMovieDetails` on each store.
pub fn run(
    context: &Context,
    postgres: &Postgres,
    events_file: &Path,
    events: u64,
    work_dir: &Path,
    run: usize,
) -> anyhow::Result<StorageRun> {
    let mut measured = StorageRun { events, ..StorageRun::default() };
    let places = Places { postgres, work_dir, run };
    let slow = Duration::from_secs(600);
    let broker = context.start_broker(work_dir)?;
    let brokers = broker.address();

    // A first rating instance creates the topics; it is stopped before anything is published.
    let (mut creator, address) =
        start(context, "rating-topics", "rating", vec!["--kafka-brokers".into(), brokers.clone()], work_dir)?;
    context.runtime.block_on(await_serving(&address, Instant::now() + Duration::from_secs(60)))?;
    creator.stop(Duration::from_secs(10))?;

    let ingester_args = bench::processes::ingester_args(&brokers, events_file);
    let published = run_tool(&context.binary("ratingingester"), &ingester_args, slow)?;
    bench::processes::sent_all(&published, events)?;
    measured.bare_consume_s = crate::ingest::bare_consume(context, &brokers, events, slow)?;
    eprintln!(
        "  bare consumer     {:>9.0} events/s ({:.2}s)",
        events as f64 / measured.bare_consume_s,
        measured.bare_consume_s
    );

    for store in STORES {
        let applied = apply(context, &places, store, &brokers, slow)?;
        eprintln!(
            "  {:<10} applies {:>9.0} events/s ({:.2}s; SERVING after {:.2}s; RSS {} MB){}",
            store.name(),
            events as f64 / applied.apply_s,
            applied.apply_s,
            applied.first_serving_s,
            applied.rss_bytes / (1 << 20),
            match (applied.restart_serving_s, applied.restart_answer_s) {
                (Some(serving), Some(answer)) =>
                    format!("; restarted: SERVING after {serving:.3}s, answer {answer:.3}s"),
                _ => String::new(),
            }
        );
        measured.applied.insert(store, applied);
    }
    broker.stop(Duration::from_secs(10))?;

    // Each run starts with another store, so none is always measured first.
    for offset in 0..STORES.len() {
        let store = STORES[(run + offset) % STORES.len()];
        for (concurrency, details) in details(context, &places, store)? {
            eprintln!(
                "  {:<10} GetMovieDetails c={concurrency:<3} {:>8.0} req/s  p99 {:>7.0}µs  services {:>6.1}µs/req{}  errors {}",
                store.name(),
                details.requests_per_s,
                details.p99_us,
                details.services_cpu_us,
                details.database_cpu_us.map_or_else(String::new, |cpu| format!("  database {cpu:.1}µs/req")),
                details.errors
            );
            measured.details.insert((store, concurrency), details);
        }
    }
    Ok(measured)
}

/// A fresh rating instance on `store` applying the whole topic, then, for
/// a SQL store, the same store restarted.
fn apply(context: &Context, places: &Places, store: Store, brokers: &str, slow: Duration) -> anyhow::Result<Applied> {
    let mut applied = Applied::default();
    let created = places.new_store(store, "rating-apply")?;
    let mut args = vec!["--kafka-brokers".to_owned(), brokers.to_owned()];
    if let Some((url, _)) = &created {
        args.extend(["--database-url".to_owned(), url.clone()]);
    }
    let name = format!("rating-{}-run{}", store.name().to_lowercase(), places.run);
    let database_before = places.database_cpu_ticks(store);
    let spawned = Instant::now();
    let (mut instance, address) = start(context, &name, "rating", args.clone(), places.work_dir)?;
    context.runtime.block_on(await_serving(&address, spawned + slow))?;
    applied.first_serving_s = spawned.elapsed().as_secs_f64();
    let probed = context.runtime.block_on(await_average(
        &address,
        PROBE_RECORD,
        PROBE_AVERAGE,
        Duration::from_millis(20),
        spawned + slow,
    ))?;
    applied.apply_s = (probed - spawned).as_secs_f64();
    applied.rating_cpu_s = ticks_to_s(procfs::cpu_ticks(instance.pid())?);
    applied.database_cpu_s = database_before
        .zip(places.database_cpu_ticks(store))
        .map(|(before, after)| ticks_to_s(after.saturating_sub(before)));
    applied.rss_bytes = procfs::resident_bytes(instance.pid())?;
    if let Some((_, Some(database))) = &created {
        let count = places.postgres.execute(database, "SELECT count(*) FROM ratings")?;
        applied.ratings = Some(count.trim().parse().with_context(|| format!("a row count, not {count:?}"))?);
    }
    instance.stop(Duration::from_secs(10))?;
    if created.is_none() {
        // In memory a restart is a replay: the fresh instance's figures are its.
        return Ok(applied);
    }

    let spawned = Instant::now();
    let (mut restarted, address) = start(context, &format!("{name}-restarted"), "rating", args, places.work_dir)?;
    context.runtime.block_on(await_serving(&address, spawned + Duration::from_secs(60)))?;
    applied.restart_serving_s = Some(spawned.elapsed().as_secs_f64());
    let answered = context.runtime.block_on(await_average(
        &address,
        PROBE_RECORD,
        PROBE_AVERAGE,
        Duration::from_millis(1),
        spawned + Duration::from_secs(60),
    ))?;
    applied.restart_answer_s = Some((answered - spawned).as_secs_f64());
    applied.restart_rss_bytes = Some(procfs::resident_bytes(restarted.pid())?);
    restarted.stop(Duration::from_secs(10))?;
    Ok(applied)
}

/// Metadata, rating (without Kafka) and movie on `store`, seeded, then
/// `GetMovieDetails` in closed loop at each concurrency.
fn details(context: &Context, places: &Places, store: Store) -> anyhow::Result<Vec<(usize, Details)>> {
    let tag = format!("{}-run{}", store.name().to_lowercase(), places.run);
    let with_store = |owner: &str| -> anyhow::Result<Vec<String>> {
        Ok(match places.new_store(store, &format!("{owner}-details"))? {
            Some((url, _)) => vec!["--database-url".to_owned(), url],
            None => Vec::new(),
        })
    };
    let (metadata, metadata_address) =
        start(context, &format!("metadata-{tag}"), "metadata", with_store("metadata")?, places.work_dir)?;
    let (rating, rating_address) =
        start(context, &format!("rating-details-{tag}"), "rating", with_store("rating")?, places.work_dir)?;
    let (movie, movie_address) = start(
        context,
        &format!("movie-{tag}"),
        "movie",
        vec!["--metadata-addrs".into(), metadata_address.clone(), "--rating-addrs".into(), rating_address.clone()],
        places.work_dir,
    )?;
    let result = (|| {
        let deadline = Instant::now() + Duration::from_secs(60);
        for address in [&metadata_address, &rating_address, &movie_address] {
            context.runtime.block_on(await_serving(address, deadline))?;
        }
        context.runtime.block_on(bench::rpc::seed(&metadata_address, &rating_address, context.settings.movies))?;
        let all = [("metadata", metadata.pid()), ("rating", rating.pid()), ("movie", movie.pid())];
        let target = grpc::Target { name: "movie", rpc: bench::rpc::Rpc::GetMovieDetails, address: movie_address };
        let mut figures = Vec::new();
        for concurrency in DETAILS_CONCURRENCIES {
            let database_before = places.database_cpu_ticks(store);
            let measured = grpc::closed_loop(context, &target, concurrency, &all)?;
            let database_cpu_s = database_before
                .zip(places.database_cpu_ticks(store))
                .map(|(before, after)| ticks_to_s(after.saturating_sub(before)));
            let summary = &measured.summary;
            let sent = summary.all_requests.max(1) as f64;
            figures.push((
                concurrency,
                Details {
                    requests_per_s: summary.requests_per_s,
                    p50_us: summary.p50_us as f64,
                    p99_us: summary.p99_us as f64,
                    services_cpu_us: measured.server_cpu_us_per_request("movie"),
                    database_cpu_us: database_cpu_s.map(|cpu| cpu * 1e6 / sent),
                    errors: summary.requests - summary.ok,
                },
            ));
        }
        anyhow::Ok(figures)
    })();
    let stopped = stop_all([movie, rating, metadata]);
    let figures = result?;
    stopped?;
    Ok(figures)
}
