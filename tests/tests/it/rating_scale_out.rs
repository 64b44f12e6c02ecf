//! Rating ingestion scaled out, as real processes on one PostgreSQL store
//! and a real broker: ingest replicas (`--role ingest`) split a six-partition
//! topic in one consumer group, keep splitting it while one is SIGKILLed
//! and another added mid-file, and together apply the file exactly; a
//! `--role serve` replica answers from the same store, its writes waiting
//! until an ingest replica applied them. Each replica reports the lag of the
//! partitions it holds, only those, and the group's committed offsets reach
//! the end of the topic, as Kafka's own tools read them.
use std::{
    collections::{BTreeMap, BTreeSet},
    net::SocketAddr,
    time::{Duration, Instant},
};

use e2e::{
    broker::Broker,
    free_port,
    postgres::Postgres,
    process::ServiceProcess,
    rating::{Workload, applied_at_stop, average, ingest, put, stored_position, stored_totals},
    scrape::{metric, scrape},
    wait_until,
};

const WAIT: Duration = Duration::from_secs(90);
const PARTITIONS: i32 = 6;
const TOPIC: &str = "ratings";
const GROUP: &str = "rating";

/// One replica of the rating service and where it serves metrics.
struct Replica {
    name: &'static str,
    process: ServiceProcess,
    metrics: SocketAddr,
}

impl Replica {
    fn start(name: &'static str, role: &str, broker: &Broker, database: &str) -> Self {
        let metrics = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let (metrics_address, brokers) = (metrics.to_string(), broker.address());
        let partitions = PARTITIONS.to_string();
        let envs = [
            ("ROLE", role),
            ("KAFKA_BROKERS", brokers.as_str()),
            ("DATABASE_URL", database),
            ("RATINGS_TOPIC_PARTITIONS", partitions.as_str()),
            ("METRICS_ADDR", metrics_address.as_str()),
        ];
        let process = ServiceProcess::start("rating", &["--write-timeout", "20s"], &envs);
        process.wait_until_serving(WAIT);
        Self { name, process, metrics }
    }

    /// The partitions this replica reports a lag for.
    fn lag_partitions(&self) -> BTreeSet<i32> {
        scrape(self.metrics)
            .lines()
            .filter(|line| line.starts_with("rating_consumer_lag{"))
            .map(|line| {
                let (_, after) = line.split_once("partition=\"").expect("a partition label");
                after.split('"').next().and_then(|id| id.parse().ok()).expect("a partition number")
            })
            .collect()
    }

    /// Events this replica has applied (puts and deletes).
    fn applied(&self) -> u64 {
        metric(self.metrics, "rating_events_applied_total", "") as u64
    }

    /// How many times its log says it was given partitions.
    fn assignments(&self) -> usize {
        self.process.log().matches("partitions assigned").count()
    }
}

/// Whether the replicas' lag series are a split of the topic: each holds
/// some partitions, no partition is held twice, every one is held.
fn split(replicas: &[&Replica]) -> Option<Vec<BTreeSet<i32>>> {
    let held: Vec<BTreeSet<i32>> = replicas.iter().map(|replica| replica.lag_partitions()).collect();
    let total: usize = held.iter().map(BTreeSet::len).sum();
    let union: BTreeSet<i32> = held.iter().flatten().copied().collect();
    let is_split = held.iter().all(|partitions| !partitions.is_empty())
        && total == union.len()
        && union == (0..PARTITIONS).collect();
    is_split.then_some(held)
}

fn wait_for_split(what: &str, replicas: &[&Replica]) -> Vec<BTreeSet<i32>> {
    let mut last = None;
    wait_until(what, WAIT, || {
        last = split(replicas);
        last.is_some()
    });
    last.expect("a split")
}

