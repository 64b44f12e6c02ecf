//! Discovery through DNS, as in Kubernetes with a headless Service, against
//! a real DNS server (dnsmasq on loopback) and the real binaries: movie
//! resolves `rating.test` to every rating instance behind it, spreads its
//! calls over all of them, loses none when one leaves, and calls a new one
//! within a few refreshes.
use std::{
    net::{IpAddr, Ipv4Addr, SocketAddr},
    time::{Duration, Instant},
};

use e2e::{
    calls::{movie_details, put_movie},
    certificates::TestCa,
    dns::Dnsmasq,
    free_port,
    load::{LoadFigures, SteadyLoad, millis},
    process::ServiceProcess,
    scrape::metric,
    wait_until,
};
use platform::discovery::{DnsRegistry, Instance, Registry, ServiceName, StaticRegistry};
use serde_json::json;

const START: Duration = Duration::from_secs(20);
const REFRESH: Duration = Duration::from_millis(500);
/// How long a new instance may take to get calls once DNS lists it: a few
/// refreshes.
const NEW_INSTANCE_BOUND: Duration = Duration::from_millis(2_500);
const CALLS_PER_SECOND: u32 = 100;

fn loopback(last: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, 0, last))
}

/// A port free on each of the loopback addresses `lasts`, for instances
/// that share it as the pods behind a Service share theirs.
fn port_free_on(lasts: &[u8]) -> u16 {
    for _ in 0..20 {
        let first = std::net::TcpListener::bind((loopback(lasts[0]), 0)).expect("bind a port");
        let port = first.local_addr().expect("its address").port();
        let others: Result<Vec<_>, _> =
            lasts[1..].iter().map(|last| std::net::TcpListener::bind((loopback(*last), port))).collect();
        if others.is_ok() {
            return port;
        }
    }
    panic!("no port free on every address of {lasts:?}");
}

/// A rating instance at `127.0.0.LAST:port`, with discovery by DNS (which
/// registers nothing), metrics on a port of its own and a maximum
/// connection age, serving.
struct Rating {
    process: ServiceProcess,
    metrics: SocketAddr,
}

impl Rating {
    fn start(last: u8, port: u16, dns: &Dnsmasq) -> Self {
        let metrics = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let (metrics_flag, dns_server) = (metrics.to_string(), dns.address().to_string());
        let process = ServiceProcess::start_at(
            "rating",
            SocketAddr::new(loopback(last), port),
            // Movie's connections to it are sent GOAWAY several times in
            // the test, as in a cluster set to rebalance: no call is lost.
            &["--metrics-addr", &metrics_flag, "--max-connection-age", "300ms"],
            &[("DISCOVERY", "dns"), ("DNS_SERVER", &dns_server)],
        );
        process.wait_until_serving(START);
        Self { process, metrics }
    }

    /// GetAggregatedRating calls this instance has served, whatever their
    /// answer (none of these movies is rated: NOT_FOUND).
    fn calls(&self) -> f64 {
        metric(self.metrics, "rpc_server_call_duration_seconds_count", "rpc_method=\"GetAggregatedRating\"")
    }
}

