//! The ratingingester binary against a real broker: the repo's
//! ratingsdata.json reaches the rating service (a changed rating and a
//! delete included), from a file or piped to stdin, bad input publishes
//! nothing, and `--summary json` counts both for machines.
use std::{
    io::Write,
    path::{Path, PathBuf},
    process::{Command, Output, Stdio},
    time::{Duration, Instant},
};

use e2e::{
    broker::Broker,
    free_port, grpcurl,
    process::binary,
    rating::{average, start_with_kafka as start_rating},
    wait_until,
};
use serde_json::json;

const WAIT: Duration = Duration::from_secs(30);

fn ingest(broker: &str, file: &Path, extra: &[&str]) -> Output {
    Command::new(binary("ratingingester"))
        .arg(file)
        .args(extra)
        .env("KAFKA_BROKERS", broker)
        .env_remove("RUST_BACKTRACE")
        .env_remove("RUST_LIB_BACKTRACE")
        .output()
        .expect("run ratingingester")
}

fn repo_file(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(name)
}

/// The one JSON object a `--summary json` run prints on stdout.
fn json_summary(output: &Output) -> serde_json::Value {
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(stdout.lines().count(), 1, "one line on stdout: {stdout}\nstderr: {stderr}");
    serde_json::from_str(&stdout).unwrap_or_else(|error| panic!("{error}: {stdout}\nstderr: {stderr}"))
}

