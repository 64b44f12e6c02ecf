//! Discovery through Consul's HTTP API, against the in-test stand-in:
//! the registration body, TTL heartbeats, passing-only lookups,
//! deregistration on SIGTERM, retrying an unreachable Consul. The movie
//! service routing around an instance that has gone, and serving through a
//! Consul outage, are faults 1, 2 and 5 (tests/faults.rs).
use std::{sync::Arc, time::Duration};

use e2e::{consul::FakeConsul, free_port, grpcurl, process::ServiceProcess, wait_until};
use platform::discovery::{ConsulRegistry, ConsulSettings, Instance, InstanceId, Registry, ServiceName};

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
        server_name: None,
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
