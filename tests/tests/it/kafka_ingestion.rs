//! Rating ingestion through a real Kafka-protocol broker (Tansu): poison
//! pills, replicas that agree, restarts that lose nothing, writes that go
//! through the topic, and a broker that restarts mid-run.
use std::time::Duration;

use e2e::{
    broker::Broker,
    free_port,
    process::ServiceProcess,
    rating::{self, average, health, start_with_kafka as start_rating, start_with_kafka_and as start_rating_and},
    wait_until,
};
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(30);

fn event(record: &str, user: &str, value: Option<i32>, kind: &str) -> String {
    let mut event = json!({"recordId": record, "recordType": "movie", "userId": user, "eventType": kind});
    if let Some(value) = value {
        event["ratingValue"] = json!(value);
    }
    event.to_string()
}

fn key(record: &str, user: &str) -> String {
    format!("movie/{record}/{user}")
}

#[test]
fn a_poison_pill_goes_to_the_dead_letter_topic_and_ingestion_moves_on() {
    let broker = Broker::start_in_memory();
    poison_pills_are_dead_lettered_and_the_partition_moves_on(&broker, start_rating(&broker));
}

/// The same with a database store, whose consumer fetches less ahead
/// (`fetch.max.bytes` 4 MiB, under the 10 MiB message).
#[test]
fn a_poison_pill_goes_to_the_dead_letter_topic_with_a_database_store_too() {
    let broker = Broker::start_in_memory();
    let postgres = e2e::postgres::Postgres::start();
    let url = postgres.create_database();
    poison_pills_are_dead_lettered_and_the_partition_moves_on(
        &broker,
        start_rating_and(&broker, &[("DATABASE_URL", &url)]),
    );
}

