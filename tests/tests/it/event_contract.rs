//! `docs/asyncapi.yaml` held to the code: the topics are the defaults of
//! the binaries' own flags, the payload is contract's JSON Schema, the
//! examples are events the codec accepts with the keys it writes, and the
//! headers and keys are those that the real binaries put on a real broker.
use std::{collections::BTreeSet, time::Duration};

use clap::Parser;
use contract::{
    event::{KafkaKey, MAX_MESSAGE_BYTES, RatingEvent},
    rating::RatingRange,
    schema::RATING_EVENT_SCHEMA,
};
use e2e::{
    broker::Broker,
    compose::workspace_root,
    otlp::OtlpReceiver,
    process::{ServiceProcess, binary},
    wait_until,
};
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(30);

/// The AsyncAPI document, as JSON.
fn document() -> Value {
    let path = workspace_root().join("docs/asyncapi.yaml");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|error| panic!("{}: {error}", path.display()));
    serde_norway::from_str(&text).unwrap_or_else(|error| panic!("docs/asyncapi.yaml is not YAML: {error}"))
}

/// What a local `$ref` (`#/a/b`) of the document points to.
fn resolve<'a>(document: &'a Value, reference: &Value) -> &'a Value {
    let reference = reference["$ref"].as_str().unwrap_or_else(|| panic!("{reference} is not a $ref"));
    let pointer = reference.strip_prefix('#').unwrap_or_else(|| panic!("{reference} is not local"));
    document.pointer(pointer).unwrap_or_else(|| panic!("{reference} points nowhere"))
}

/// The names a headers schema lists, and those it requires.
fn header_names(headers: &Value) -> (BTreeSet<String>, BTreeSet<String>) {
    let listed = headers["properties"].as_object().expect("headers with properties").keys().cloned().collect();
    let required = headers["required"].as_array().into_iter().flatten().map(|name| name.as_str().unwrap().to_owned());
    (listed, required.collect())
}

fn validator(schema: &Value) -> jsonschema::Validator {
    jsonschema::draft202012::new(schema).unwrap_or_else(|error| panic!("{schema} does not compile: {error}"))
}

/// The schema of the canonical key, from the document.
fn canonical_key(document: &Value) -> jsonschema::Validator {
    validator(&document["components"]["schemas"]["CanonicalKey"])
}

/// The rating service's defaults, read through its own flags.
fn rating_defaults() -> rating::Config {
    rating::Config::try_parse_from(["rating"]).expect("rating's defaults")
}

#[test]
fn the_document_names_the_topics_and_operations_the_binaries_use() {
    let document = document();
    assert_eq!(document["asyncapi"], "3.0.0");
    let defaults = rating_defaults().event_log;
    let ingester = ratingingester::Config::try_parse_from(["ratingingester"]).expect("ratingingester's defaults");
    assert_eq!(ingester.kafka.topic, defaults.kafka.topic, "both binaries default to one topic");

    let channels = document["channels"].as_object().expect("channels");
    let addresses: BTreeSet<&str> = channels.values().map(|channel| channel["address"].as_str().unwrap()).collect();
    assert_eq!(addresses, BTreeSet::from([defaults.kafka.topic.as_str(), defaults.dlq_topic.as_str()]));
    for (name, channel) in channels {
        let kafka = &channel["bindings"]["kafka"];
        assert_eq!(kafka["topic"], channel["address"], "{name}");
        assert_eq!(kafka["partitions"], defaults.topic_partitions, "{name}: rating's --topic-partitions");
        // Every event is kept: an in-memory store is rebuilt from the topic.
        assert_eq!(kafka["topicConfiguration"]["retention.ms"], -1, "{name}");
    }

    // Who sends and who receives, on which channel, which message.
    let proto = std::fs::read_to_string(workspace_root().join("proto/movie.proto")).expect("movie.proto");
    let mut roles = BTreeSet::new();
    for (name, operation) in document["operations"].as_object().expect("operations") {
        let channel = resolve(&document, &operation["channel"]);
        // AsyncAPI 3: an operation's messages are its channel's, referred to there.
        let channel_messages = format!("{}/messages/", operation["channel"]["$ref"].as_str().unwrap());
        for message in operation["messages"].as_array().expect("messages") {
            let reference = message["$ref"].as_str().unwrap();
            assert!(reference.starts_with(&channel_messages), "{name}: {reference} is not a message of its channel");
            resolve(&document, message);
        }
        let text = format!("{} {}", operation["title"], operation["description"]);
        for method in ["PutRating", "DeleteRating"] {
            if text.contains(method) {
                assert!(proto.contains(&format!("rpc {method}(")), "{name} names {method}, which movie.proto lacks");
            }
        }
        roles.insert((
            channel["address"].as_str().unwrap().to_owned(),
            operation["action"].as_str().unwrap().to_owned(),
        ));
    }
    let topic = defaults.kafka.topic.clone();
    let expected = BTreeSet::from([
        (topic.clone(), "send".into()),
        (topic, "receive".into()),
        (defaults.dlq_topic, "send".into()),
    ]);
    assert_eq!(roles, expected);

    // The guarantees in words name the size limit the codec applies.
    let description = document["info"]["description"].as_str().unwrap();
    assert!(description.contains(&MAX_MESSAGE_BYTES.to_string()), "the size limit is not stated");
    assert!(description.contains(contract::kafka::PARTITIONER), "the partitioner is not named");
}

