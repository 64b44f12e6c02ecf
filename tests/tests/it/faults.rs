//! The numbered fault suite of docs/reliability.md: real processes, a real
//! broker, loopback only, each test bounded in time. Each breaks one thing
//! while the suite works (an instance SIGKILLed or SIGTERMed under load,
//! Consul gone, the broker frozen and restarted, a dependency answering
//! after the deadline, a replay), records its figures (printed as `fault N
//! figures: ...` and written to `target/reliability/fault-N.json`), and
//! asserts the bounds the document states and explains.
use std::{
    net::TcpStream,
    process::Command,
    thread,
    time::{Duration, Instant},
};

use e2e::{
    broker::Broker,
    calls::{movie_details, put_movie},
    consul::FakeConsul,
    figures,
    load::{LoadFigures, SteadyLoad, millis},
    process::{ServiceProcess, binary},
    rating::{
        self, Workload, applied_at_stop, average, count_in_log, skipped_at_stop, start_with_kafka,
        start_with_kafka_and, stored_position,
    },
    stand_in::GatedMetadata,
    wait_until,
};
use nix::sys::signal::Signal;
use serde_json::{Value, json};
use testbed::{ChildProcess, Output};
use tonic::Code;

const WAIT: Duration = Duration::from_secs(30);
/// The load of the tests that run one: calls a second, and each call's deadline.
const RATE: u32 = 50;
const DEADLINE: Duration = Duration::from_secs(1);
/// How soon after the broker's return the rating service ingests and
/// acknowledges writes again (fault 3).
const RECOVERY: Duration = Duration::from_secs(5);
/// How often movie asks Consul for its dependencies' instances.
const REFRESH: Duration = Duration::from_millis(200);

/// A service registered in `consul` with a one-second TTL check.
fn start_with_consul(binary: &str, consul: &FakeConsul, args: &[&str]) -> ServiceProcess {
    let address = consul.http_address();
    let args: Vec<&str> = ["--consul-check-ttl", "1s", "--consul-deregister-after", "1m"]
        .into_iter()
        .chain(args.iter().copied())
        .collect();
    ServiceProcess::start(binary, &args, &[("CONSUL_HTTP_ADDR", address.as_str())])
}

/// Movie through Consul, refreshing every [`REFRESH`]; a rating failure
/// fails the call (rather than answering without a rating), so that the
/// load sees it.
fn movie_with_consul(consul: &FakeConsul) -> ServiceProcess {
    let refresh = format!("{}ms", REFRESH.as_millis());
    start_with_consul(
        "movie",
        consul,
        &["--discovery-refresh", &refresh, "--upstream-timeout", "1s", "--on-rating-failure", "fail"],
    )
}

/// Movie "1" in metadata, rated 4 by alice in each rating instance (each
/// has its own store), and movie answering with it.
fn movie_one_rated(metadata: &ServiceProcess, ratings: &[&ServiceProcess], movie: &ServiceProcess) {
    put_movie(metadata, "1");
    for rating in ratings {
        rating::put(rating, "1", "alice", 4);
    }
    wait_until("movie answers for movie 1", WAIT, || movie_details(movie, &["1"]) == [Code::Ok]);
}

/// Waits until `load` has run until `at` from its start (a steady load at a
/// rate is the clock here, not a sleep to synchronise).
fn run_load_until(load: &SteadyLoad, at: Duration) {
    wait_until(&format!("the load reaches {at:?}"), at + WAIT, || load.now() >= at);
}

/// How many times movie's log says a call to `instance` was refused.
fn refusals_of(movie: &ServiceProcess, instance: &str) -> usize {
    let tag = format!("instance={instance}");
    movie.log().lines().filter(|line| line.contains("instance unavailable") && line.contains(&tag)).count()
}

/// No call of the load waited past its deadline: none ended
/// DEADLINE_EXCEEDED or was abandoned (CANCELLED), and the slowest ended
/// before the deadline.
fn assert_no_call_past_its_deadline(all: &LoadFigures) {
    assert_eq!(all.count(Code::DeadlineExceeded) + all.count(Code::Cancelled), 0, "{all:?}");
    assert!(all.max < DEADLINE, "a call took {:?}, past its deadline of {DEADLINE:?}", all.max);
}

