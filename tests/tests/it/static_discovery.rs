//! The three real binaries with static discovery, driven with grpcurl as
//! users drive them: reflection, health, the happy path, and graceful
//! shutdown on signals. (Status codes and dependencies going down are
//! tested in process, in `services.rs`.)
use std::time::Duration;

use e2e::{
    grpcurl::{self, call, call_failing},
    process::ServiceProcess,
};
use serde_json::json;

const STOP: Duration = Duration::from_secs(15);

struct Suite {
    metadata: ServiceProcess,
    rating: ServiceProcess,
    movie: ServiceProcess,
}

fn start_suite(movie_args: &[&str]) -> Suite {
    let metadata = ServiceProcess::start("metadata", &[], &[]);
    let rating = ServiceProcess::start("rating", &[], &[]);
    let movie = start_movie(&metadata.authority(), &rating.authority(), movie_args);
    for service in [&metadata, &rating, &movie] {
        service.wait_until_serving(STOP);
    }
    Suite { metadata, rating, movie }
}

fn start_movie(metadata: &str, rating: &str, extra: &[&str]) -> ServiceProcess {
    let mut args = vec!["--metadata-addrs", metadata, "--rating-addrs", rating, "--upstream-timeout", "2s"];
    args.extend_from_slice(extra);
    ServiceProcess::start("movie", &args, &[("RUST_LOG", "info,consulrs=warn,movie=debug")])
}

fn put_heat(metadata: &ServiceProcess) {
    let heat =
        r#"{"metadata": {"id": "1", "title": "Heat", "description": "A crime saga", "director": "Michael Mann"}}"#;
    call(&metadata.authority(), "MetadataService/PutMetadata", heat);
}

fn put_rating(rating: &ServiceProcess, user: &str, value: i32) {
    let request = json!({"user_id": user, "record_id": "1", "record_type": "movie", "rating_value": value}).to_string();
    call(&rating.authority(), "RatingService/PutRating", &request);
}

fn details(movie: &ServiceProcess, id: &str) -> grpcurl::GrpcurlOutput {
    call_failing(&movie.authority(), "MovieService/GetMovieDetails", &json!({"movie_id": id}).to_string())
}

#[test]
fn reflection_health_and_the_happy_path() {
    let suite = start_suite(&[]);

    for (process, service) in
        [(&suite.metadata, "MetadataService"), (&suite.rating, "RatingService"), (&suite.movie, "MovieService")]
    {
        let listed = grpcurl::list(&process.authority());
        assert_eq!(
            listed,
            [
                service,
                "grpc.health.v1.Health",
                "grpc.reflection.v1.ServerReflection",
                "grpc.reflection.v1alpha.ServerReflection"
            ],
            "reflection lists what this server serves, and only that"
        );
        let health = call(&process.authority(), "grpc.health.v1.Health/Check", "{}");
        assert_eq!(health["status"], "SERVING");
        let health =
            call(&process.authority(), "grpc.health.v1.Health/Check", &json!({"service": service}).to_string());
        assert_eq!(health["status"], "SERVING", "{service}");
    }

    put_heat(&suite.metadata);
    // Not rated yet: details without a rating, not an error.
    let answer = details(&suite.movie, "1").json();
    assert_eq!(answer["movieDetails"]["metadata"]["title"], "Heat");
    assert!(answer["movieDetails"].get("rating").is_none(), "{answer}");

    put_rating(&suite.rating, "alice", 5);
    put_rating(&suite.rating, "bob", 2);
    put_rating(&suite.rating, "alice", 4); // alice changes her mind: replaced, not added
    let answer = details(&suite.movie, "1").json();
    assert_eq!(answer["movieDetails"]["rating"], 3.0, "{answer}");
    assert_eq!(answer["movieDetails"]["metadata"]["director"], "Michael Mann");

    let aggregated = call(
        &suite.rating.authority(),
        "RatingService/GetAggregatedRating",
        r#"{"record_id": "1", "record_type": "movie"}"#,
    );
    assert_eq!(aggregated["ratingValue"], 3.0);

    let delete = r#"{"user_id": "bob", "record_id": "1", "record_type": "movie"}"#;
    call(&suite.rating.authority(), "RatingService/DeleteRating", delete);
    assert_eq!(details(&suite.movie, "1").json()["movieDetails"]["rating"], 4.0);

    for process in [suite.movie, suite.rating, suite.metadata] {
        let status = process.terminate(STOP);
        assert!(status.success(), "exit status {status}");
    }
}

#[test]
fn sigint_stops_cleanly_with_exit_code_zero() {
    let metadata = ServiceProcess::start("metadata", &[], &[]);
    metadata.signal(nix::sys::signal::Signal::SIGINT);
    let status = metadata.wait_exit(STOP);
    assert!(status.success(), "exit status {status}");
}

#[test]
fn shutdown_lets_an_in_flight_call_finish() {
    // A "metadata service" that accepts connections but never speaks gRPC:
    // each GetMovieDetails stays in flight until the 2 s upstream deadline.
    let black_hole = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let rating = ServiceProcess::start("rating", &[], &[]);
    let movie = start_movie(&black_hole.local_addr().unwrap().to_string(), &rating.authority(), &[]);
    let address = movie.authority();
    let in_flight = std::thread::spawn(move || details_at(&address, "1"));
    movie.wait_for_log("fetching metadata and rating", Duration::from_secs(5));
    let started = std::time::Instant::now();
    let status = movie.terminate(STOP);
    assert!(status.success(), "exit status {status}");
    assert!(started.elapsed() >= Duration::from_millis(500), "exited before the call finished");
    // The caller got the service's own answer, not a broken connection.
    let output = in_flight.join().unwrap();
    assert_eq!(output.code(), "DeadlineExceeded", "{}", output.stderr);
    assert!(output.message().starts_with("metadata service did not answer"), "{}", output.message());
}

fn details_at(address: &str, id: &str) -> grpcurl::GrpcurlOutput {
    call_failing(address, "MovieService/GetMovieDetails", &json!({"movie_id": id}).to_string())
}
