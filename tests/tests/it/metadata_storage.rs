//! The metadata service on a database, seen from outside: replicas sharing
//! one PostgreSQL agree, a SQLite file outlives a restart, a service started
//! before its database waits for it (NOT_SERVING, reads UNAVAILABLE naming
//! the database without its password), a database lost mid-run makes reads
//! UNAVAILABLE (logged once a second, not once per call) until it is back,
//! and a failed migration stops the service with the error and a non-zero
//! exit.
use std::{
    process::{Command, Stdio},
    time::Duration,
};

use contract::api::{
    GetMetadataRequest, GetMovieDetailsRequest, Metadata, PutMetadataRequest,
    metadata_service_client::MetadataServiceClient,
};
use e2e::{
    app::{spawn_metadata, spawn_movie, spawn_rating},
    calls::put_movie,
    postgres::{PASSWORD, Postgres},
    process::{ServiceProcess, block_on, endpoint},
};
use tonic::Code;
use tonic_health::pb::health_check_response::ServingStatus;

const DEADLINE: Duration = Duration::from_secs(20);

fn heat(title: &str) -> PutMetadataRequest {
    PutMetadataRequest {
        metadata: Some(Metadata {
            id: "1".into(),
            title: title.into(),
            description: "A crime saga".into(),
            director: "Michael Mann".into(),
        }),
    }
}

fn get(id: &str) -> GetMetadataRequest {
    GetMetadataRequest { movie_id: id.into() }
}

#[tokio::test]
async fn two_replicas_on_one_postgres_serve_a_movie_put_through_either() {
    let postgres = Postgres::start();
    let url = postgres.create_database();
    let first = spawn_metadata(&["--database-url", &url]).await;
    let second = spawn_metadata(&["--database-url", &url]).await;
    first.wait_until_serving(DEADLINE).await;
    second.wait_until_serving(DEADLINE).await;
    let rating = spawn_rating(&[]).await;
    let replicas = format!("{},{}", first.authority(), second.authority());
    let movie = spawn_movie(&replicas, &rating.authority(), &["--upstream-timeout", "2s"]).await;
    movie.wait_until_serving(DEADLINE).await;

    first.client.clone().put_metadata(heat("Heat")).await.expect("put through the first replica");
    let read = second.client.clone().get_metadata(get("1")).await.expect("read through the second replica");
    assert_eq!(read.into_inner().metadata.map(|metadata| metadata.title), Some("Heat".into()));

    for call in 0..20 {
        let details = movie.client.clone().get_movie_details(GetMovieDetailsRequest { movie_id: "1".into() }).await;
        let details = details.unwrap_or_else(|status| panic!("call {call}: {status:?}")).into_inner();
        assert_eq!(
            details.movie_details.and_then(|details| details.metadata).map(|metadata| metadata.title),
            Some("Heat".into()),
            "call {call}"
        );
    }

    // A value PostgreSQL would refuse never reaches it: the edge refuses it.
    let mut with_nul = heat("He\0at");
    with_nul.metadata.as_mut().unwrap().id = "2".into();
    let status = second.client.clone().put_metadata(with_nul).await.unwrap_err();
    assert_eq!(
        (status.code(), status.message()),
        (Code::InvalidArgument, "metadata.title must not contain a NUL character")
    );
}

#[tokio::test]
async fn a_restarted_service_on_sqlite_still_has_the_movie() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite:{}", dir.path().join("metadata.db").display());
    let service = spawn_metadata(&["--database-url", &url]).await;
    service.wait_until_serving(DEADLINE).await;
    service.client.clone().put_metadata(heat("Heat")).await.unwrap();
    service.client.clone().put_metadata(heat("Heat (1995)")).await.unwrap();
    service.stop().await.expect("a clean stop");

    let restarted = spawn_metadata(&["--database-url", &url]).await;
    restarted.wait_until_serving(DEADLINE).await;
    let read = restarted.client.clone().get_metadata(get("1")).await.expect("the movie outlives the restart");
    assert_eq!(read.into_inner().metadata.map(|metadata| metadata.title), Some("Heat (1995)".into()));
}

