//! Traces across processes: the three services export spans over OTLP to a
//! receiver in the test, and one GetMovieDetails gives one trace whose
//! spans in metadata and rating are children of movie's client calls;
//! background work (discovery lookups, heartbeats) is never a trace.
use std::time::Duration;

use e2e::{
    broker::Broker,
    calls::{movie_details, put_movie},
    consul::FakeConsul,
    otlp::{OtlpReceiver, ReceivedSpan},
    process::{ServiceProcess, binary},
    rating, wait_until,
};
use tonic::Code;

fn start(binary: &str, args: &[&str], receiver: &OtlpReceiver) -> ServiceProcess {
    start_with(binary, args, &[], receiver)
}

fn start_with(binary: &str, args: &[&str], envs: &[(&str, &str)], receiver: &OtlpReceiver) -> ServiceProcess {
    let otlp = receiver.endpoint();
    let mut all = exporting(&otlp).to_vec();
    all.extend_from_slice(envs);
    let service = ServiceProcess::start(binary, args, &all);
    service.wait_until_serving(Duration::from_secs(30));
    service
}

/// The environment that turns the export on; spans leave in batches every
/// 100 ms instead of every 5 s.
fn exporting(endpoint: &str) -> [(&str, &str); 2] {
    [("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint), ("OTEL_BSP_SCHEDULE_DELAY", "100")]
}

fn named<'a>(spans: &'a [ReceivedSpan], service: &str, name: &str) -> Vec<&'a ReceivedSpan> {
    spans.iter().filter(|span| span.service == service && span.name == name).collect()
}

#[test]
fn one_get_movie_details_is_one_trace_across_the_three_services() {
    let receiver = OtlpReceiver::start();
    let metadata = start("metadata", &[], &receiver);
    let rating = start("rating", &[], &receiver);
    let peers = [metadata.authority(), rating.authority()];
    let movie = start("movie", &["--metadata-addrs", &peers[0], "--rating-addrs", &peers[1]], &receiver);

    put_movie(&metadata, "1");
    assert_eq!(movie_details(&movie, &["1"]), [Code::Ok]);

    let spans = receiver.wait_for("the spans of the call reach the receiver", |spans| {
        !named(spans, "metadata", "MetadataService/GetMetadata").is_empty()
            && !named(spans, "rating", "RatingService/GetAggregatedRating").is_empty()
            && !named(spans, "movie", "MovieService/GetMovieDetails").is_empty()
            && named(spans, "movie", "RatingService/GetAggregatedRating").len() == 1
    });
    let only = |service: &str, name: &str| -> ReceivedSpan {
        let found = named(&spans, service, name);
        assert_eq!(found.len(), 1, "one {name} span in {service}: {spans:#?}");
        found[0].clone()
    };
    let root = only("movie", "MovieService/GetMovieDetails");
    assert_eq!(root.parent_span_id, "", "the call starts the trace");
    let metadata_call = only("movie", "MetadataService/GetMetadata");
    let rating_call = only("movie", "RatingService/GetAggregatedRating");
    let metadata_server = only("metadata", "MetadataService/GetMetadata");
    let rating_server = only("rating", "RatingService/GetAggregatedRating");
    for span in [&metadata_call, &rating_call, &metadata_server, &rating_server] {
        assert_eq!(span.trace_id, root.trace_id, "one trace: {span:?}");
    }
    assert_eq!(metadata_server.parent_span_id, metadata_call.span_id, "metadata's span is the client call's child");
    assert_eq!(rating_server.parent_span_id, rating_call.span_id, "rating's span is the client call's child");

    // Movie's client spans descend from its server span (through the handler's span).
    let by_id = |id: &str| spans.iter().find(|span| span.span_id == id).cloned();
    for call in [&metadata_call, &rating_call] {
        let mut ancestor = by_id(&call.parent_span_id);
        while let Some(span) = ancestor.as_ref().filter(|span| span.span_id != root.span_id) {
            ancestor = by_id(&span.parent_span_id);
        }
        assert!(ancestor.is_some(), "{} descends from the server span: {spans:#?}", call.name);
    }
    assert!(!spans.iter().any(|span| span.name.starts_with("grpc.health")), "health checks make no spans: {spans:#?}");
    // PutMetadata was not part of the call: a trace of its own.
    assert_ne!(only("metadata", "MetadataService/PutMetadata").trace_id, root.trace_id);
}