/// Fault 1. Bound: no failed call at all. A call refused by the dead
/// instance (connection refused or reset: UNAVAILABLE) is retried on the
/// other instance within the same deadline, and movie drops the dead
/// instance from its pool at the first refusal, re-adding it only at a
/// refresh while Consul still lists it; so each refresh until the TTL
/// lapses costs one retry, not a failed call.
#[test]
fn fault_1_a_rating_instance_sigkilled_under_load_fails_no_call_and_is_left_out() {
    const FAILED_DURING_BOUND: usize = 0;
    let consul = FakeConsul::start();
    let metadata = start_with_consul("metadata", &consul, &["--instance-id", "metadata-1"]);
    let rating_a = start_with_consul("rating", &consul, &["--instance-id", "rating-a"]);
    let rating_b = start_with_consul("rating", &consul, &["--instance-id", "rating-b"]);
    let movie = movie_with_consul(&consul);
    wait_until("both rating instances pass their checks", WAIT, || {
        consul.passing("rating").len() == 2 && consul.passing("metadata").len() == 1
    });
    movie_one_rated(&metadata, &[&rating_a, &rating_b], &movie);

    let load = SteadyLoad::movie_details(&movie.authority(), "1", RATE, DEADLINE);
    run_load_until(&load, Duration::from_secs(1));
    let killed_at = load.now();
    rating_a.crash();
    wait_until("Consul lists rating-b only", WAIT, || consul.passing("rating") == ["rating-b"]);
    // Movie's next refresh, and the one after to be sure it has finished.
    let left_out_at = load.now() + 2 * REFRESH;
    run_load_until(&load, left_out_at);
    let refusals_when_left_out = refusals_of(&movie, "rating-a");
    run_load_until(&load, left_out_at + Duration::from_secs(2));
    let records = load.stop();

    let (before, during, after, all) = (
        LoadFigures::of(&records, Duration::ZERO, killed_at),
        LoadFigures::of(&records, killed_at, left_out_at),
        LoadFigures::of(&records, left_out_at, Duration::MAX),
        LoadFigures::all(&records),
    );
    let refusals = refusals_of(&movie, "rating-a");
    figures::record(
        1,
        &json!({
            "rate_per_s": RATE, "deadline_ms": millis(DEADLINE),
            "sent": all.sent, "ok": all.count(Code::Ok), "failed": all.failed(), "by_code": all.by_code,
            "p99_ms": millis(all.p99), "max_ms": millis(all.max),
            "left_out_after_ms": millis(left_out_at - killed_at),
            "before": before.to_json(), "during": during.to_json(), "after": after.to_json(),
            "refusals_of_killed_instance_absorbed": refusals,
            "failed_during_bound": FAILED_DURING_BOUND,
        }),
    );
    assert_no_call_past_its_deadline(&all);
    assert_eq!(before.failed(), 0, "{before:?}");
    assert_eq!(during.failed(), FAILED_DURING_BOUND, "{during:?}");
    assert_eq!(after.failed(), 0, "a call failed after rating-a was left out: {after:?}");
    assert_eq!(refusals, refusals_when_left_out, "movie still tried rating-a after Consul stopped listing it");
    assert!(after.sent >= (RATE as usize), "the load ran on after the fault: {after:?}");
}