#[test]
fn movie_spreads_calls_over_every_address_of_the_name_and_follows_it_as_instances_come_and_go() {
    const PORT_SHARERS: [u8; 4] = [2, 3, 4, 5];
    let port = port_free_on(&PORT_SHARERS);
    let dns = Dnsmasq::start(&[
        ("metadata.test", &[loopback(1)][..]),
        ("rating.test", &[loopback(2), loopback(3), loopback(4)][..]),
    ]);
    let dns_server = dns.address().to_string();

    let metadata = ServiceProcess::start("metadata", &[], &[("DISCOVERY", "dns"), ("DNS_SERVER", &dns_server)]);
    metadata.wait_until_serving(START);
    metadata.wait_for_log(&format!("discovery=dns [via {dns_server}]"), START);
    metadata.wait_for_log("nothing to register", START);
    put_movie(&metadata, "1");
    let mut ratings: Vec<(u8, Rating)> = [2, 3, 4].map(|last| (last, Rating::start(last, port, &dns))).into();

    let (metadata_name, rating_name) = (format!("metadata.test:{}", metadata.port()), format!("rating.test:{port}"));
    let refresh = format!("{}ms", REFRESH.as_millis());
    let movie_metrics = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let movie_metrics_flag = movie_metrics.to_string();
    let movie = ServiceProcess::start(
        "movie",
        &["--upstream-timeout", "2s", "--metrics-addr", &movie_metrics_flag],
        &[
            ("DISCOVERY", "dns"),
            ("DNS_SERVER", &dns_server),
            ("METADATA_ADDRS", &metadata_name),
            ("RATING_ADDRS", &rating_name),
            ("DISCOVERY_REFRESH", &refresh),
        ],
    );
    movie.wait_until_serving(START);
    movie.wait_for_log(
        &format!("discovery=dns [metadata={metadata_name} rating={rating_name} via {dns_server}]"),
        START,
    );

    // The rating instances movie calls at once: its pool.
    let pool = || metric(movie_metrics, "discovery_instances", "service=\"rating\"");
    let load = SteadyLoad::movie_details(&movie.authority(), "1", CALLS_PER_SECOND, Duration::from_secs(2));

    // (1) Every address behind the name is in the pool, and gets calls.
    wait_until("movie's pool holds the three rating instances", START, || pool() == 3.0);
    wait_until("every rating instance is called", START, || ratings.iter().all(|(_, rating)| rating.calls() >= 10.0));
    let spread: Vec<f64> = ratings.iter().map(|(_, rating)| rating.calls()).collect();

    // (2) One leaves: stopped (SIGTERM) while DNS still lists it, as a pod
    // that Kubernetes terminates before its Endpoints change reaches the
    // DNS server, then out of DNS.
    let (_, leaving) = ratings.remove(1);
    let served_by_the_one_that_left = leaving.calls();
    let left_at = load.now();
    let status = leaving.process.terminate(START);
    assert!(status.success(), "the rating instance stopped with {status}");
    let before: Vec<f64> = ratings.iter().map(|(_, rating)| rating.calls()).collect();
    wait_until("the instances left keep being called", START, || {
        ratings.iter().zip(&before).all(|((_, rating), before)| rating.calls() >= before + 10.0)
    });
    dns.set("rating.test", &[loopback(2), loopback(4)]);
    wait_until("movie's pool holds the two rating instances left", START, || pool() == 2.0);

    // (3) A new one comes: serving first, then in DNS, as a pod that
    // turned ready.
    ratings.push((5, Rating::start(5, port, &dns)));
    dns.set("rating.test", &[loopback(2), loopback(4), loopback(5)]);
    let listed = Instant::now();
    let newcomer = &ratings.last().expect("just added").1;
    wait_until("the new instance is called", NEW_INSTANCE_BOUND, || newcomer.calls() >= 1.0);
    let first_call_after = listed.elapsed();
    wait_until("the new instance takes its share", START, || newcomer.calls() >= 10.0);
    assert_eq!(pool(), 3.0, "movie's pool holds the two instances and the new one");

    let records = load.stop();
    let all = LoadFigures::all(&records);
    let after_the_leave = LoadFigures::of(&records, left_at, Duration::MAX);
    let figures = json!({
        "calls": all.to_json(),
        "calls_after_an_instance_left": after_the_leave.to_json(),
        "rating_calls_per_instance_at_first": spread,
        "rating_calls_of_the_instance_that_left": served_by_the_one_that_left,
        "rating_calls_per_instance_at_the_end":
            ratings.iter().map(|(last, rating)| (format!("127.0.0.{last}"), rating.calls())).collect::<Vec<_>>(),
        "new_instance_first_call_ms": millis(first_call_after),
        "refresh_ms": millis(REFRESH),
    });
    println!("dns discovery figures: {figures}");
    assert_eq!(all.failed(), 0, "{figures}");
    assert!(all.sent > 100, "{figures}");
}