#[test]
fn ingest_replicas_split_the_topic_and_apply_it_exactly_through_a_kill_and_an_addition() {
    let broker = Broker::start_in_memory();
    let postgres = Postgres::start();
    let url = postgres.create_database();
    let workload = Workload::new(60, 100, 5);
    let total = workload.events.len() as i64;
    let chunks: Vec<&[serde_json::Value]> = workload.events.chunks(workload.events.len().div_ceil(3)).collect();
    let dir = tempfile::tempdir().unwrap();

    let a = Replica::start("a", "ingest", &broker, &url);
    let b = Replica::start("b", "ingest", &broker, &url);
    let c = Replica::start("c", "ingest", &broker, &url);
    let serve = Replica::start("serve", "serve", &broker, &url);
    let first_split = wait_for_split("three ingest replicas split the six partitions", &[&a, &b, &c]);
    assert!(serve.lag_partitions().is_empty(), "a serving replica consumes nothing");

    ingest(&broker, &dir.path().join("1.json"), chunks[0]);
    wait_until("each ingest replica applies a share", WAIT, || {
        [&a, &b, &c].iter().all(|replica| replica.applied() > 0)
    });
    let applied_by_a = a.applied();

    // SIGKILL of the first replica to join (the group's leader, the slow
    // case): it never leaves the group; its partitions wait for the group's
    // session timeout, then move to b and c, from the positions stored in
    // the database.
    let (b_before, c_before) = (b.assignments(), c.assignments());
    let killed = Instant::now();
    a.process.crash();
    ingest(&broker, &dir.path().join("2.json"), chunks[1]);
    wait_until("b and c take a's partitions", WAIT, || b.assignments() > b_before || c.assignments() > c_before);
    let takeover_after_kill = killed.elapsed();
    let after_kill = wait_for_split("b and c split the six partitions", &[&b, &c]);

    let d_started = Instant::now();
    let d = Replica::start("d", "ingest", &broker, &url);
    wait_until("d is given partitions", WAIT, || d.assignments() > 0);
    let d_assigned_after = d_started.elapsed();
    ingest(&broker, &dir.path().join("3.json"), chunks[2]);
    let after_addition = wait_for_split("b, c and d split the six partitions", &[&b, &c, &d]);

    wait_until("the whole file is applied", WAIT, || stored_position(&url) == total);
    assert_eq!(stored_totals(&url), workload.totals, "every sum and count exact: nothing lost, nothing counted twice");
    for record in ["m0", "m17", "m59"] {
        assert_eq!(average(&serve.process, record), workload.expected_average(record), "{record}");
    }
    // Read your writes through a serving replica: the call returns once an
    // ingest replica has applied the event to the shared store.
    put(&serve.process, "written", "w1", 4);
    assert_eq!(average(&serve.process, "written"), Some(4.0));

    // Kafka's view: the group's committed offsets reach the end of every
    // partition once everything is applied.
    let ends = broker.ends(TOPIC);
    assert_eq!(ends.len(), PARTITIONS as usize);
    let mut committed = BTreeMap::new();
    wait_until("the group's committed offsets reach the topic's end", WAIT, || {
        committed = broker.committed(GROUP, TOPIC);
        committed == ends
    });

    // A replica stopped with SIGTERM leaves the group before it exits: its
    // partitions move at once, not after the session timeout.
    let (c_before, d_before) = (c.assignments(), d.assignments());
    let left = Instant::now();
    let (status, b_log) = b.process.terminate_with_log(WAIT);
    assert!(status.success(), "{b_log}");
    wait_until("c and d take b's partitions", WAIT, || c.assignments() > c_before || d.assignments() > d_before);
    let takeover_after_leave = left.elapsed();
    let order = ["partitions revoked", "left the consumer group; the server drains now", "shutting down: NOT_SERVING"];
    let positions: Vec<usize> =
        order.iter().map(|line| b_log.find(line).unwrap_or_else(|| panic!("{line:?} in b's log:\n{b_log}"))).collect();
    assert!(positions.is_sorted(), "b left its group before its listener closed:\n{b_log}");
    wait_for_split("c and d split the six partitions", &[&c, &d]);

    let mut applied = BTreeMap::from([("b", applied_at_stop(&b_log))]);
    for replica in [c, d] {
        let (status, log) = replica.process.terminate_with_log(WAIT);
        assert!(status.success(), "{log}");
        applied.insert(replica.name, applied_at_stop(&log));
    }
    // Every event is applied once (the store's sums say so): what the
    // survivors did not apply, a applied before it was killed.
    let survivors: u64 = applied.values().sum();
    let events = total as u64 + 1;
    assert!(survivors <= events, "{applied:?}");
    let a_share = events - survivors;
    assert!(a_share >= applied_by_a, "a applied {applied_by_a} before it was killed, {a_share} in all");
    assert!(applied.values().all(|&events| events > 0), "every replica applied a share: {applied:?}");
    println!(
        "scale-out figures: events={events} applied_a={a_share} applied_b={} applied_c={} applied_d={} \
         split_3={first_split:?} split_after_kill={after_kill:?} split_after_addition={after_addition:?} \
         takeover_after_sigkill_ms={} takeover_after_sigterm_ms={} d_assigned_after_ms={}",
        applied["b"],
        applied["c"],
        applied["d"],
        takeover_after_kill.as_millis(),
        takeover_after_leave.as_millis(),
        d_assigned_after.as_millis(),
    );
    assert!(takeover_after_leave < takeover_after_kill, "leaving beats the session timeout");
}