#[test]
fn ratingsdata_json_reaches_the_rating_service() {
    let broker = Broker::start_in_memory();
    let rating = start_rating(&broker);
    let output = ingest(&broker.address(), &repo_file("ratingsdata.json"), &[]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(stderr.contains("sent 20 of 20 rating events"), "{stderr}");

    // Movie 1: user 105 changed 3 → 5; movie 2: user 104 changed 2 → 3;
    // movie 3: user 103's rating was deleted.
    wait_until("every event is applied", WAIT, || {
        average(&rating, "1") == Some(27.0 / 6.0)
            && average(&rating, "2") == Some(20.0 / 6.0)
            && average(&rating, "3") == Some(11.0 / 4.0)
    });
    assert_eq!(broker.message_count("ratings"), 20);
}

#[test]
fn the_ingester_and_the_rating_service_put_one_key_on_one_partition() {
    let broker = Broker::start_in_memory();
    let rating = start_rating(&broker);
    let users: Vec<String> = (0..12).map(|user| format!("user{user}")).collect();
    let events: Vec<String> = users
        .iter()
        .map(|user| json!({"recordId": "p", "recordType": "movie", "userId": user, "ratingValue": 4}).to_string())
        .collect();
    let file = std::env::temp_dir().join(format!("partitions-e2e-{}.json", std::process::id()));
    std::fs::write(&file, events.join("\n")).unwrap();
    let output = ingest(&broker.address(), &file, &[]);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let _ = std::fs::remove_file(&file);
    wait_until("the puts are applied", WAIT, || average(&rating, "p") == Some(4.0));

    // Each user withdraws the rating through gRPC: the service publishes it.
    for user in &users {
        let delete = json!({"user_id": user, "record_id": "p", "record_type": "movie"}).to_string();
        grpcurl::call(&rating.authority(), "RatingService/DeleteRating", &delete);
    }
    assert_eq!(average(&rating, "p"), None);

    // Both producers hashed every key to the same partition, so a replay
    // applies each user's put before their delete.
    let messages = broker.read_all("ratings");
    assert_eq!(messages.len(), 2 * users.len());
    for user in &users {
        let key = format!("movie/p/{user}");
        let partitions: Vec<&serde_json::Value> = messages
            .iter()
            .filter(|message| message["key"] == key.as_str())
            .map(|message| &message["partition"])
            .collect();
        assert_eq!(partitions.len(), 2, "{key}");
        assert_eq!(partitions[0], partitions[1], "{key} was split across partitions");
    }
}

#[test]
fn bad_input_is_reported_precisely_and_publishes_nothing() {
    let broker = Broker::start_in_memory();
    let _rating = start_rating(&broker); // creates the topic
    let directory = std::env::temp_dir().join(format!("ratingingester-e2e-{}", std::process::id()));
    std::fs::create_dir_all(&directory).unwrap();
    let good = r#"{"recordId": "1", "recordType": "movie", "userId": "1", "ratingValue": 4}"#;
    let cases = [
        ("malformed.json", format!("[{good}, {{\"recordId\": ]"), "malformed JSON"),
        (
            "wrong-type.json",
            format!(r#"[{good}, {{"recordId": "1", "recordType": 1, "userId": "2", "ratingValue": 3}}]"#),
            "record 2: recordType must be a string, got 1",
        ),
        (
            "unknown-type.json",
            format!(r#"[{good}, {{"recordId": "1", "recordType": "movie", "userId": "2", "eventType": "upsert"}}]"#),
            r#"record 2: eventType must be "put" or "delete", got "upsert""#,
        ),
        ("empty.json", String::new(), "empty"),
        (
            "late-invalid.ndjson",
            format!(
                "{}{}",
                format!("{good}\n").repeat(50_000),
                r#"{"recordId": "1", "recordType": "movie", "userId": "3", "ratingValue": 0}"#
            ),
            "line 50001: ratingValue must be between 1 and 5, got 0",
        ),
    ];
    for (name, content, expected) in &cases {
        let path = directory.join(name);
        std::fs::write(&path, content).unwrap();
        let output = ingest(&broker.address(), &path, &[]);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{name} was accepted");
        assert!(stderr.contains(expected), "{name}: {stderr}");
        assert!(stderr.contains(&path.display().to_string()), "{name}: the message names the file: {stderr}");
    }
    let missing = directory.join("missing.json");
    let output = ingest(&broker.address(), &missing, &[]);
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("missing.json"), "names the missing file");
    assert_eq!(broker.message_count("ratings"), 0, "nothing was published");

    // --skip-invalid publishes the valid event and reports the other.
    let output = ingest(&broker.address(), &directory.join("wrong-type.json"), &["--skip-invalid"]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(stderr.contains("recordType must be a string, got 1"), "{stderr}");
    assert_eq!(broker.message_count("ratings"), 1);
    let _ = std::fs::remove_dir_all(&directory);
}

#[test]
fn events_piped_to_stdin_are_published() {
    let broker = Broker::start_in_memory();
    let _rating = start_rating(&broker); // creates the topic
    let mut ingester = Command::new(binary("ratingingester"))
        .arg("-")
        .env("KAFKA_BROKERS", broker.address())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run ratingingester");
    let events = std::fs::read(repo_file("ratingsdata.json")).unwrap();
    // Written, then closed: stdin is read to its end before anything is checked.
    ingester.stdin.take().unwrap().write_all(&events).unwrap();
    let output = ingester.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(stderr.contains("sent 20 of 20 rating events"), "{stderr}");
    assert_eq!(broker.message_count("ratings"), 20);
}

#[test]
fn an_unreachable_broker_fails_within_the_timeout() {
    let nowhere = format!("127.0.0.1:{}", free_port());
    let started = Instant::now();
    let output = ingest(&nowhere, &repo_file("ratingsdata.json"), &["--timeout", "2s"]);
    assert!(!output.status.success());
    assert!(started.elapsed() < Duration::from_secs(15), "took {:?}", started.elapsed());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains(&format!("cannot reach a Kafka broker at {nowhere}")), "{stderr}");
}

#[test]
fn the_json_summary_counts_what_was_sent_and_what_was_refused() {
    let broker = Broker::start_in_memory();
    let _rating = start_rating(&broker); // creates the topic
    let output = ingest(&broker.address(), &repo_file("ratingsdata.json"), &["--summary", "json"]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    let mut summary = json_summary(&output);
    let duration_ms = summary["duration_ms"].take();
    assert!(duration_ms.as_f64().is_some_and(|millis| millis > 0.0), "duration_ms: {duration_ms}");
    assert_eq!(
        summary,
        json!({
            "outcome": "ok", "topic": "ratings",
            "records": 20, "invalid": 0, "skipped": 0, "events": 20,
            "sent": 20, "failed": 0, "failures": {},
            "duration_ms": null, "error": null,
        })
    );
    assert!(!stderr.contains("sent 20 of 20"), "the JSON replaces the summary line: {stderr}");
    assert_eq!(broker.message_count("ratings"), 20);

    // Invalid input: still one object, and the record's diagnostic on stderr.
    let file = std::env::temp_dir().join(format!("ratingingester-summary-e2e-{}.json", std::process::id()));
    std::fs::write(
        &file,
        r#"[{"recordId": "1", "recordType": "movie", "userId": "1", "ratingValue": 4},
            {"recordId": "1", "recordType": 1, "userId": "2", "ratingValue": 3}]"#,
    )
    .unwrap();
    let output = ingest(&broker.address(), &file, &["--summary", "json"]);
    let _ = std::fs::remove_file(&file);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "invalid input was accepted: {stderr}");
    assert!(stderr.contains(&format!("{}:record 2: recordType must be a string, got 1", file.display())), "{stderr}");
    assert_eq!(
        json_summary(&output),
        json!({
            "outcome": "invalid_input", "topic": "ratings",
            "records": 2, "invalid": 1, "skipped": 0, "events": 0,
            "sent": 0, "failed": 0, "failures": {}, "duration_ms": null,
            "error": format!(
                "{}: 1 of 2 records are invalid; nothing was published (--skip-invalid publishes the valid ones)",
                file.display()
            ),
        })
    );
    assert_eq!(broker.message_count("ratings"), 20, "nothing more was published");

    // No broker: the input's counts are known, nothing was sent.
    let nowhere = format!("127.0.0.1:{}", free_port());
    let output = ingest(&nowhere, &repo_file("ratingsdata.json"), &["--summary", "json", "--timeout", "2s"]);
    assert!(!output.status.success());
    let summary = json_summary(&output);
    assert_eq!(summary["outcome"], "error", "{summary}");
    assert_eq!((&summary["events"], &summary["sent"], &summary["failed"]), (&json!(20), &json!(0), &json!(0)));
    assert!(summary["duration_ms"].is_null(), "publishing never started: {summary}");
    let error = summary["error"].as_str().unwrap_or_default();
    assert!(error.starts_with(&format!("cannot reach a Kafka broker at {nowhere}")), "{summary}");
}

#[test]
fn a_kafka_property_that_does_not_exist_is_named_and_nothing_is_sent() {
    let broker = Broker::start_in_memory();
    let output = ingest(&broker.address(), &repo_file("ratingsdata.json"), &["--kafka-property", "no.such.property=1"]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(stderr.contains("no.such.property"), "the error names the property:\n{stderr}");
}