/// Fault 2. Bounds: no failed call while Consul is down (no call needs
/// Consul: movie keeps the instances it knew); every instance registered
/// again within the heartbeat interval plus the registration's longest
/// retry pause (10 s) of Consul's return, under the same id, once.
#[test]
fn fault_2_consul_down_every_service_serves_and_registrations_come_back_without_duplicates() {
    const OUTAGE: Duration = Duration::from_secs(3);
    const REREGISTER_BOUND: Duration = Duration::from_secs(11);
    let consul = FakeConsul::start();
    let port = consul.port();
    // Instance ids as each service makes them, so a new id on re-registration would show.
    let metadata = start_with_consul("metadata", &consul, &[]);
    let rating = start_with_consul("rating", &consul, &[]);
    let movie = movie_with_consul(&consul);
    let services = ["metadata", "rating", "movie"];
    let ids = |consul: &FakeConsul| services.map(|service| consul.passing(service));
    wait_until("every service passes its check", WAIT, || ids(&consul).iter().all(|ids| ids.len() == 1));
    let before = ids(&consul);
    movie_one_rated(&metadata, &[&rating], &movie);

    let load = SteadyLoad::movie_details(&movie.authority(), "1", RATE, DEADLINE);
    run_load_until(&load, Duration::from_secs(1));
    let down_at = load.now();
    drop(consul);
    movie.wait_for_log("cannot refresh instances; keeping the last known ones", WAIT);
    for service in [&metadata, &rating, &movie] {
        service.wait_for_log("heartbeat failed; still serving", WAIT);
    }
    run_load_until(&load, down_at + OUTAGE);
    let back_at = load.now();
    let consul = FakeConsul::start_on(port);
    wait_until("every instance is registered and passing again", WAIT, || ids(&consul) == before);
    let registered_again_after = load.now() - back_at;
    run_load_until(&load, load.now() + Duration::from_secs(1));
    let records = load.stop();

    let (down, after, all) = (
        LoadFigures::of(&records, down_at, back_at),
        LoadFigures::of(&records, back_at, Duration::MAX),
        LoadFigures::all(&records),
    );
    let registrations = services.map(|service| consul.registered(service).len());
    figures::record(
        2,
        &json!({
            "rate_per_s": RATE, "outage_ms": millis(back_at - down_at),
            "sent": all.sent, "ok": all.count(Code::Ok), "failed": all.failed(),
            "p99_ms": millis(all.p99), "max_ms": millis(all.max),
            "during_outage": down.to_json(), "after_return": after.to_json(),
            "registered_again_after_ms": millis(registered_again_after),
            "instances_after_return": {"metadata": registrations[0], "rating": registrations[1], "movie": registrations[2]},
        }),
    );
    assert_no_call_past_its_deadline(&all);
    assert_eq!(all.failed(), 0, "{all:?}");
    assert!(down.sent >= (RATE as usize) * 2, "the load ran through the outage: {down:?}");
    assert_eq!(registrations, [1, 1, 1], "one instance per service, no duplicate");
    assert!(registered_again_after <= REREGISTER_BOUND, "registered again after {registered_again_after:?}");
}