#[test]
fn the_payload_is_the_contract_schema_and_the_examples_are_events_with_their_keys() {
    let document = document();
    let message = &document["components"]["messages"]["RatingEvent"];
    let payload = &message["payload"];
    assert_eq!(payload["schemaFormat"], "application/schema+json;version=draft-2020-12");
    let reference = payload["schema"]["$ref"].as_str().expect("the payload refers to the schema file");
    let file = workspace_root().join("docs").join(reference);
    let referenced: Value = serde_json::from_str(&std::fs::read_to_string(&file).expect("the schema file")).unwrap();
    assert_eq!(referenced, serde_json::from_str::<Value>(RATING_EVENT_SCHEMA).unwrap(), "{}", file.display());

    let schema = validator(&referenced);
    let keys = canonical_key(&document);
    let examples = message["examples"].as_array().expect("examples");
    assert!(examples.len() >= 3);
    for example in examples {
        let event = RatingEvent::from_value(example["payload"].clone(), RatingRange::default())
            .unwrap_or_else(|error| panic!("example {}: {error}", example["name"]));
        assert!(schema.is_valid(&example["payload"]), "example {}", example["name"]);
        let key = event.kafka_key();
        assert!(
            example["summary"].as_str().unwrap().contains(&format!("key {key}")),
            "example {}: key {key}",
            example["name"]
        );
        assert!(keys.is_valid(&json!(key)), "{key}");
    }
}

#[test]
fn the_canonical_key_pattern_is_the_key_the_codec_writes() {
    let document = document();
    let keys = canonical_key(&document);
    let documented = &document["components"]["schemas"];
    for example in documented["CanonicalKey"]["examples"]
        .as_array()
        .unwrap()
        .iter()
        .chain(documented["MessageKey"]["examples"].as_array().unwrap())
    {
        let key =
            KafkaKey::parse(example.as_str().unwrap().as_bytes()).unwrap_or_else(|error| panic!("{example}: {error}"));
        assert_eq!(json!(key.to_string()), *example, "the codec writes {example} so");
        assert!(keys.is_valid(example), "{example}");
    }
    // Ids with the characters the key escapes, and others.
    for (record_type, record_id, user) in [
        ("movie", "1", "105"),
        ("movie", "a/b", "c"),
        ("tv/show", "%", "%2F"),
        ("movie", "/", "/"),
        ("movie", "zoë 🎬", "x y"),
    ] {
        let event = json!({"recordType": record_type, "recordId": record_id, "userId": user, "eventType": "delete"});
        let key = RatingEvent::from_value(event, RatingRange::default()).unwrap().kafka_key();
        assert!(keys.is_valid(&json!(key)), "{key} does not match the documented pattern");
    }
    // Keys the codec would never write: wrong number of parts, escapes it does not use.
    for key in ["movie/1", "movie/1/2/3", "movie//1", "movie/a%2fb/1", "movie/1/50%", "movie/1/a\nb"] {
        assert!(KafkaKey::parse(key.as_bytes()).is_err(), "{key:?}");
        assert!(!keys.is_valid(&json!(key)), "{key:?} matches the documented pattern");
    }
}