/// The registry alone against the same server: every A and AAAA record of
/// a name, one instance each with the configured port; a name that does
/// not exist is an empty list; a server that cannot answer is an error, so
/// that the pool keeps what it had.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lookups_give_every_address_of_a_name_and_none_for_a_name_that_does_not_exist() {
    let v6: IpAddr = "::1".parse().unwrap();
    let dns = tokio::task::spawn_blocking(move || {
        Dnsmasq::start(&[("rating.test", &[loopback(2), loopback(3), v6][..]), ("v6-only.test", &[v6][..])])
    })
    .await
    .unwrap();
    let rating = ServiceName::new("rating");
    let registry_for = |name: &str, server: SocketAddr| {
        let peers = StaticRegistry::new().with_service(rating.clone(), &[format!("{name}:8082")]).unwrap();
        DnsRegistry::new(Some(server), &peers).unwrap()
    };

    let registry = registry_for("rating.test", dns.address());
    let instances = registry.healthy_instances(&rating).await.unwrap();
    let mut authorities: Vec<String> = instances.iter().map(Instance::authority).collect();
    authorities.sort();
    assert_eq!(authorities, ["127.0.0.2:8082", "127.0.0.3:8082", "[::1]:8082"]);

    // No A record, one AAAA record.
    let found = registry_for("v6-only.test", dns.address()).healthy_instances(&rating).await.unwrap();
    assert_eq!(found.iter().map(Instance::authority).collect::<Vec<_>>(), ["[::1]:8082"]);
    let found = registry_for("missing.test", dns.address()).healthy_instances(&rating).await.unwrap();
    assert!(found.is_empty(), "{found:?}");

    // A name outside the server's domain, with no server to forward it to:
    // the answer is an error (REFUSED), not an empty list.
    let error = registry_for("rating.example", dns.address()).healthy_instances(&rating).await.unwrap_err();
    assert!(matches!(error, platform::discovery::DiscoveryError::Unreachable { .. }), "{error}");
    assert!(std::error::Error::source(&error).is_some(), "the resolver's error is kept");
}

/// Over TLS, an instance found by DNS is checked against the name movie
/// resolved, not its address: certificates name a Service (`rating.test`),
/// never the address of a pod behind it.
#[test]
fn movie_checks_the_certificates_of_instances_found_by_dns_against_the_name_it_resolved() {
    let dir = tempfile::tempdir().expect("a directory for the certificates");
    let ca = TestCa::new(dir.path(), "suite");
    let (metadata_cert, rating_cert) = (ca.issue("metadata", &["metadata.test"]), ca.issue("rating", &["rating.test"]));
    let port = port_free_on(&[2, 3]);
    let dns =
        Dnsmasq::start(&[("metadata.test", &[loopback(1)][..]), ("rating.test", &[loopback(2), loopback(3)][..])]);
    let dns_server = dns.address().to_string();
    let dns_env = [("DISCOVERY", "dns"), ("DNS_SERVER", dns_server.as_str())];

    let metadata = ServiceProcess::start(
        "metadata",
        &["--tls-cert", metadata_cert.cert(), "--tls-key", metadata_cert.key()],
        &dns_env,
    );
    let ratings: Vec<(ServiceProcess, SocketAddr)> = [2, 3]
        .map(|last| {
            let metrics = SocketAddr::from(([127, 0, 0, 1], free_port()));
            let metrics_flag = metrics.to_string();
            let args =
                ["--tls-cert", rating_cert.cert(), "--tls-key", rating_cert.key(), "--metrics-addr", &metrics_flag];
            (ServiceProcess::start_at("rating", SocketAddr::new(loopback(last), port), &args, &dns_env), metrics)
        })
        .into();
    let (metadata_name, rating_name) = (format!("metadata.test:{}", metadata.port()), format!("rating.test:{port}"));
    let ca_file = ca.ca();
    let movie = ServiceProcess::start(
        "movie",
        &["--upstream-timeout", "2s"],
        &[
            ("DISCOVERY", "dns"),
            ("DNS_SERVER", &dns_server),
            ("METADATA_ADDRS", &metadata_name),
            ("RATING_ADDRS", &rating_name),
            ("UPSTREAM_TLS_CA", &ca_file),
        ],
    );
    movie.wait_until_serving(START);

    // An unknown movie: metadata's NOT_FOUND comes back through TLS (a
    // failed handshake would be UNAVAILABLE), and rating is asked alongside.
    let answered = || movie_details(&movie, &["missing"]) == [tonic::Code::NotFound];
    wait_until("movie reaches metadata over TLS by its name", START, answered);
    for (_rating, metrics) in &ratings {
        wait_until("each rating instance is reached over TLS by its name", START, || {
            assert!(answered(), "movie's log:\n{}", movie.log());
            metric(*metrics, "rpc_server_call_duration_seconds_count", "rpc_method=\"GetAggregatedRating\"") > 0.0
        });
    }
}
