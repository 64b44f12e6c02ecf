//! The three services in the test process, through typed clients: every bad
//! input gets a precise status code and message, a configured rating range
//! is enforced, and the movie service's answers when a dependency is down.
use std::time::Duration;

use contract::api::{
    GetAggregatedRatingRequest, GetMetadataRequest, GetMovieDetailsRequest, Metadata, PutMetadataRequest,
    PutRatingRequest, metadata_service_client::MetadataServiceClient, movie_service_client::MovieServiceClient,
    rating_service_client::RatingServiceClient,
};
use e2e::{
    app::{TestApp, spawn_metadata, spawn_movie, spawn_rating},
    calls::heat,
};
use tonic::{Code, Status, transport::Channel};

struct Suite {
    metadata: TestApp<MetadataServiceClient<Channel>>,
    rating: TestApp<RatingServiceClient<Channel>>,
    movie: TestApp<MovieServiceClient<Channel>>,
}

async fn start_suite(movie_args: &[&str]) -> Suite {
    let metadata = spawn_metadata(&[]).await;
    let rating = spawn_rating(&[]).await;
    let movie = spawn_movie(&metadata.authority(), &rating.authority(), &with_timeout(movie_args)).await;
    Suite { metadata, rating, movie }
}

fn with_timeout<'a>(args: &[&'a str]) -> Vec<&'a str> {
    ["--upstream-timeout", "2s"].into_iter().chain(args.iter().copied()).collect()
}

fn rating_request(user: &str, record_id: &str, record_type: &str, value: i32) -> PutRatingRequest {
    PutRatingRequest {
        user_id: user.into(),
        record_id: record_id.into(),
        record_type: record_type.into(),
        rating_value: value,
    }
}

fn details(id: &str) -> GetMovieDetailsRequest {
    GetMovieDetailsRequest { movie_id: id.into() }
}

fn code_and_message<T>(result: Result<T, Status>) -> (Code, String) {
    match result {
        Ok(_) => panic!("the call succeeded where a failure was expected"),
        Err(status) => (status.code(), status.message().to_string()),
    }
}

#[tokio::test]
async fn bad_input_gets_precise_status_codes() {
    let suite = start_suite(&[]).await;
    let (mut metadata, mut rating, mut movie) =
        (suite.metadata.client.clone(), suite.rating.client.clone(), suite.movie.client.clone());
    let expect = |result: (Code, String), code: Code, message: &str| {
        assert_eq!((result.0, result.1.as_str()), (code, message));
    };

    let get_metadata = |id: &str| GetMetadataRequest { movie_id: id.into() };
    expect(
        code_and_message(metadata.get_metadata(get_metadata("")).await),
        Code::InvalidArgument,
        "movie_id must not be empty",
    );
    expect(
        code_and_message(metadata.get_metadata(get_metadata("404")).await),
        Code::NotFound,
        "no metadata for movie id \"404\"",
    );
    expect(
        code_and_message(metadata.put_metadata(PutMetadataRequest { metadata: None }).await),
        Code::InvalidArgument,
        "metadata is required",
    );
    let untitled = PutMetadataRequest { metadata: Some(Metadata { title: "x".into(), ..Default::default() }) };
    expect(
        code_and_message(metadata.put_metadata(untitled).await),
        Code::InvalidArgument,
        "metadata.id must not be empty",
    );

    let aggregated = |id: &str| GetAggregatedRatingRequest { record_id: id.into(), record_type: "movie".into() };
    expect(
        code_and_message(rating.get_aggregated_rating(aggregated("1")).await),
        Code::NotFound,
        "no ratings for record movie/1",
    );
    expect(
        code_and_message(rating.get_aggregated_rating(aggregated("")).await),
        Code::InvalidArgument,
        "record_id must not be empty",
    );
    for (request, message) in [
        (rating_request("", "1", "movie", 3), "user_id must not be empty"),
        (rating_request("u", "1", "", 3), "record_type must not be empty"),
        (rating_request("u", "1", "movie", 9), "rating_value must be between 1 and 5, got 9"),
        // An absent rating_value is proto3's 0.
        (rating_request("u", "1", "movie", 0), "rating_value must be between 1 and 5, got 0"),
        // What a database cannot hold is refused for every store.
        (rating_request("u\0x", "1", "movie", 3), "user_id must not contain a NUL character"),
        (rating_request("u", &"9".repeat(257), "movie", 3), "record_id must be at most 256 bytes long, not 257"),
    ] {
        expect(code_and_message(rating.put_rating(request).await), Code::InvalidArgument, message);
    }

    expect(
        code_and_message(movie.get_movie_details(details("")).await),
        Code::InvalidArgument,
        "movie_id must not be empty",
    );
    expect(code_and_message(movie.get_movie_details(details("404")).await), Code::NotFound, "movie \"404\" not found");
}

#[tokio::test]
async fn a_configured_rating_range_is_enforced() {
    let service = spawn_rating(&["--max-rating", "10"]).await;
    let mut client = service.client.clone();
    client.put_rating(rating_request("alice", "1", "movie", 10)).await.expect("10 is in 1..=10");
    let (code, message) = code_and_message(client.put_rating(rating_request("u", "1", "movie", 11)).await);
    assert_eq!((code, message.as_str()), (Code::InvalidArgument, "rating_value must be between 1 and 10, got 11"));
}

#[tokio::test]
async fn rating_down_answers_without_a_rating_by_default_and_unavailable_when_configured() {
    let suite = start_suite(&[]).await;
    let strict = spawn_movie(
        &suite.metadata.authority(),
        &suite.rating.authority(),
        &with_timeout(&["--on-rating-failure", "fail"]),
    )
    .await;
    suite.metadata.client.clone().put_metadata(heat()).await.expect("metadata stored");
    suite.rating.client.clone().put_rating(rating_request("alice", "1", "movie", 5)).await.expect("rating stored");
    let answer = suite.movie.client.clone().get_movie_details(details("1")).await.expect("details");
    assert_eq!(answer.into_inner().movie_details.and_then(|details| details.rating), Some(5.0));

    suite.rating.stop().await.expect("rating stops cleanly");

    // Default policy: the metadata, no rating, and a header saying why.
    let answer = suite.movie.client.clone().get_movie_details(details("1")).await.expect("details without a rating");
    assert_eq!(answer.metadata().get("x-rating-status").and_then(|value| value.to_str().ok()), Some("unavailable"));
    let answer = answer.into_inner().movie_details.expect("details");
    assert_eq!(answer.rating, None);
    assert_eq!(answer.metadata.map(|metadata| metadata.title).as_deref(), Some("Heat"));

    // --on-rating-failure fail: UNAVAILABLE naming the rating service.
    let (code, message) = code_and_message(strict.client.clone().get_movie_details(details("1")).await);
    assert_eq!(code, Code::Unavailable);
    assert!(message.starts_with("rating service is unavailable"), "{message}");
}

#[tokio::test]
async fn metadata_down_is_unavailable_naming_the_service() {
    let suite = start_suite(&[]).await;
    suite.metadata.stop().await.expect("metadata stops cleanly");
    let (code, message) = code_and_message(suite.movie.client.clone().get_movie_details(details("1")).await);
    assert_eq!(code, Code::Unavailable);
    assert!(message.starts_with("metadata service is unavailable"), "{message}");
}

#[tokio::test]
async fn a_stopped_service_drains_and_returns_cleanly() {
    let service = spawn_metadata(&[]).await;
    service.wait_until_serving(Duration::from_secs(5)).await;
    service.stop().await.expect("serving ends without an error");
}
