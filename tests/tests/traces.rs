//! Traces across processes: the three services export spans over OTLP to a
//! receiver in the test, and one GetMovieDetails gives one trace whose
//! spans in metadata and rating are children of movie's client calls.
use std::time::Duration;

use contract::api::{
    GetMovieDetailsRequest, Metadata, PutMetadataRequest, metadata_service_client::MetadataServiceClient,
    movie_service_client::MovieServiceClient,
};
use e2e::{
    otlp::{OtlpReceiver, ReceivedSpan},
    process::{ServiceProcess, block_on, endpoint},
};

fn start(binary: &str, args: &[&str], receiver: &OtlpReceiver) -> ServiceProcess {
    let otlp = receiver.endpoint();
    // Spans leave in batches every 100 ms instead of every 5 s.
    let envs = [("OTEL_EXPORTER_OTLP_ENDPOINT", otlp.as_str()), ("OTEL_BSP_SCHEDULE_DELAY", "100")];
    let service = ServiceProcess::start(binary, args, &envs);
    service.wait_until_serving(Duration::from_secs(10));
    service
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

    block_on(async {
        let channel = endpoint(&metadata).connect().await.expect("connect to metadata");
        let heat = Metadata { id: "1".into(), title: "Heat".into(), ..Default::default() };
        MetadataServiceClient::new(channel).put_metadata(PutMetadataRequest { metadata: Some(heat) }).await
    })
    .expect("PutMetadata succeeds");
    block_on(async {
        let channel = endpoint(&movie).connect().await.expect("connect to movie");
        MovieServiceClient::new(channel).get_movie_details(GetMovieDetailsRequest { movie_id: "1".into() }).await
    })
    .expect("GetMovieDetails succeeds");

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