/// Fault 3. Bounds: nothing acknowledged is lost, nothing is counted
/// twice, and the final state is exactly what the topic says. The broker
/// is frozen while ratingingester publishes, then restarted while the
/// rating service is still reading; PutRatings are made meanwhile and once
/// it has caught up. ratingingester either delivered every
/// event (then the averages are exactly the file's) or exits non-zero
/// saying how many it did not deliver and why (then `sent + failed` is the
/// file, at least `sent` of its events are in the topic, and the averages
/// are those the topic's events make). Every PutRating acknowledged is
/// applied; one that timed out may still be applied later (counted); the
/// topic holds each message once (idempotent producers).
#[test]
fn fault_3_a_broker_paused_and_restarted_while_ratingingester_publishes_loses_nothing() {
    const WRITES: usize = 3;
    let directory = tempfile::tempdir().unwrap();
    let port = e2e::free_port();
    let broker = Broker::start_persistent(directory.path(), port);
    // Longer than the broker is ever away: no write's delivery times out,
    // so librdkafka never bumps its producer's epoch, which the restarted
    // Tansu cannot take (docs/reliability.md, "What Tansu does").
    let rating = rating::start_with_kafka_write_timeout(&broker, "30s", &[]);
    let workload = Workload::new(500, 50, 2);
    let file = directory.path().join("ratings.json");
    workload.write(&file);

    let mut command = Command::new(binary("ratingingester"));
    command.arg(&file).args(["--summary", "json", "--timeout", "60s"]).env("KAFKA_BROKERS", broker.address());
    let started = Instant::now();
    let mut ingester = ChildProcess::start("ratingingester", command, Output::Captured).expect("start ratingingester");
    wait_until("publishing is under way", WAIT, || average(&rating, "m0").is_some());

    let mut writes: Vec<(String, Result<(), tonic::Status>)> = Vec::new();
    let write = |rating: &ServiceProcess, phase: &str, deadline: Duration, writes: &mut Vec<_>| {
        for number in 0..WRITES {
            let record = format!("w-{phase}-{number}");
            let outcome = rating::try_put(rating, &record, "writer", 3, deadline);
            writes.push((record, outcome));
        }
    };
    // Frozen: the PutRatings (a second each at most) are the pause.
    let paused_at = started.elapsed();
    broker.pause();
    write(&rating, "paused", DEADLINE, &mut writes);
    broker.resume();
    let ingester_running_at_resume = ingester.try_wait().expect("ratingingester's state").is_none();
    let status = ingester.wait(Duration::from_secs(90)).expect("ratingingester ends");
    let summary: Value = serde_json::from_str(ingester.stdout().trim())
        .unwrap_or_else(|error| panic!("{error}: {}\n{}", ingester.stdout(), ingester.log()));
    // Restarted while the rating service is still reading the topic.
    let rating_behind_at_restart = !workload.wrong_answers(&rating).is_empty();
    let restarted_at = started.elapsed();
    broker.stop();
    write(&rating, "down", DEADLINE, &mut writes);
    let broker = Broker::start_persistent(directory.path(), port);
    let returned = Instant::now();

    // Recovered: the first PutRating acknowledged after the broker's return.
    // Acknowledged means published, then read back and applied by this
    // instance: both the write path and ingestion work again.
    let writes_recovered_after = loop {
        let record = format!("w-return-{}", writes.len());
        let outcome = rating::try_put(&rating, &record, "writer", 3, DEADLINE);
        let acknowledged = outcome.is_ok();
        writes.push((record, outcome));
        if acknowledged {
            break returned.elapsed();
        }
        assert!(
            returned.elapsed() < Duration::from_secs(60),
            "no write acknowledged 60 s after the return: {writes:?}"
        );
    };

    // What the topic says, replayed: each key's last event wins (a key
    // lives on one partition, read in order). Read again at every check: a
    // write that timed out for its caller may still reach the topic later.
    let averages_in_topic = || {
        let mut last: std::collections::HashMap<String, Value> = std::collections::HashMap::new();
        for message in &broker.read_all("ratings") {
            let event: Value =
                serde_json::from_str(message["value"].as_str().unwrap_or_default()).expect("a JSON event");
            last.insert(message["key"].as_str().unwrap_or_default().to_owned(), event);
        }
        let mut sums: std::collections::BTreeMap<String, (i64, i64)> = std::collections::BTreeMap::new();
        for event in last.values().filter(|event| event["eventType"] != "delete") {
            let entry = sums.entry(event["recordId"].as_str().unwrap_or_default().to_owned()).or_default();
            *entry = (entry.0 + event["ratingValue"].as_i64().unwrap_or_default(), entry.1 + 1);
        }
        sums.into_iter().map(|(record, (sum, count))| (record, sum as f64 / count as f64)).collect()
    };
    let records: Vec<&String> = workload.totals.keys().chain(writes.iter().map(|(record, _)| record)).collect();
    let mut from_topic: std::collections::BTreeMap<String, f64> = std::collections::BTreeMap::new();
    wait_until("the averages are those of the topic", Duration::from_secs(90), || {
        from_topic = averages_in_topic();
        records.iter().all(|record| average(&rating, record) == from_topic.get(record.as_str()).copied())
    });
    let expected = |record: &str| from_topic.get(record).copied();
    // Everything the topic holds applied, the backlog the restart found
    // included: an upper bound, which counts reading the topic and asking
    // for every record at each check until they all match.
    let backlog_applied_after = returned.elapsed();
    // Caught up: writes are acknowledged again (once this instance has
    // applied them; 10 s, the service's own --write-timeout, as the
    // machine may be busy).
    write(&rating, "after", Duration::from_secs(10), &mut writes);

    let events = workload.events.len() as u64;
    let (sent, failed) = (summary["sent"].as_u64().unwrap_or(0), summary["failed"].as_u64().unwrap_or(0));
    let messages = broker.read_all("ratings");
    let write_keys: Vec<&str> = messages
        .iter()
        .filter_map(|message| message["key"].as_str().filter(|key| key.starts_with("movie/w-")))
        .collect();
    let writes_in_topic = write_keys.len();
    // Counted in the topic itself: a write that timed out for its caller may
    // still be arriving, so the averages asked for later may hold more.
    let distinct_keys_of_writes = write_keys.iter().collect::<std::collections::HashSet<_>>().len();
    let file_events_in_topic = messages.len() - writes_in_topic;
    let file_matches = workload.totals.keys().all(|record| expected(record) == workload.expected_average(record));
    // The client's own timer ends a call at its deadline as CANCELLED; the
    // server's as DEADLINE_EXCEEDED: both are a deadline that passed.
    let timed_out = |status: &tonic::Status| matches!(status.code(), Code::DeadlineExceeded | Code::Cancelled);
    let acknowledged: Vec<&String> =
        writes.iter().filter(|(_, outcome)| outcome.is_ok()).map(|(record, _)| record).collect();
    let timed_out_writes: Vec<&String> =
        writes.iter().filter(|(_, outcome)| outcome.as_ref().is_err_and(timed_out)).map(|(record, _)| record).collect();
    let other_failures: Vec<String> = writes
        .iter()
        .filter_map(|(record, outcome)| match outcome {
            Err(status) if !timed_out(status) => Some(format!("{record}: {status}")),
            _ => None,
        })
        .collect();
    let applied_later = timed_out_writes.iter().filter(|record| average(&rating, record).is_some()).count();
    figures::record(
        3,
        &json!({
            "events": events, "sent": sent, "failed": failed, "failures": summary["failures"],
            "outcome": summary["outcome"], "ingester_ms": summary["duration_ms"],
            "paused_at_ms": millis(paused_at), "restarted_at_ms": millis(restarted_at),
            "writes_recovered_after_return_ms": millis(writes_recovered_after),
            "backlog_applied_after_return_ms": millis(backlog_applied_after),
            "ingester_running_at_resume": ingester_running_at_resume, "rating_behind_at_restart": rating_behind_at_restart,
            "file_events_in_topic": file_events_in_topic, "averages_equal_the_file": file_matches,
            "writes": writes.len(), "writes_acknowledged": acknowledged.len(), "writes_timed_out": timed_out_writes.len(),
            "timed_out_applied_later": applied_later, "writes_other_failures": other_failures,
            "lost": acknowledged.iter().filter(|record| average(&rating, record).is_none()).count(),
            "doubled": writes_in_topic - distinct_keys_of_writes,
        }),
    );
    assert!(ingester_running_at_resume, "publishing ended before the broker resumed: make the file larger");
    assert_eq!(sent + failed, events, "ratingingester accounts for every event: {summary}");
    if failed == 0 {
        assert!(status.success() && summary["outcome"] == "ok", "{summary}");
        assert_eq!(file_events_in_topic as u64, events, "each event of the file is in the topic once");
        assert!(file_matches, "every event delivered, yet the averages are not the file's");
    } else {
        assert!(!status.success() && summary["outcome"] == "undelivered", "failures reported as success: {summary}");
        assert!(file_events_in_topic as u64 >= sent, "acknowledged events are missing: {summary}");
        assert!(file_events_in_topic as u64 <= events, "events of the file are in the topic twice");
    }
    assert!(acknowledged.iter().all(|record| average(&rating, record) == Some(3.0)), "an acknowledged write was lost");
    assert_eq!(writes_in_topic, distinct_keys_of_writes, "a PutRating is in the topic twice");
    assert!(other_failures.is_empty(), "{other_failures:?}");
    assert!(
        writes_recovered_after <= RECOVERY,
        "no write acknowledged within {RECOVERY:?} of the broker's return: the first came after \
         {writes_recovered_after:?}"
    );
    let after: Vec<&(String, Result<(), tonic::Status>)> =
        writes.iter().filter(|(record, _)| record.starts_with("w-after-")).collect();
    assert!(after.iter().all(|(_, outcome)| outcome.is_ok()), "a write once caught up failed: {after:?}");
    drop(rating);
    broker.stop();
}

