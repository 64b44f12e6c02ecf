//! Discovery through Consul's HTTP API, against the in-test stand-in:
//! the registration body, TTL heartbeats, passing-only lookups,
//! deregistration on SIGTERM, retrying an unreachable Consul, and the movie
//! service routing around an instance that has gone.
use std::{sync::Arc, time::Duration};

use e2e::{consul::FakeConsul, free_port, grpcurl, process::ServiceProcess, wait_until};
use platform::discovery::{ConsulRegistry, ConsulSettings, Instance, InstanceId, Registry, ServiceName};
use serde_json::json;

const WAIT: Duration = Duration::from_secs(15);

fn start_with_consul(binary: &str, consul: &FakeConsul, instance_id: &str) -> ServiceProcess {
    let address = consul.http_address();
    ServiceProcess::start(
        binary,
        &["--instance-id", instance_id, "--consul-check-ttl", "1s", "--consul-deregister-after", "1m"],
        &[("CONSUL_HTTP_ADDR", address.as_str())],
    )
}

#[test]
fn registers_with_a_ttl_check_heartbeats_and_deregisters_on_sigterm() {
    let consul = FakeConsul::start();
    let metadata = start_with_consul("metadata", &consul, "metadata-e2e");
    wait_until("metadata registers", WAIT, || consul.registered("metadata").len() == 1);

    let body = &consul.registered("metadata")[0].body;
    assert_eq!(body["Name"], "metadata");
    assert_eq!(body["ID"], "metadata-e2e");
    assert_eq!(body["Address"], "127.0.0.1");
    assert_eq!(body["Port"], metadata.port());
    assert_eq!(body["Check"]["CheckID"], "service:metadata-e2e");
    assert_eq!(body["Check"]["TTL"], "1s");
    assert_eq!(body["Check"]["DeregisterCriticalServiceAfter"], "60s");

    // Heartbeats every third of the TTL.
    wait_until("three heartbeats", WAIT, || consul.heartbeats("service:metadata-e2e") >= 3);

    let status = metadata.terminate(WAIT);
    assert!(status.success(), "exit status {status}");
    assert_eq!(consul.deregistered(), ["metadata-e2e"]);
    let requests = consul.requests();
    assert_eq!(
        requests.last().map(String::as_str),
        Some("PUT /v1/agent/service/deregister/metadata-e2e"),
        "{requests:?}"
    );
}

#[test]
fn an_unreachable_consul_is_retried_until_it_answers() {
    let port = free_port();
    let address = format!("127.0.0.1:{port}"); // no scheme, as Consul's own tools accept
    let metadata = ServiceProcess::start(
        "metadata",
        &["--instance-id", "metadata-late", "--consul-check-ttl", "1s"],
        &[("CONSUL_HTTP_ADDR", address.as_str())],
    );
    metadata.wait_for_log("registration failed; still serving", WAIT);
    // It serves meanwhile.
    let health = grpcurl::call(&metadata.authority(), "grpc.health.v1.Health/Check", "{}");
    assert_eq!(health["status"], "SERVING");

    let consul = FakeConsul::start_on(port);
    wait_until("metadata registers once Consul is up", WAIT, || consul.registered("metadata").len() == 1);
    wait_until("heartbeats follow", WAIT, || consul.heartbeats("service:metadata-late") >= 1);
}

