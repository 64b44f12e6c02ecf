//! The rating service on a database, as real processes against a real
//! broker: a SQLite instance that restarts re-applies nothing; PostgreSQL
//! replicas lose and double-count nothing when one restarts mid-ingestion,
//! whether they split the topic in their consumer group or each read all
//! of it; a database that goes away
//! mid-run makes calls UNAVAILABLE, pauses ingestion, and both recover.
use std::{collections::BTreeMap, time::Duration};

use contract::api::{GetAggregatedRatingRequest, rating_service_client::RatingServiceClient};
use e2e::{
    broker::Broker,
    postgres::{PASSWORD, Postgres},
    process::{ServiceProcess, block_on, endpoint},
    rating::{
        Workload, applied_at_stop, average, event, ingest, start_with_kafka_and, stored_position, stored_totals,
        try_average,
    },
    wait_until,
};
use tonic::Code;

const WAIT: Duration = Duration::from_secs(60);

#[test]
fn a_restarted_instance_on_sqlite_keeps_its_ratings_and_reapplies_nothing() {
    let broker = Broker::start_in_memory();
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite:{}", dir.path().join("rating.db").display());
    let workload = Workload::new(20, 30, 2);
    let (events, totals) = (&workload.events, &workload.totals);
    let rating = start_with_kafka_and(&broker, &[("DATABASE_URL", &url)]);
    ingest(&broker, &dir.path().join("first.json"), events);
    let answers_match = |rating: &ServiceProcess| {
        totals.keys().all(|record| average(rating, record) == workload.expected_average(record))
    };
    wait_until("every event is applied", WAIT, || answers_match(&rating));
    let (status, log) = rating.terminate_with_log(WAIT);
    assert!(status.success(), "{log}");
    assert_eq!(applied_at_stop(&log), events.len() as u64, "{log}");

    // Restarted on the same file: SERVING means caught up, and it answers
    // at once, having applied nothing again.
    let rating = start_with_kafka_and(&broker, &[("DATABASE_URL", &url)]);
    assert!(answers_match(&rating));
    let more = [event("m0", "newcomer", Some(5)), event("m1", "newcomer", Some(1))];
    ingest(&broker, &dir.path().join("more.json"), &more);
    let (sum, count) = totals["m0"];
    wait_until("the new events are applied", WAIT, || {
        average(&rating, "m0") == Some((sum + 5) as f64 / (count + 1) as f64)
    });
    let (status, log) = rating.terminate_with_log(WAIT);
    assert!(status.success(), "{log}");
    assert_eq!(applied_at_stop(&log), 2, "only the two new events were applied: {log}");
}