/// Fault 4 (SQLite store; the PostgreSQL replicas are
/// `rating_storage::postgres_replicas_reading_every_partition_lose_and_double_nothing_when_one_is_sigkilled_mid_ingestion`
/// and `rating_scale_out::`).
/// Bounds: the final averages are exactly the file's, the store's final
/// position is the topic's end, and the restarted instance resumes at the
/// position its store had (positions are stored in the transaction of the
/// data): at least the one read after the kill, and it applies no more
/// changes than the events left.
#[test]
fn fault_4_a_rating_instance_sigkilled_mid_ingestion_and_restarted_ends_with_the_same_averages() {
    let broker = Broker::start_in_memory();
    let directory = tempfile::tempdir().unwrap();
    let url = format!("sqlite:{}", directory.path().join("rating.db").display());
    let workload = Workload::new(100, 100, 3);
    let total = workload.events.len() as i64;
    let rating = start_with_kafka_and(&broker, &[("DATABASE_URL", &url)]);
    rating::ingest(&broker, &directory.path().join("ratings.json"), &workload.events);
    wait_until("ingestion is under way", WAIT, || stored_position(&url) > 0);
    rating.crash();
    let at_kill = stored_position(&url);

    let started = Instant::now();
    let rating = start_with_kafka_and(&broker, &[("DATABASE_URL", &url)]);
    let serving_after = started.elapsed();
    wait_until("every event is applied", WAIT, || stored_position(&url) == total);
    let wrong = workload.wrong_answers(&rating);
    let (status, log) = rating.terminate_with_log(WAIT);
    // The store's position as the restarted instance found it: a SQLite
    // transaction the kill cut after its WAL frames were written is
    // committed all the same once the next opener recovers the WAL, so this
    // may be a little past the position read just after the kill.
    let at_restart = count_in_log(&log, "already_applied=") as i64;
    let applied_after_restart = applied_at_stop(&log) as i64;
    let skipped_after_restart = skipped_at_stop(&log) as i64;
    figures::record(
        4,
        &json!({
            "store": "sqlite", "events": total, "applied_at_kill": at_kill, "applied_at_restart": at_restart,
            "applied_after_restart": applied_after_restart, "skipped_as_applied_before": skipped_after_restart,
            "position_at_end": stored_position(&url),
            "records": workload.totals.len(), "records_wrong": wrong.len(),
            "restart_to_serving_ms": millis(serving_after),
        }),
    );
    assert!(status.success(), "{log}");
    assert!(at_kill < total, "killed after ingestion ended ({at_kill} of {total}): make the workload larger");
    assert!(wrong.is_empty(), "wrong averages for {wrong:?}");
    assert!(
        at_kill <= at_restart,
        "the store lost committed events: {at_kill} at the kill, {at_restart} at the restart"
    );
    // The log counts changes applied, a batch's events for one (record,
    // user) being one change: never more than the events left.
    assert!(applied_after_restart <= total - at_restart, "more changes than events left: {log}");
}