/// That the token never reaches a log line is `secrets.rs`'s test, with
/// every other secret.
#[test]
fn with_acls_on_the_token_is_sent() {
    const TOKEN: &str = "0f1e2d3c-acl-token-secret";
    let consul = FakeConsul::start_with_token(TOKEN);
    let address = consul.http_address();
    // The flag rather than CONSUL_HTTP_TOKEN, which the Consul client
    // library would also read by itself.
    let with_token = ServiceProcess::start(
        "metadata",
        &["--instance-id", "metadata-acl", "--consul-check-ttl", "1s", "--consul-token", TOKEN],
        &[("CONSUL_HTTP_ADDR", address.as_str())],
    );
    wait_until("metadata registers with its token", WAIT, || consul.registered("metadata").len() == 1);
    wait_until("its heartbeats pass the ACL check", WAIT, || consul.heartbeats("service:metadata-acl") >= 2);
    assert_eq!(consul.refused(), 0, "{:?}", consul.requests());

    // Without the token Consul refuses, and the service says why.
    let without = ServiceProcess::start(
        "metadata",
        &["--instance-id", "metadata-anonymous", "--consul-check-ttl", "1s"],
        &[("CONSUL_HTTP_ADDR", address.as_str())],
    );
    without.wait_for_log("Permission denied: anonymous token lacks permission", WAIT);
    assert_eq!(consul.registered("metadata").len(), 1);

    let status = with_token.terminate(WAIT);
    assert!(status.success(), "exit status {status}");
    assert_eq!(consul.deregistered(), ["metadata-acl"]);
}

#[tokio::test]
async fn lookups_return_passing_instances_only() {
    let consul = FakeConsul::start();
    let registry = ConsulRegistry::new(ConsulSettings {
        address: consul.http_address(),
        token: None,
        check_ttl: Duration::from_secs(30),
        deregister_critical_after: Duration::from_secs(60),
    })
    .unwrap();
    let instance = |id: &str, port| Instance {
        id: InstanceId::new(id),
        service: ServiceName::new("rating"),
        host: "127.0.0.1".into(),
        port,
        metrics_port: None,
    };
    let (alive, silent) = (instance("rating-alive", 9001), instance("rating-silent", 9002));
    registry.register(&alive).await.unwrap();
    registry.register(&silent).await.unwrap();
    assert!(
        registry.healthy_instances(&ServiceName::new("rating")).await.unwrap().is_empty(),
        "TTL checks start critical"
    );

    registry.report_healthy(&alive).await.unwrap();
    assert_eq!(registry.healthy_instances(&ServiceName::new("rating")).await.unwrap(), vec![alive.clone()]);
    assert!(
        consul.requests().contains(&"GET /v1/health/service/rating?passing=true".to_string()),
        "{:?}",
        consul.requests()
    );

    registry.deregister(&alive).await.unwrap();
    assert!(registry.healthy_instances(&ServiceName::new("rating")).await.unwrap().is_empty());
    // A heartbeat for a forgotten instance says so, so it registers again.
    let error = registry.report_healthy(&alive).await.unwrap_err();
    assert!(matches!(error, platform::discovery::DiscoveryError::UnknownInstance(_)), "{error}");
    // Deregistering twice is not an error.
    registry.deregister(&alive).await.unwrap();
    let _: Arc<dyn Registry> = Arc::new(registry);
}