#[test]
fn the_headers_and_keys_on_the_wire_are_the_documented_ones() {
    let document = document();
    let messages = &document["components"]["messages"];
    let (event_headers, _) = header_names(&messages["RatingEvent"]["headers"]);
    let (dead_letter_headers, required) = header_names(&messages["DeadLetter"]["headers"]);
    assert_eq!(required, dead_letter_headers, "every dead letter carries every header listed");
    assert!(dead_letter_headers.contains(rating::event_log::DLQ_REASON_HEADER));

    // The real binaries, exporting traces (so the trace context travels).
    let receiver = OtlpReceiver::start();
    let otlp = receiver.endpoint();
    let exporting = [("OTEL_EXPORTER_OTLP_ENDPOINT", otlp.as_str()), ("OTEL_BSP_SCHEDULE_DELAY", "100")];
    let broker = Broker::start_in_memory();
    let brokers = broker.address();
    let mut environment = vec![("KAFKA_BROKERS", brokers.as_str())];
    environment.extend(exporting);
    let rating = ServiceProcess::start("rating", &[], &environment);
    rating.wait_until_serving(WAIT);

    let file = std::env::temp_dir().join(format!("event-contract-{}.json", std::process::id()));
    std::fs::write(&file, r#"[{"recordId": "a/b", "recordType": "movie", "userId": "ann", "value": 4}]"#)
        .expect("write the events file");
    let published = std::process::Command::new(binary("ratingingester"))
        .arg(&file)
        .args(["--kafka-brokers", &brokers])
        .envs(exporting)
        .output()
        .expect("run ratingingester");
    let _ = std::fs::remove_file(&file);
    assert!(published.status.success(), "{}", String::from_utf8_lossy(&published.stderr));
    e2e::rating::put(&rating, "7", "bob", 3);
    // A poison pill, to be dead-lettered.
    broker.produce_bytes("ratings", &[(Some(b"movie/1/mallory".as_slice()), b"five stars!".as_slice())]);

    let schema = validator(&serde_json::from_str(RATING_EVENT_SCHEMA).unwrap());
    let keys = canonical_key(&document);
    let mut events = Vec::new();
    wait_until("both events and the pill are in the topic", WAIT, || {
        events = broker.read_all("ratings");
        events.len() == 3
    });
    for message in events.iter().filter(|message| message["value"] != "five stars!") {
        let names: BTreeSet<String> = message["headers"].as_object().unwrap().keys().cloned().collect();
        assert!(names.is_subset(&event_headers), "{names:?} are not all documented: {event_headers:?}");
        assert!(names.contains("traceparent"), "{message}");
        let payload: Value = serde_json::from_str(message["value"].as_str().unwrap()).unwrap();
        assert!(schema.is_valid(&payload), "{payload}");
        let event = RatingEvent::from_value(payload, RatingRange::default()).unwrap();
        assert_eq!(message["key"], event.kafka_key(), "{message}");
        assert!(keys.is_valid(&message["key"]), "{message}");
    }

    let mut dead = Vec::new();
    wait_until("the pill is dead-lettered", WAIT, || {
        dead = broker.read_all(&rating_defaults().event_log.dlq_topic);
        !dead.is_empty()
    });
    for message in &dead {
        let names: BTreeSet<String> = message["headers"].as_object().unwrap().keys().cloned().collect();
        assert_eq!(names, dead_letter_headers, "{message}");
    }
}
