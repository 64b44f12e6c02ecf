//! The services' limits under overload, in the test process through typed
//! clients: a message over `--max-message-size` is refused
//! RESOURCE_EXHAUSTED, calls past `--max-concurrent-requests` are shed at
//! once (health checks never are), and a caller's deadline shorter than
//! `--upstream-timeout` is the one movie keeps, and passes on.
use std::time::{Duration, Instant};

use contract::api::{GetMovieDetailsRequest, Metadata, PutMetadataRequest};
use e2e::{
    app::{spawn_metadata, spawn_movie, spawn_rating},
    stand_in::GatedMetadata,
};
use tonic::{Code, Status};
use tonic_health::pb::health_check_response::ServingStatus;

const START: Duration = Duration::from_secs(10);

fn movie_with_description(description: String) -> PutMetadataRequest {
    PutMetadataRequest {
        metadata: Some(Metadata { id: "1".into(), title: "Heat".into(), description, director: "Michael Mann".into() }),
    }
}

fn details(id: &str) -> GetMovieDetailsRequest {
    GetMovieDetailsRequest { movie_id: id.into() }
}

fn failure<T>(result: Result<T, Status>) -> (Code, String) {
    match result {
        Ok(_) => panic!("the call succeeded where a failure was expected"),
        Err(status) => (status.code(), status.message().to_string()),
    }
}

#[tokio::test]
async fn a_message_over_the_limit_is_resource_exhausted_naming_the_sizes() {
    let metadata = spawn_metadata(&["--max-message-size", "1KiB"]).await;
    let mut client = metadata.client.clone();
    client.put_metadata(movie_with_description("x".repeat(900))).await.expect("under the limit");

    let (code, message) = failure(client.put_metadata(movie_with_description("x".repeat(2000))).await);
    assert_eq!(code, Code::ResourceExhausted, "{message}");
    let sizes = regex::Regex::new(
        r"^the request message is (\d+) bytes, over this server's limit of 1024 bytes \(--max-message-size\)$",
    )
    .expect("a valid pattern");
    let length: usize = sizes.captures(&message).map_or_else(|| panic!("{message}"), |found| found[1].parse().unwrap());
    assert!((2000..2100).contains(&length), "{message}");
    // The server goes on serving, the same connection included.
    client.put_metadata(movie_with_description("y".repeat(900))).await.expect("under the limit again");
}

#[tokio::test]
async fn the_default_limit_is_4_mib() {
    let metadata = spawn_metadata(&[]).await;
    let mut client = metadata.client.clone();
    client.put_metadata(movie_with_description("x".repeat(4 * 1024 * 1024 - 100))).await.expect("under 4 MiB");
    let (code, message) = failure(client.put_metadata(movie_with_description("x".repeat(4 * 1024 * 1024))).await);
    assert_eq!(code, Code::ResourceExhausted, "{message}");
    assert!(message.ends_with("over this server's limit of 4194304 bytes (--max-message-size)"), "{message}");
}

#[tokio::test]
async fn movie_limits_its_requests_and_its_dependencies_answers() {
    let metadata = spawn_metadata(&[]).await;
    let rating = spawn_rating(&[]).await;
    metadata.client.clone().put_metadata(movie_with_description("x".repeat(2000))).await.expect("stored");
    let movie = spawn_movie(
        &metadata.authority(),
        &rating.authority(),
        &["--max-message-size", "1KiB", "--upstream-timeout", "5s"],
    )
    .await;

    let (code, message) = failure(movie.client.clone().get_movie_details(details(&"9".repeat(2000))).await);
    assert_eq!(code, Code::ResourceExhausted, "{message}");

    // Metadata's answer is over movie's limit: movie's fault, not the caller's.
    let (code, message) = failure(movie.client.clone().get_movie_details(details("1")).await);
    assert_eq!(code, Code::Internal, "{message}");
    assert!(message.starts_with("metadata service failed"), "{message}");
}

#[tokio::test]
async fn calls_past_the_concurrency_limit_are_shed_at_once_until_the_load_drops() {
    let metadata = GatedMetadata::start().await;
    let rating = spawn_rating(&[]).await;
    let movie = spawn_movie(
        &metadata.authority(),
        &rating.authority(),
        &["--max-concurrent-requests", "2", "--upstream-timeout", "30s"],
    )
    .await;
    movie.wait_until_serving(START).await;

    // Two calls held by the slow dependency fill the limit.
    let held: Vec<_> = (0..2)
        .map(|_| {
            let mut client = movie.client.clone();
            tokio::spawn(async move { client.get_movie_details(details("1")).await })
        })
        .collect();
    metadata.wait_for_in_flight(2, START).await;

    // A third is refused at once, rather than queued behind them.
    let started = Instant::now();
    let third = tokio::time::timeout(Duration::from_secs(5), movie.client.clone().get_movie_details(details("1")))
        .await
        .expect("the call past the limit is answered at once, not queued");
    let (code, message) = failure(third);
    assert_eq!(code, Code::ResourceExhausted, "{message}");
    assert_eq!(
        message,
        "the movie service is serving its limit of 2 concurrent requests (--max-concurrent-requests); try again later"
    );
    assert!(started.elapsed() < Duration::from_secs(1), "shed after {:?}", started.elapsed());
    assert_eq!(movie.health_status().await, Some(ServingStatus::Serving), "health checks are never shed");
    assert_eq!(metadata.in_flight(), 2, "the shed call never reached the dependency");

    // The dependency answers: the held calls succeed, and new calls are served again.
    metadata.open();
    for call in held {
        let answer = call.await.expect("the task ran").expect("a held call succeeds");
        assert!(answer.into_inner().movie_details.is_some());
    }
    movie.client.clone().get_movie_details(details("1")).await.expect("served once the load dropped");
}

#[tokio::test]
async fn a_caller_deadline_shorter_than_the_upstream_timeout_bounds_the_call() {
    let metadata = GatedMetadata::start().await;
    let rating = spawn_rating(&[]).await;
    let movie = spawn_movie(&metadata.authority(), &rating.authority(), &["--upstream-timeout", "10s"]).await;
    movie.wait_until_serving(START).await;

    let deadline = Duration::from_millis(500);
    let mut request = tonic::Request::new(details("1"));
    request.set_timeout(deadline);
    let started = Instant::now();
    let (code, message) = failure(movie.client.clone().get_movie_details(request).await);
    let took = started.elapsed();
    assert_eq!(code, Code::DeadlineExceeded, "{message}");
    assert!(message.starts_with("metadata service did not answer within"), "{message}");
    assert!(took < deadline + Duration::from_millis(250), "answered after {took:?}, not within about {deadline:?}");

    // Metadata was told how long movie's caller would wait.
    let timeouts = metadata.timeouts();
    let sent = timeouts.first().cloned().flatten().expect("the call to metadata carried a grpc-timeout");
    let sent = parse_grpc_timeout(&sent);
    assert!(sent > Duration::ZERO && sent < deadline, "metadata was given {sent:?}");
}

/// A `grpc-timeout` as tonic writes it: digits and a unit.
fn parse_grpc_timeout(value: &str) -> Duration {
    let (amount, unit) = value.split_at(value.len() - 1);
    let amount: u64 = amount.parse().expect("digits");
    match unit {
        "S" => Duration::from_secs(amount),
        "m" => Duration::from_millis(amount),
        "u" => Duration::from_micros(amount),
        "n" => Duration::from_nanos(amount),
        other => panic!("unexpected unit {other:?}"),
    }
}