#[tokio::test]
async fn a_service_started_before_its_postgres_waits_then_serves() {
    let port = e2e::free_port();
    let url = format!("postgres://postgres:{PASSWORD}@127.0.0.1:{port}/postgres");
    let service = spawn_metadata(&["--database-url", &url, "--database-connect-timeout", "300ms"]).await;

    wait("health answers", || async { service.health_status().await.is_some() }).await;
    assert_eq!(service.health_status().await, Some(ServingStatus::NotServing));
    let status = service.client.clone().get_metadata(get("1")).await.unwrap_err();
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    let database = format!("postgres://postgres:***@127.0.0.1:{port}/postgres");
    assert!(status.message().contains(&database), "the message names the database: {}", status.message());
    assert!(!status.message().contains(PASSWORD), "no password in {}", status.message());

    let _postgres = Postgres::start_on(port);
    service.wait_until_serving(DEADLINE).await;
    service.client.clone().put_metadata(heat("Heat")).await.expect("put once the database is there");
    assert!(service.client.clone().get_metadata(get("1")).await.is_ok());
}

#[test]
fn a_database_lost_mid_run_is_unavailable_logged_once_a_second_then_recovers() {
    const READS: usize = 20;
    const LOGGED: &str = "metadata store unavailable";
    let postgres = Postgres::start();
    let url = postgres.create_database();
    let metadata =
        ServiceProcess::start("metadata", &["--database-url", &url, "--database-connect-timeout", "1s"], &[]);
    metadata.wait_until_serving(DEADLINE);
    put_movie(&metadata, "1");
    let reads = || {
        block_on(async {
            let client = MetadataServiceClient::new(endpoint(&metadata).connect().await.expect("connect to metadata"));
            let mut reads = tokio::task::JoinSet::new();
            for _ in 0..READS {
                let mut client = client.clone();
                reads.spawn(async move { client.get_metadata(get("1")).await });
            }
            reads.join_all().await
        })
    };

    postgres.pause();
    for read in reads() {
        let status = read.expect_err("no read succeeds without the database");
        assert_eq!(status.code(), Code::Unavailable, "{status:?}");
        assert!(status.message().starts_with("the metadata store is unavailable: database postgres://"), "{status:?}");
    }
    // The reads failed within about a second of each other (the pool's
    // wait for a connection): one line a second, not one per read.
    metadata.wait_for_log(LOGGED, DEADLINE);
    let log = metadata.log();
    let lines: Vec<&str> = log.lines().filter(|line| line.contains(LOGGED)).collect();
    assert!((1..=2).contains(&lines.len()), "{READS} failed reads logged {} times:\n{log}", lines.len());
    assert!(lines.iter().all(|line| line.contains("WARN")), "{log}");
    // Reads that fail at the same moment as the first one logged may be
    // counted in its `held_back`: each failed read is logged or counted
    // once at most.
    let held_back: usize = lines
        .iter()
        .map(|line| {
            let count = line.split("held_back=").nth(1).and_then(|rest| rest.split_whitespace().next());
            count.and_then(|count| count.parse::<usize>().ok()).unwrap_or_else(|| panic!("no held_back in {line}"))
        })
        .sum();
    assert!(lines.len() + held_back <= READS, "{READS} reads, {} lines, {held_back} held back:\n{log}", lines.len());
    assert!(!log.contains(PASSWORD), "the password never reaches the log");

    postgres.resume();
    e2e::wait_until("reads recover", DEADLINE, || reads().iter().all(Result::is_ok));
}

async fn wait<F: std::future::Future<Output = bool>>(what: &str, condition: impl FnMut() -> F) {
    e2e::wait_for(what, DEADLINE, condition).await;
}

#[test]
fn a_failed_migration_stops_the_binary_with_the_error_and_a_non_zero_exit() {
    let postgres = Postgres::start();
    let url = postgres.create_database();
    let database = url.rsplit('/').next().unwrap().to_string();
    // A table the migration cannot create.
    postgres.execute(&database, "CREATE TABLE movies (id INTEGER PRIMARY KEY)");

    let mut child = Command::new(e2e::process::binary("metadata"))
        .args(["--listen", "127.0.0.1:0", "--database-url", &url])
        .env("RUST_LOG", "info")
        .env_remove("CONSUL_HTTP_ADDR")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start metadata");
    let deadline = std::time::Instant::now() + DEADLINE;
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("metadata kept running after a failed migration");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "exit status {}:\n{stderr}", output.status);
    let redacted = url.replace(PASSWORD, "***");
    assert!(stderr.contains(&format!("the migrations of database {redacted} failed")), "{stderr}");
    assert!(stderr.contains("already exists"), "the cause is shown:\n{stderr}");
    assert!(!stderr.contains(PASSWORD), "no password in:\n{stderr}");
}