fn poison_pills_are_dead_lettered_and_the_partition_moves_on(broker: &Broker, rating: ServiceProcess) {
    let long_record = "7".repeat(300);
    let huge = "x".repeat(10 * 1024 * 1024);
    let garbage: Vec<u8> = (0..=255u8).rev().cycle().take(4096).collect();
    let bob = key("1", "bob");
    // Each bad message with the reason it is dead-lettered for. Most share
    // the key of the good event that follows them, so they sit on its
    // partition, before it: that it is applied shows the partition moved on.
    let bad: Vec<(Option<String>, Vec<u8>, &str)> = vec![
        (Some(bob.clone()), b"{not json".to_vec(), "malformed JSON: "),
        (
            Some(key("1", "carol")),
            event("1", "carol", Some(9), "put").into(),
            "ratingValue must be between 1 and 5, got 9",
        ),
        // What a database cannot hold: a NUL character, an id over 256 bytes.
        (
            Some(key("1", "da\0ve")),
            event("1", "da\0ve", Some(4), "put").into(),
            "userId must not contain a NUL character",
        ),
        (
            Some(key(&long_record, "erin")),
            event(&long_record, "erin", Some(4), "put").into(),
            "recordId must be at most 256 bytes long, not 300",
        ),
        (
            Some(bob.clone()),
            event("1", "b\nob", Some(4), "put").into(),
            "userId must not contain a control character, found U+000A",
        ),
        // Hostile shapes: nothing at all, binary garbage, valid JSON of the wrong shape.
        (Some(bob.clone()), Vec::new(), "malformed JSON: EOF while parsing"),
        (Some(bob.clone()), garbage, "malformed JSON: "),
        (Some(bob.clone()), b"[1, 2, 3]".to_vec(), "an event must be a JSON object, got [1,2,3]"),
        (Some(bob.clone()), br#"{"recordId": 5, "userId": ["x"]}"#.to_vec(), "recordId must be a string, got 5"),
        // Far over any event: refused on its size, without being parsed.
        (
            Some(bob.clone()),
            event("1", &huge, Some(4), "put").into(),
            "over the limit of 65536 bytes for a rating event",
        ),
    ];
    let (alice, good_a, good_b) =
        (key("1", "alice"), event("1", "alice", Some(5), "put"), event("1", "bob", Some(2), "put"));
    let mut messages: Vec<(Option<&[u8]>, &[u8])> = vec![(Some(alice.as_bytes()), good_a.as_bytes())];
    messages.extend(bad.iter().map(|(key, value, _)| (key.as_deref().map(str::as_bytes), value.as_slice())));
    messages.push((Some(bob.as_bytes()), good_b.as_bytes()));
    broker.produce_bytes("ratings", &messages);
    wait_until("both good events are applied", WAIT, || average(&rating, "1") == Some(3.5));

    let dead: Vec<Value> = broker.read_all("ratings.dlq");
    assert_eq!(dead.len(), bad.len(), "{dead:?}");
    let reasons: Vec<&str> =
        dead.iter().map(|message| message["headers"]["x-dlq-reason"].as_str().unwrap_or_default()).collect();
    for (_, _, reason) in &bad {
        assert!(reasons.iter().any(|found| found.contains(reason)), "no dead letter says {reason:?}: {reasons:?}");
    }
    let pill = dead.iter().find(|message| message["value"] == "{not json").expect("the pill's payload is kept");
    assert_eq!(pill["headers"]["x-original-topic"], "ratings");
    assert!(pill["headers"]["x-original-offset"].as_str().is_some());
    // The huge message is dead-lettered without its content, which stays
    // in the ratings topic at the offset the dead letter names.
    let oversized = dead
        .iter()
        .find(|message| {
            message["headers"]["x-dlq-reason"].as_str().is_some_and(|reason| reason.contains("bytes, over"))
        })
        .expect("the huge message is dead-lettered");
    assert_eq!((oversized["key"].as_str(), oversized["value"].as_str()), (Some(""), Some("")));
    rating.wait_for_log("refused event moved to the dead-letter topic", WAIT);
    assert_eq!(health(&rating), "SERVING");
}

/// What the book's Go ingester and the seed article's producer send: no key
/// (so librdkafka picks any partition) and their JSON spellings, published
/// here by another language's client (Python's confluent-kafka). By default
/// such events are applied exactly, as is an event keyed by its user id
/// alone; with `--strict-event-keys` each is dead-lettered with its reason.
#[test]
fn events_with_no_key_or_another_key_are_applied_by_default_and_dead_lettered_when_strict() {
    let broker = Broker::start_in_memory();
    let lenient = start_rating(&broker);
    let strict = start_rating_and(&broker, &[("STRICT_EVENT_KEYS", "true")]);
    // One event per rating: nothing orders two keyless events of one rating.
    let keyless = [
        // The seed article's spelling, then the book's (`value`, no `eventType`, a `providerId`).
        r#"{"recordId":"1","recordType":"movie","userId":"101","ratingValue":5,"eventType":"put"}"#,
        r#"{"recordId":"1","recordType":"movie","userId":"102","value":2,"providerId":"test-provider"}"#,
        r#"{"recordId":"2","recordType":"movie","userId":"101","value":4,"providerId":"test-provider"}"#,
    ];
    produce_without_keys_from_python(&broker, "ratings", &keyless);
    broker.produce_raw("ratings", &[("103", event("1", "103", Some(2), "put"))]);

    wait_until("the keyless and user-keyed events are applied", WAIT, || {
        average(&lenient, "1") == Some(3.0) && average(&lenient, "2") == Some(4.0)
    });
    lenient.wait_for_log("key=\"none\"", WAIT);
    lenient.wait_for_log("key=\"other\"", WAIT);

    wait_until("the strict instance dead-letters all four", WAIT, || broker.message_count("ratings.dlq") == 4);
    let reasons: Vec<String> = broker
        .read_all("ratings.dlq")
        .iter()
        .map(|message| message["headers"]["x-dlq-reason"].as_str().unwrap_or_default().to_string())
        .collect();
    for expected in [
        r#"the message has no key; this event's key is "movie/1/101""#,
        r#"the message has no key; this event's key is "movie/2/101""#,
        r#"the message's key "103" is not this event's key "movie/1/103""#,
    ] {
        assert!(reasons.iter().any(|reason| reason == expected), "no dead letter says {expected:?}: {reasons:?}");
    }
    assert_eq!((average(&strict, "1"), average(&strict, "2")), (None, None));
    assert_eq!(health(&strict), "SERVING");
}

/// Publishes `values` with no key, as the book's Go producer does
/// (`PartitionAny`, `Value` only), through Python's confluent-kafka.
fn produce_without_keys_from_python(broker: &Broker, topic: &str, values: &[&str]) {
    const SCRIPT: &str = "import sys\n\
        from confluent_kafka import Producer\n\
        producer = Producer({'bootstrap.servers': sys.argv[1]})\n\
        for line in sys.stdin.read().splitlines():\n    producer.produce(sys.argv[2], value=line.encode())\n\
        sys.exit(producer.flush(15))\n";
    let mut child = std::process::Command::new("python3")
        .args(["-c", SCRIPT, &broker.address(), topic])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .expect("python3 with confluent-kafka (scripts/install-tools.sh --for-tests)");
    std::io::Write::write_all(&mut child.stdin.take().expect("stdin"), values.join("\n").as_bytes())
        .expect("write the events to python");
    let status = child.wait().expect("wait for python");
    assert!(status.success(), "the Python producer failed ({status}): not every event was acknowledged");
}

#[test]
fn replicas_agree_writes_go_through_the_topic_and_restarts_lose_nothing() {
    let broker = Broker::start_in_memory();
    let a = start_rating(&broker);
    let b = start_rating(&broker);

    // Events published straight to the topic, over several records.
    let mut events = Vec::new();
    for record in 1..=5 {
        for user in 0..8 {
            let value = 1 + (record * 7 + user) % 5;
            events.push((
                key(&record.to_string(), &format!("u{user}")),
                event(&record.to_string(), &format!("u{user}"), Some(value), "put"),
            ));
        }
    }
    events.push((key("1", "u0"), event("1", "u0", Some(1), "put"))); // u0 changes their mind
    events.push((key("2", "u1"), event("2", "u1", None, "delete")));
    broker.produce_raw("ratings", &events);

    // PutRating on A is read back on A at once (read your writes) and
    // reaches B within the bound.
    rating::put(&a, "6", "zoe", 4);
    assert_eq!(average(&a, "6"), Some(4.0));
    wait_until("B sees A's write", Duration::from_secs(5), || average(&b, "6") == Some(4.0));
    rating::delete(&b, "3", "u3");

    let records: Vec<String> = (1..=6).map(|record| record.to_string()).collect();
    let answers = |rating: &ServiceProcess| records.iter().map(|record| average(rating, record)).collect::<Vec<_>>();
    wait_until("A and B agree on every record", WAIT, || {
        answers(&a) == answers(&b) && b.log().contains("DeleteRating")
    });
    let before = answers(&a);
    assert!(before.iter().all(Option::is_some), "{before:?}");

    // Restart A: it replays the topic and answers as before. (It reports
    // SERVING once it reaches the end offsets it read at start; Tansu 0.6
    // reports those per record batch, so the last batch may still be
    // applying: wait for the answer rather than assume it.)
    assert!(a.terminate(WAIT).success());
    let a = start_rating(&broker);
    wait_until("the restarted A answers as before", WAIT, || answers(&a) == before);
    assert_eq!(answers(&b), before);
}

#[test]
fn a_broker_restart_loses_nothing_and_counts_nothing_twice() {
    let directory = std::env::temp_dir().join(format!("tansu-e2e-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&directory);
    let port = free_port();
    let broker = Broker::start_persistent(&directory, port);
    let rating = start_rating(&broker);

    // 100 users rate movie 1 with 5; 50 of them also rate movie 2 with 1.
    let first: Vec<(String, String)> = (0..100)
        .map(|user| (key("1", &format!("u{user}")), event("1", &format!("u{user}"), Some(5), "put")))
        .chain((0..50).map(|user| (key("2", &format!("u{user}")), event("2", &format!("u{user}"), Some(1), "put"))))
        .collect();
    broker.produce_raw("ratings", &first);
    wait_until("the first batch is applied", WAIT, || {
        average(&rating, "2") == Some(1.0) && average(&rating, "1") == Some(5.0)
    });

    broker.stop();
    // Reads go on while the broker is down.
    assert_eq!(average(&rating, "1"), Some(5.0));
    let broker = Broker::start_persistent(&directory, port);

    // 100 more users rate movie 1 with 1, and the first 50 re-send theirs.
    let second: Vec<(String, String)> = (100..200)
        .map(|user| (key("1", &format!("u{user}")), event("1", &format!("u{user}"), Some(1), "put")))
        .chain((0..50).map(|user| (key("1", &format!("u{user}")), event("1", &format!("u{user}"), Some(5), "put"))))
        .collect();
    broker.produce_raw("ratings", &second);
    // Exactly 200 distinct users: 100 × 5 and 100 × 1.
    wait_until("the second batch is applied", WAIT, || average(&rating, "1") == Some(3.0));
    assert_eq!(average(&rating, "2"), Some(1.0));

    // A fresh instance replays the persisted topic to the same state.
    let fresh = start_rating(&broker);
    wait_until("a fresh instance replays to the same state", WAIT, || {
        average(&fresh, "1") == Some(3.0) && average(&fresh, "2") == Some(1.0)
    });
    drop(rating);
    drop(fresh);
    broker.stop();
    let _ = std::fs::remove_dir_all(&directory);
}

/// librdkafka properties from the settings reach every client (one that
/// does not exist stops the service, naming it). That a secret among them
/// never reaches the log is `secrets.rs`'s test, with every other secret.
#[test]
fn kafka_properties_are_passed_through() {
    let broker = Broker::start_in_memory();
    let rating = start_rating_and(&broker, &[("KAFKA_PROPERTIES", "client.rack=rack-1;client.id=rating-e2e")]);
    broker.produce_raw("ratings", &[(key("7", "ann"), event("7", "ann", Some(4), "put"))]);
    wait_until("the event is applied", WAIT, || average(&rating, "7") == Some(4.0));
    let status = rating.terminate(WAIT);
    assert!(status.success(), "exit status {status}");

    let mut refused = std::process::Command::new(e2e::process::binary("rating"))
        .args(["--listen", "127.0.0.1:0", "--kafka-brokers", &broker.address()])
        .args(["--kafka-property", "no.such.property=1"])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start rating");
    let exited = testbed::poll_until(std::time::Instant::now() + WAIT, Duration::from_millis(20), || {
        refused.try_wait().unwrap()
    })
    .expect("rating stops");
    let mut stderr = String::new();
    std::io::Read::read_to_string(refused.stderr.as_mut().unwrap(), &mut stderr).unwrap();
    assert!(!exited.success(), "{stderr}");
    assert!(stderr.contains("no.such.property"), "the error names the property:\n{stderr}");
}
