//! The services' limits under overload, in the test process through typed
//! clients: a message over `--max-message-size` is refused
//! RESOURCE_EXHAUSTED.
use contract::api::{GetMovieDetailsRequest, Metadata, PutMetadataRequest};
use e2e::app::{spawn_metadata, spawn_movie, spawn_rating};
use tonic::{Code, Status};

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