/// Fault 5. Bounds: no failed call (the leaving instance says NOT_SERVING,
/// deregisters, then refuses new streams, which movie retries elsewhere,
/// and drains what it holds); the deregistration reaches Consul before the
/// listener closes; exit 0 within the shutdown timeout (5 s). Then movie
/// itself, SIGTERMed with calls held at a slow dependency: it stops
/// accepting, the held calls complete once the dependency answers, and it
/// exits 0 within the shutdown timeout.
#[test]
fn fault_5_sigterm_under_load_drains_deregisters_first_and_exits_0() {
    const SHUTDOWN: Duration = Duration::from_secs(5);
    const HELD: usize = 4;
    let consul = FakeConsul::start();
    let metadata = start_with_consul("metadata", &consul, &["--instance-id", "metadata-1"]);
    let rating_a = start_with_consul("rating", &consul, &["--instance-id", "rating-a", "--shutdown-timeout", "5s"]);
    let rating_b = start_with_consul("rating", &consul, &["--instance-id", "rating-b"]);
    let movie = movie_with_consul(&consul);
    wait_until("both rating instances pass their checks", WAIT, || consul.passing("rating").len() == 2);
    movie_one_rated(&metadata, &[&rating_a, &rating_b], &movie);

    let load = SteadyLoad::movie_details(&movie.authority(), "1", RATE, DEADLINE);
    run_load_until(&load, Duration::from_secs(1));
    let port = rating_a.port();
    let probe = thread::spawn(move || {
        while TcpStream::connect(("127.0.0.1", port)).is_ok() {
            thread::sleep(Duration::from_millis(1));
        }
        Instant::now()
    });
    let (terminated, terminated_at) = (Instant::now(), load.now());
    let status = rating_a.terminate(WAIT);
    let exited_after = terminated.elapsed();
    let closed = probe.join().expect("the probe ran");
    let deregistered = consul.deregistered_at("rating-a").expect("rating-a deregistered");
    run_load_until(&load, terminated_at + Duration::from_secs(2));
    let records = load.stop();
    let (during, all) = (LoadFigures::of(&records, terminated_at, Duration::MAX), LoadFigures::all(&records));

    // Movie itself, with calls held at a dependency that has not answered.
    let runtime = tokio::runtime::Runtime::new().expect("a runtime for the stand-in");
    let gate = runtime.block_on(GatedMetadata::start());
    let held_movie = ServiceProcess::start(
        "movie",
        &["--metadata-addrs", &gate.authority(), "--rating-addrs", &rating_b.authority()],
        &[("UPSTREAM_TIMEOUT", "30s"), ("SHUTDOWN_TIMEOUT", "5s")],
    );
    held_movie.wait_until_serving(WAIT);
    let endpoint = e2e::process::endpoint(&held_movie);
    let held: Vec<_> = (0..HELD)
        .map(|_| {
            let endpoint = endpoint.clone();
            runtime.spawn(async move {
                let channel = endpoint.connect().await?;
                let request = contract::api::GetMovieDetailsRequest { movie_id: "1".into() };
                let answer = contract::api::movie_service_client::MovieServiceClient::new(channel)
                    .get_movie_details(request)
                    .await;
                Ok::<_, tonic::transport::Error>(answer.map(|_| ()).map_err(|status| status.code()))
            })
        })
        .collect();
    runtime.block_on(gate.wait_for_in_flight(HELD, WAIT));
    let movie_terminated = Instant::now();
    held_movie.signal(Signal::SIGTERM);
    wait_until("movie stops accepting connections", WAIT, || {
        TcpStream::connect(("127.0.0.1", held_movie.port())).is_err()
    });
    let still_held = gate.in_flight();
    gate.open();
    let held_outcomes: Vec<_> =
        held.into_iter().map(|call| runtime.block_on(call).expect("the call's task ran").expect("connected")).collect();
    let movie_status = held_movie.wait_exit(WAIT);
    let movie_exited_after = movie_terminated.elapsed();

    figures::record(
        5,
        &json!({
            "rate_per_s": RATE, "sent": all.sent, "ok": all.count(Code::Ok), "failed": all.failed(),
            "p99_ms": millis(all.p99), "max_ms": millis(all.max), "after_sigterm": during.to_json(),
            "deregistered_before_listener_closed_ms": millis(closed.saturating_duration_since(deregistered)),
            "rating_exit_code": status.code(), "rating_exited_after_ms": millis(exited_after),
            "refusals_of_leaving_instance_retried": refusals_of(&movie, "rating-a"),
            "movie_held_calls": HELD, "movie_held_calls_ok": held_outcomes.iter().filter(|outcome| outcome.is_ok()).count(),
            "movie_exit_code": movie_status.code(), "movie_exited_after_ms": millis(movie_exited_after),
            "shutdown_timeout_ms": millis(SHUTDOWN),
        }),
    );
    assert_no_call_past_its_deadline(&all);
    assert_eq!(all.failed(), 0, "{all:?}");
    assert!(status.success(), "rating-a exited with {status}");
    assert!(exited_after < SHUTDOWN, "rating-a took {exited_after:?} to exit");
    assert!(deregistered <= closed, "the listener closed {:?} before the deregistration", deregistered - closed);
    assert_eq!(still_held, HELD, "the held calls were cut when movie stopped accepting");
    assert!(held_outcomes.iter().all(Result::is_ok), "{held_outcomes:?}");
    assert!(movie_status.success(), "movie exited with {movie_status}");
    assert!(movie_exited_after < SHUTDOWN, "movie took {movie_exited_after:?} to exit");
}