#[test]
fn movie_finds_its_peers_in_consul_and_routes_around_instances_that_go() {
    let consul = FakeConsul::start();
    let metadata = start_with_consul("metadata", &consul, "metadata-1");
    let rating_a = start_with_consul("rating", &consul, "rating-a");
    let rating_b = start_with_consul("rating", &consul, "rating-b");
    let consul_address = consul.http_address();
    let movie = ServiceProcess::start(
        "movie",
        &["--consul-check-ttl", "1s", "--discovery-refresh", "200ms", "--upstream-timeout", "2s"],
        &[("CONSUL_HTTP_ADDR", consul_address.as_str())],
    );
    wait_until("every instance registers", WAIT, || {
        consul.registered("rating").len() == 2
            && consul.registered("metadata").len() == 1
            && consul.registered("movie").len() == 1
    });

    let heat =
        r#"{"metadata": {"id": "1", "title": "Heat", "description": "A crime saga", "director": "Michael Mann"}}"#;
    grpcurl::call(&metadata.authority(), "MetadataService/PutMetadata", heat);
    // Both rating instances hold the same rating (each has its own store).
    for rating in [&rating_a, &rating_b] {
        let put = json!({"user_id": "alice", "record_id": "1", "record_type": "movie", "rating_value": 4}).to_string();
        grpcurl::call(&rating.authority(), "RatingService/PutRating", &put);
    }
    let details = || grpcurl::call(&movie.authority(), "MovieService/GetMovieDetails", r#"{"movie_id": "1"}"#);
    wait_until("movie answers with the rating", WAIT, || details()["movieDetails"]["rating"] == 4.0);
    assert!(
        consul.requests().iter().any(|request| request == "GET /v1/health/service/rating?passing=true"),
        "movie looks up passing instances only"
    );

    // rating-a crashes: no deregistration, its TTL lapses. Every call still
    // gets the rating from rating-b meanwhile.
    rating_a.crash();
    for _ in 0..20 {
        assert_eq!(details()["movieDetails"]["rating"], 4.0);
    }
    wait_until("the crashed instance's check goes critical", WAIT, || {
        let entries = consul_health(&consul, "rating");
        entries.len() == 1 && entries[0]["Service"]["ID"] == "rating-b"
    });
    // Once Consul stops listing it, movie stops trying it at all.
    let attempts_on_a = || {
        movie
            .log()
            .lines()
            .filter(|line| line.contains("instance unavailable") && line.contains("instance=rating-a"))
            .count()
    };
    wait_until("movie no longer tries rating-a", WAIT, || {
        let before = attempts_on_a();
        (0..10).all(|_| details()["movieDetails"]["rating"] == 4.0) && attempts_on_a() == before
    });

    // rating-b leaves cleanly: deregistered, and movie answers without a rating.
    assert!(rating_b.terminate(WAIT).success());
    assert!(consul.deregistered().contains(&"rating-b".to_string()));
    wait_until("movie answers without a rating", WAIT, || details()["movieDetails"].get("rating").is_none());
}

/// The passing instances of a service, as `curl .../v1/health/service/NAME?passing` shows them.
fn consul_health(consul: &FakeConsul, service: &str) -> Vec<serde_json::Value> {
    let url = format!("{}/v1/health/service/{service}?passing", consul.http_address());
    let output = std::process::Command::new("curl").args(["-sf", &url]).output().expect("run curl");
    assert!(output.status.success(), "curl {url} failed");
    serde_json::from_slice::<Vec<serde_json::Value>>(&output.stdout).expect("a JSON array")
}

#[test]
fn when_consul_goes_away_movie_keeps_the_instances_it_knew() {
    let consul = FakeConsul::start();
    let metadata = start_with_consul("metadata", &consul, "metadata-1");
    let rating = start_with_consul("rating", &consul, "rating-1");
    let consul_address = consul.http_address();
    let movie = ServiceProcess::start(
        "movie",
        &["--consul-check-ttl", "1s", "--discovery-refresh", "200ms"],
        &[("CONSUL_HTTP_ADDR", consul_address.as_str())],
    );
    wait_until("the dependencies register", WAIT, || {
        consul.registered("rating").len() == 1 && consul.registered("metadata").len() == 1
    });
    let heat =
        r#"{"metadata": {"id": "1", "title": "Heat", "description": "A crime saga", "director": "Michael Mann"}}"#;
    grpcurl::call(&metadata.authority(), "MetadataService/PutMetadata", heat);
    let put = r#"{"user_id": "alice", "record_id": "1", "record_type": "movie", "rating_value": 3}"#;
    grpcurl::call(&rating.authority(), "RatingService/PutRating", put);
    let details = || grpcurl::call(&movie.authority(), "MovieService/GetMovieDetails", r#"{"movie_id": "1"}"#);
    wait_until("movie answers with the rating", WAIT, || details()["movieDetails"]["rating"] == 3.0);

    drop(consul);
    movie.wait_for_log("cannot refresh instances; keeping the last known ones", WAIT);
    metadata.wait_for_log("heartbeat failed; still serving", WAIT);
    for _ in 0..5 {
        let answer = details();
        assert_eq!(answer["movieDetails"]["rating"], 3.0);
        assert_eq!(answer["movieDetails"]["metadata"]["title"], "Heat");
    }
}