/// Two replicas on one PostgreSQL store ingest a file while the second is
/// stopped half-way (`stop`) and started again; then every sum and count is
/// exact, and a write through either replica is read back through both.
fn two_replicas_on_postgres_ingest_through_a_restart(extra: &[(&str, &str)], stop: impl FnOnce(ServiceProcess)) {
    let broker = Broker::start_in_memory();
    let postgres = Postgres::start();
    let url = postgres.create_database();
    let mut env = vec![("DATABASE_URL", url.as_str())];
    env.extend_from_slice(extra);
    let first = start_with_kafka_and(&broker, &env);
    let second = start_with_kafka_and(&broker, &env);

    let workload = Workload::new(100, 100, 6);
    let (events, totals) = (&workload.events, &workload.totals);
    let dir = tempfile::tempdir().unwrap();
    ingest(&broker, &dir.path().join("ratings.json"), events);

    let total = events.len() as i64;
    wait_until("ingestion is under way", WAIT, || stored_position(&url) > 0);
    stop(second);
    let at_stop = stored_position(&url);
    let second = start_with_kafka_and(&broker, &env);
    let deadline = std::time::Instant::now() + WAIT;
    while stored_position(&url) != total {
        assert!(
            std::time::Instant::now() < deadline,
            "not every event was applied: {} of {total}\nfirst:\n{}\nsecond:\n{}",
            stored_position(&url),
            first.log(),
            second.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(&stored_totals(&url), totals, "every sum and count exact (stopped at {at_stop} of {total})");
    for record in ["m0", "m42", "m99"] {
        assert_eq!(average(&first, record), workload.expected_average(record), "{record}");
        assert_eq!(average(&second, record), workload.expected_average(record), "{record}");
    }

    // Read your writes across replicas: the call returns once the event is
    // in the shared store, whichever replica applied it.
    for (at, user, value) in [(&first, "w1", 4), (&second, "w2", 2), (&first, "w3", 3)] {
        e2e::rating::put(at, "written", user, value);
        let expected = match user {
            "w1" => 4.0,
            "w2" => 3.0,
            _ => 3.0,
        };
        assert_eq!(average(&second, "written"), Some(expected), "after {user}");
        assert_eq!(average(&first, "written"), Some(expected), "after {user}");
    }
}

/// Without a consumer group every replica reads every partition: a replica
/// SIGKILLed mid-file stalls nothing (in a group its partitions would wait
/// for the group's session timeout: `rating_scale_out` covers that).
#[test]
fn postgres_replicas_reading_every_partition_lose_and_double_nothing_when_one_is_sigkilled_mid_ingestion() {
    two_replicas_on_postgres_ingest_through_a_restart(&[("RATINGS_CONSUMER_GROUP", "")], ServiceProcess::crash);
}

/// In the consumer group they join by default, a replica stopped with
/// SIGTERM hands its partitions over as it leaves.
#[test]
fn postgres_replicas_in_their_consumer_group_split_the_topic_through_a_restart() {
    two_replicas_on_postgres_ingest_through_a_restart(&[], |replica| {
        assert!(replica.terminate(WAIT).success());
    });
}

#[test]
fn a_database_lost_mid_run_is_unavailable_then_recovers_losing_nothing() {
    let broker = Broker::start_in_memory();
    let postgres = Postgres::start();
    let url = postgres.create_database();
    let rating = start_with_kafka_and(&broker, &[("DATABASE_URL", &url), ("DATABASE_CONNECT_TIMEOUT", "1s")]);
    let dir = tempfile::tempdir().unwrap();
    ingest(&broker, &dir.path().join("before.json"), &[event("1", "a", Some(4))]);
    wait_until("the first event is applied", WAIT, || average(&rating, "1") == Some(4.0));

    postgres.pause();
    let status = try_average(&rating, "1").unwrap_err();
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    assert!(status.message().starts_with("the rating store is unavailable: database postgres://"), "{status:?}");
    assert!(!status.message().contains(PASSWORD), "{status:?}");
    // Reads failing alike are logged once a second, not once per read.
    const LOGGED: &str = "rating store unavailable";
    rating.wait_for_log(LOGGED, WAIT);
    let before = rating.log().matches(LOGGED).count();
    assert_eq!(before, 1, "one failed read, one line:\n{}", rating.log());
    let reads = block_on(async {
        let client = RatingServiceClient::new(endpoint(&rating).connect().await.expect("connect to rating"));
        let mut reads = tokio::task::JoinSet::new();
        for _ in 0..20 {
            let mut client = client.clone();
            let request = GetAggregatedRatingRequest { record_id: "1".into(), record_type: "movie".into() };
            reads.spawn(async move { client.get_aggregated_rating(request).await });
        }
        reads.join_all().await
    });
    assert!(reads.iter().all(|read| read.as_ref().is_err_and(|status| status.code() == Code::Unavailable)));
    let logged = rating.log().matches(LOGGED).count() - before;
    assert!(logged <= 2, "20 reads failing within about a second logged {logged} times:\n{}", rating.log());
    // Events published meanwhile wait in the topic.
    ingest(&broker, &dir.path().join("during.json"), &[event("1", "b", Some(2)), event("1", "a", None)]);
    rating.wait_for_log("the store is unavailable; ingestion pauses", WAIT);

    postgres.resume();
    wait_until("ingestion resumes and reads recover", WAIT, || try_average(&rating, "1").ok() == Some(2.0));
    assert_eq!(stored_totals(&url), BTreeMap::from([("1".to_string(), (2, 1))]));
    assert!(!rating.log().contains(PASSWORD), "the password never reaches the log");
}