/// Fault 6. Bounds: every call DEADLINE_EXCEEDED within the upstream
/// timeout (300 ms) plus 200 ms; calls waiting at the slow dependency at
/// most twice rate × timeout (each abandoned call is cancelled there, not
/// left to pile up: without that they would grow to rate × the run);
/// none left waiting once the load stops; movie's resident memory grows by
/// at most 16 MiB; and it answers again once the dependency does.
#[test]
fn fault_6_a_dependency_answering_after_the_deadline_is_deadline_exceeded_promptly_without_pile_up() {
    const RATE: u32 = 100;
    const UPSTREAM_TIMEOUT: Duration = Duration::from_millis(300);
    const PROMPT: Duration = Duration::from_millis(200);
    const RUN: Duration = Duration::from_secs(4);
    const MEMORY_GROWTH_BOUND: u64 = 16 * 1024 * 1024;
    let runtime = tokio::runtime::Runtime::new().expect("a runtime for the stand-in");
    let gate = runtime.block_on(GatedMetadata::start());
    let rating = ServiceProcess::start("rating", &[], &[]);
    let movie = ServiceProcess::start(
        "movie",
        &["--metadata-addrs", &gate.authority(), "--rating-addrs", &rating.authority(), "--upstream-timeout", "300ms"],
        &[],
    );
    movie.wait_until_serving(WAIT);
    let resident_before = bench::procfs::resident_bytes(movie.pid()).expect("movie's memory");

    let load = SteadyLoad::movie_details(&movie.authority(), "1", RATE, Duration::from_secs(2));
    run_load_until(&load, RUN);
    let resident_under_load = bench::procfs::resident_bytes(movie.pid()).expect("movie's memory");
    let records = load.stop();
    runtime.block_on(gate.wait_for_in_flight(0, Duration::from_secs(1)));
    let all = LoadFigures::all(&records);
    let max_waiting = gate.max_in_flight();
    let waiting_bound = 2 * (RATE as usize) * UPSTREAM_TIMEOUT.as_millis() as usize / 1000;
    gate.open();
    let recovered = movie_details(&movie, &["1"]);
    let growth = resident_under_load.saturating_sub(resident_before);

    figures::record(
        6,
        &json!({
            "rate_per_s": RATE, "upstream_timeout_ms": millis(UPSTREAM_TIMEOUT),
            "sent": all.sent, "by_code": all.by_code, "p99_ms": millis(all.p99), "max_ms": millis(all.max),
            "max_waiting_at_dependency": max_waiting, "waiting_bound": waiting_bound,
            "resident_before_mib": resident_before as f64 / 1048576.0,
            "resident_under_load_mib": resident_under_load as f64 / 1048576.0,
            "recovered": format!("{recovered:?}"),
        }),
    );
    assert_eq!(all.count(Code::DeadlineExceeded), all.sent, "{all:?}");
    assert!(all.max <= UPSTREAM_TIMEOUT + PROMPT, "a call took {:?}", all.max);
    assert!(max_waiting <= waiting_bound, "{max_waiting} calls waited at once at the dependency");
    assert!(growth <= MEMORY_GROWTH_BOUND, "movie grew by {growth} bytes");
    assert_eq!(recovered, [Code::Ok]);
}

