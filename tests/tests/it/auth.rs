//! Authenticated writes: with `--auth-hs256-secret`, PutMetadata, PutRating
//! and DeleteRating need a bearer token signed with the secret, unexpired,
//! with the scope of the call; reads and health stay open; without a key
//! nothing needs a token. Through typed clients in the test process, and
//! through a real process with a token from `mint-token`, called with
//! grpcurl as the README shows.
use std::time::Duration;

use contract::api::{DeleteRatingRequest, GetAggregatedRatingRequest, GetMetadataRequest, PutRatingRequest};
use e2e::{
    app::{spawn_metadata, spawn_rating},
    calls::heat,
    grpcurl::grpcurl,
    process::{ServiceProcess, binary},
    tokens::{SECRET, mint, signed, with_bearer},
};
use tonic::Code;

const WAIT: Duration = Duration::from_secs(20);
const HOUR: i64 = 3600;

fn code<T>(answer: Result<T, tonic::Status>) -> (Code, String) {
    answer.map_or_else(|status| (status.code(), status.message().to_owned()), |_| (Code::Ok, String::new()))
}

#[tokio::test]
async fn put_metadata_needs_a_valid_token_with_metadata_write_and_reads_stay_open() {
    let app = spawn_metadata(&["--auth-hs256-secret", SECRET]).await;
    app.wait_until_serving(WAIT).await;
    let mut client = app.client.clone();

    assert_eq!(
        code(client.put_metadata(heat()).await),
        (
            Code::Unauthenticated,
            "PutMetadata needs a bearer token: send the header `authorization: Bearer <JWT>`".into()
        )
    );
    let refused = [
        ("not a JWT".to_owned(), "the bearer token is not a well-formed JWT"),
        (signed(SECRET, "metadata:write", -HOUR), "the bearer token has expired"),
        (
            signed("another-secret-of-at-least-32-bytes", "metadata:write", HOUR),
            "the bearer token's signature does not verify with this server's key",
        ),
    ];
    for (token, message) in refused {
        let answer = client.put_metadata(with_bearer(heat(), &token)).await;
        assert_eq!(code(answer), (Code::Unauthenticated, message.to_owned()));
    }
    let answer = client.put_metadata(with_bearer(heat(), &signed(SECRET, "ratings:write", HOUR))).await;
    assert_eq!(
        code(answer),
        (
            Code::PermissionDenied,
            "the bearer token does not carry the scope metadata:write, which PutMetadata needs".into()
        )
    );
    assert_eq!(app.health_status().await.map(|status| status.as_str_name()), Some("SERVING"));
    let read = client.get_metadata(GetMetadataRequest { movie_id: "1".into() }).await;
    assert_eq!(code(read).0, Code::NotFound, "reads need no token, and nothing was written");

    let token = signed(SECRET, "metadata:write", HOUR);
    assert_eq!(code(client.put_metadata(with_bearer(heat(), &token)).await).0, Code::Ok);
    let read = client.get_metadata(GetMetadataRequest { movie_id: "1".into() }).await.expect("a read without token");
    assert_eq!(read.into_inner().metadata.map(|metadata| metadata.title).as_deref(), Some("Heat"));
}