#[test]
fn an_event_is_one_trace_from_its_publisher_to_the_rating_services_apply_span() {
    let receiver = OtlpReceiver::start();
    let broker = Broker::start_in_memory();
    let brokers = broker.address();
    let rating = start_with("rating", &["--write-timeout", "10s"], &[("KAFKA_BROKERS", &brokers)], &receiver);

    // ratingingester publishes a file of one event.
    let file = std::env::temp_dir().join(format!("traced-event-{}.json", std::process::id()));
    std::fs::write(&file, r#"[{"recordId": "7", "recordType": "movie", "userId": "ada", "ratingValue": 5}]"#)
        .expect("write the events file");
    let otlp = receiver.endpoint();
    let published = std::process::Command::new(binary("ratingingester"))
        .arg(&file)
        .args(["--kafka-brokers", &brokers])
        .envs(exporting(&otlp))
        .output()
        .expect("run ratingingester");
    let _ = std::fs::remove_file(&file);
    assert!(published.status.success(), "{}", String::from_utf8_lossy(&published.stderr));

    let spans = receiver.wait_for("the publish and apply spans reach the receiver", |spans| {
        !named(spans, "ratingingester", "ratings publish").is_empty()
            && !named(spans, "rating", "ratings apply").is_empty()
    });
    let publish = named(&spans, "ratingingester", "ratings publish")[0].clone();
    let apply = named(&spans, "rating", "ratings apply")[0].clone();
    assert_eq!(apply.trace_id, publish.trace_id, "one trace: {spans:#?}");
    assert_eq!(apply.parent_span_id, publish.span_id, "the apply span is the publish span's child");

    // A PutRating goes through the topic too: its apply span joins the call's trace.
    rating::put(&rating, "7", "bob", 3);
    let spans = receiver.wait_for("the PutRating call and its apply span reach the receiver", |spans| {
        !named(spans, "rating", "RatingService/PutRating").is_empty()
            && named(spans, "rating", "ratings apply").len() == 2
    });
    let call = named(&spans, "rating", "RatingService/PutRating")[0].clone();
    let applied: Vec<_> =
        named(&spans, "rating", "ratings apply").into_iter().filter(|span| span.trace_id == call.trace_id).collect();
    assert_eq!(applied.len(), 1, "the write's apply span is in the call's trace: {spans:#?}");
}

#[test]
fn json_log_lines_of_one_call_carry_its_trace_id_in_all_three_services() {
    let receiver = OtlpReceiver::start();
    let json = ["--log-format", "json"];
    let debug = [("RUST_LOG", "info,metadata=debug,rating=debug,movie=debug")];
    let metadata = start_with("metadata", &json, &debug, &receiver);
    let rating = start_with("rating", &json, &debug, &receiver);
    let peers = [metadata.authority(), rating.authority()];
    let args = ["--metadata-addrs", &peers[0], "--rating-addrs", &peers[1], "--log-format", "json"];
    let movie = start_with("movie", &args, &debug, &receiver);

    put_movie(&metadata, "1");
    rating::put(&rating, "1", "ada", 4);
    assert_eq!(movie_details(&movie, &["1"]), [Code::Ok]);
    let spans = receiver.wait_for("the call's server span reaches the receiver", |spans| {
        !named(spans, "movie", "MovieService/GetMovieDetails").is_empty()
    });
    let trace_id = named(&spans, "movie", "MovieService/GetMovieDetails")[0].trace_id.clone();

    let needle = format!("\"trace_id\":\"{trace_id}\"");
    for (service, message) in
        [(&movie, "fetching metadata and rating"), (&metadata, "metadata found"), (&rating, "average served")]
    {
        e2e::wait_until(&format!("a log line `{message}` in the call's trace"), Duration::from_secs(10), || {
            service.log().lines().any(|line| line.contains(message) && line.contains(&needle))
        });
        for line in service.log().lines() {
            serde_json::from_str::<serde_json::Value>(line)
                .unwrap_or_else(|error| panic!("not JSON ({error}): {line}"));
        }
    }
}

/// Traces hold calls and events. With Consul discovery, movie looks its
/// peers up every `--discovery-refresh` and every instance sends heartbeats:
/// exported, each would be a one-span trace, and Jaeger's newest traces
/// would be those instead of the calls.
#[test]
fn background_work_with_consul_discovery_exports_no_span() {
    let receiver = OtlpReceiver::start();
    let consul = FakeConsul::start();
    let address = consul.http_address();
    let with_consul = |binary: &str, args: &[&str]| {
        let mut all = vec!["--consul-check-ttl", "1s"];
        all.extend_from_slice(args);
        start_with(binary, &all, &[("CONSUL_HTTP_ADDR", &address)], &receiver)
    };
    let metadata = with_consul("metadata", &[]);
    let _rating = with_consul("rating", &[]);
    let movie = with_consul("movie", &["--discovery-refresh", "200ms"]);
    put_movie(&metadata, "1");
    wait_until("Consul lists the three services as passing", Duration::from_secs(15), || {
        ["metadata", "rating", "movie"].iter().all(|service| !consul.passing(service).is_empty())
    });

    // Idle: movie looks each peer up ten times, each instance heartbeats thrice.
    let checks: Vec<String> = ["metadata", "rating", "movie"]
        .iter()
        .flat_map(|service| consul.registered(service))
        .filter_map(|instance| instance.check_id)
        .collect();
    assert_eq!(checks.len(), 3, "each instance registered with a TTL check");
    let heartbeats_before: Vec<usize> = checks.iter().map(|check| consul.heartbeats(check)).collect();
    let idle_from = consul.requests().len();
    wait_until("ten lookups of each peer and three heartbeats of each instance", Duration::from_secs(30), || {
        let requests = consul.requests();
        let lookups = |service: &str| {
            let path = format!("/v1/health/service/{service}?");
            requests[idle_from..].iter().filter(|request| request.contains(&path)).count()
        };
        lookups("metadata") >= 10
            && lookups("rating") >= 10
            && checks.iter().zip(&heartbeats_before).all(|(check, before)| consul.heartbeats(check) >= before + 3)
    });

    // Then a call: a process exports its spans in the order they end, so once
    // the call's spans have arrived from all three, whatever the idle time
    // exported has arrived too.
    assert_eq!(movie_details(&movie, &["1"]), [Code::Ok]);
    let spans = receiver.wait_for("the call's spans reach the receiver from the three services", |spans| {
        !named(spans, "metadata", "MetadataService/GetMetadata").is_empty()
            && !named(spans, "rating", "RatingService/GetAggregatedRating").is_empty()
            && !named(spans, "movie", "MovieService/GetMovieDetails").is_empty()
    });
    let calls: Vec<&str> = ["MetadataService/PutMetadata", "MovieService/GetMovieDetails"]
        .iter()
        .flat_map(|name| spans.iter().filter(move |span| span.name == *name && span.parent_span_id.is_empty()))
        .map(|span| span.trace_id.as_str())
        .collect();
    let outside: Vec<&ReceivedSpan> = spans.iter().filter(|span| !calls.contains(&span.trace_id.as_str())).collect();
    assert!(outside.is_empty(), "spans outside the test's two calls were exported: {outside:#?}");
}