/// Fault 7. Bound: at its first SERVING, a restarted instance (memory
/// store: it replays the whole topic) answers every record exactly as the
/// topic says. The topic ends with one padding event per partition, each a
/// record batch of its own: Tansu 0.6 gives a partition's end as the start
/// of its last record batch, so only that last event may still be applying
/// at SERVING (docs/reliability.md); every other event, the whole file
/// included, is covered.
#[test]
fn fault_7_a_restarted_rating_instance_answers_for_the_whole_topic_when_it_first_reports_serving() {
    let broker = Broker::start_in_memory();
    let rating = start_with_kafka(&broker);
    let workload = Workload::new(200, 40, 2);
    let directory = tempfile::tempdir().unwrap();
    rating::ingest(&broker, &directory.path().join("ratings.json"), &workload.events);
    let partitions = broker.partitions("ratings");
    let padding = rating::event("padding", "pad", Some(3)).to_string();
    broker.produce_one_per_partition("ratings", partitions, "movie/padding/pad", &padding);
    wait_until("the first instance holds the whole topic", Duration::from_secs(60), || {
        average(&rating, "padding").is_some() && workload.wrong_answers(&rating).is_empty()
    });
    rating.crash();

    let started = Instant::now();
    let restarted = start_with_kafka(&broker);
    let serving_after = started.elapsed();
    // The records whose last event is nearest the end first: the likeliest
    // to be missing if SERVING came early.
    let mut records: Vec<(&String, &usize)> = workload.last_event.iter().collect();
    records.sort_by_key(|(_, position)| std::cmp::Reverse(**position));
    let wrong: Vec<&String> = records
        .iter()
        .filter(|(record, _)| average(&restarted, record) != workload.expected_average(record))
        .map(|(record, _)| *record)
        .collect();
    let checked_after = started.elapsed();
    figures::record(
        7,
        &json!({
            "events": workload.events.len() + partitions as usize, "records": records.len(),
            "partitions": partitions, "serving_after_ms": millis(serving_after),
            "all_checked_after_ms": millis(checked_after), "records_wrong_at_serving": wrong.len(),
        }),
    );
    assert!(wrong.is_empty(), "at SERVING, wrong answers for {} records: {wrong:?}", wrong.len());
}