#[tokio::test]
async fn put_and_delete_rating_need_ratings_write() {
    let app = spawn_rating(&["--auth-hs256-secret", SECRET]).await;
    app.wait_until_serving(WAIT).await;
    let mut client = app.client.clone();
    let put = || PutRatingRequest {
        user_id: "ann".into(),
        record_id: "7".into(),
        record_type: "movie".into(),
        rating_value: 4,
    };
    let delete = || DeleteRatingRequest { user_id: "ann".into(), record_id: "7".into(), record_type: "movie".into() };
    let average = || GetAggregatedRatingRequest { record_id: "7".into(), record_type: "movie".into() };

    assert_eq!(code(client.put_rating(put()).await).0, Code::Unauthenticated);
    assert_eq!(code(client.delete_rating(delete()).await).0, Code::Unauthenticated);
    let metadata_writer = signed(SECRET, "metadata:write", HOUR);
    let (denied, message) = code(client.put_rating(with_bearer(put(), &metadata_writer)).await);
    assert_eq!(denied, Code::PermissionDenied);
    assert!(message.contains("ratings:write"), "{message}");
    assert_eq!(code(client.delete_rating(with_bearer(delete(), &metadata_writer)).await).0, Code::PermissionDenied);

    let rater = signed(SECRET, "ratings:write", HOUR);
    assert_eq!(code(client.put_rating(with_bearer(put(), &rater)).await).0, Code::Ok);
    let served = client.get_aggregated_rating(average()).await.expect("a read without token");
    assert_eq!(served.into_inner().rating_value, 4.0);
    assert_eq!(code(client.delete_rating(with_bearer(delete(), &rater)).await).0, Code::Ok);
    assert_eq!(code(client.get_aggregated_rating(average()).await).0, Code::NotFound);
}

#[tokio::test]
async fn without_a_key_writes_need_no_token() {
    let app = spawn_metadata(&[]).await;
    app.wait_until_serving(WAIT).await;
    assert_eq!(code(app.client.clone().put_metadata(heat()).await).0, Code::Ok);
}

#[test]
fn a_token_from_mint_token_lets_grpcurl_write_and_nothing_else_does() {
    let secret = [("AUTH_HS256_SECRET", SECRET)];
    let metadata = ServiceProcess::start("metadata", &[], &secret);
    metadata.wait_until_serving(WAIT);
    let address = metadata.authority();
    let data = r#"{"metadata": {"id": "1", "title": "Heat", "director": "Michael Mann"}}"#;
    let put = |extra: &[&str]| grpcurl(&address, Some("MetadataService/PutMetadata"), Some(data), extra);

    let without = put(&[]);
    assert_eq!(without.code(), "Unauthenticated");
    assert!(without.message().starts_with("PutMetadata needs a bearer token"), "{}", without.stderr);

    let token = mint(&["--scope", "metadata:write", "--expires-in", "10m"], &secret);
    let header = format!("authorization: Bearer {token}");
    assert_eq!(put(&["-H", &header]).json(), serde_json::json!({}));
    let read = grpcurl(&address, Some("MetadataService/GetMetadata"), Some(r#"{"movieId": "1"}"#), &[]);
    assert_eq!(read.json()["metadata"]["title"], "Heat");

    let reader = mint(&["--scope", "ratings:write"], &secret);
    assert_eq!(put(&["-H", &format!("authorization: Bearer {reader}")]).code(), "PermissionDenied");
    let (status, log) = metadata.terminate_with_log(WAIT);
    assert!(status.success(), "exit status {status}");
    assert!(log.contains("call refused"), "denials are logged:\n{log}");
}

#[test]
fn a_key_that_cannot_be_used_stops_the_start_naming_the_setting() {
    let started = |args: &[&str]| {
        std::process::Command::new(binary("metadata"))
            .args(["--listen", "127.0.0.1:0"])
            .args(args)
            .env_remove("AUTH_HS256_SECRET")
            .output()
            .expect("run metadata")
    };
    let short = started(&["--auth-hs256-secret", "short-secret"]);
    let stderr = String::from_utf8_lossy(&short.stderr);
    assert!(!short.status.success());
    assert!(
        stderr.contains("--auth-hs256-secret (AUTH_HS256_SECRET) is 12 bytes; HS256 needs at least 32"),
        "{stderr}"
    );
    assert!(!stderr.contains("short-secret"), "{stderr}");

    let missing = started(&["--auth-public-key-file", "/nonexistent/jwt.pem"]);
    let stderr = String::from_utf8_lossy(&missing.stderr);
    assert!(!missing.status.success());
    assert!(
        stderr.contains("cannot read --auth-public-key-file (AUTH_PUBLIC_KEY_FILE) file /nonexistent/jwt.pem"),
        "{stderr}"
    );
}
