//! TLS and mutual TLS, with a CA and certificates the tests make themselves
//! (rcgen): a TLS server answers clients that trust its CA and refuses
//! plaintext; with `--tls-client-ca` it refuses clients without a
//! certificate of that CA; the movie service reaches metadata and rating
//! over mutual TLS; grpcurl and the `healthcheck` probe reach a real
//! process as users do; bad settings stop the start with a clear error.
use std::{
    net::SocketAddr,
    process::{Command, Output},
    time::Duration,
};

use contract::api::{
    GetMetadataRequest, GetMovieDetailsRequest, PutRatingRequest, metadata_service_client::MetadataServiceClient,
    movie_service_client::MovieServiceClient, rating_service_client::RatingServiceClient,
};
use e2e::{
    app::{spawn_metadata, spawn_movie, spawn_rating},
    calls::heat,
    certificates::{Issued, TestCa},
    grpcurl::{grpcurl, grpcurl_tls},
    process::{ServiceProcess, binary},
    wait_until,
};
use tonic::{
    Code,
    transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity},
};
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};

/// A CA with a server certificate for 127.0.0.1 and localhost and a client
/// certificate, and another CA with a client certificate of its own.
struct Pki {
    _dir: tempfile::TempDir,
    ca: TestCa,
    server: Issued,
    client: Issued,
    stranger: Issued,
}

impl Pki {
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("a directory for the certificates");
        let ca = TestCa::new(dir.path(), "suite");
        let server = ca.issue("server", &["localhost", "127.0.0.1"]);
        let client = ca.issue("client", &["movie"]);
        let stranger = TestCa::new(dir.path(), "other").issue("client", &["movie"]);
        Self { _dir: dir, ca, server, client, stranger }
    }

    /// Server flags: TLS with the server certificate.
    fn tls(&self) -> Vec<&str> {
        vec!["--tls-cert", self.server.cert(), "--tls-key", self.server.key()]
    }

    /// Server flags: mutual TLS, clients need a certificate of this CA.
    fn mutual_tls(&self) -> Vec<String> {
        let mut flags: Vec<String> = self.tls().into_iter().map(str::to_owned).collect();
        flags.extend(["--tls-client-ca".to_owned(), self.ca.ca()]);
        flags
    }

    /// Client TLS settings trusting this CA, with `identity` when given.
    fn client_tls(&self, identity: Option<&Issued>) -> ClientTlsConfig {
        let ca = std::fs::read(self.ca.ca_file()).expect("read the CA");
        let config = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(ca));
        match identity {
            Some(issued) => config.identity(Identity::from_pem(
                std::fs::read(&issued.cert).expect("read the certificate"),
                std::fs::read(&issued.key).expect("read the key"),
            )),
            None => config,
        }
    }
}

fn strings(flags: &[String]) -> Vec<&str> {
    flags.iter().map(String::as_str).collect()
}

/// A channel to `address`: TLS with `tls`, plaintext without.
async fn channel(address: SocketAddr, tls: Option<ClientTlsConfig>) -> Result<Channel, String> {
    let endpoint = match tls {
        Some(tls) => Endpoint::from_shared(format!("https://{address}"))
            .and_then(|endpoint| endpoint.tls_config(tls))
            .map_err(|error| error.to_string())?,
        None => Endpoint::from_shared(format!("http://{address}")).map_err(|error| error.to_string())?,
    };
    endpoint
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(5))
        .connect()
        .await
        .map_err(|error| format!("{error:?}"))
}

/// A channel to `address` over mutual TLS, with the client certificate.
async fn mutual_channel(pki: &Pki, address: SocketAddr) -> Channel {
    channel(address, Some(pki.client_tls(Some(&pki.client)))).await.expect("a mutual TLS connection")
}

/// A health check over a new connection: the status name, or why it failed.
async fn health(address: SocketAddr, tls: Option<ClientTlsConfig>) -> Result<String, String> {
    let channel = channel(address, tls).await?;
    let answer = HealthClient::new(channel)
        .check(HealthCheckRequest { service: String::new() })
        .await
        .map_err(|status| format!("{:?}: {}", status.code(), status.message()))?;
    Ok(answer.into_inner().status().as_str_name().to_owned())
}

/// Waits until a client with `tls` gets SERVING from the health service.
async fn serving(address: SocketAddr, tls: impl Fn() -> ClientTlsConfig) {
    let tls = &tls;
    e2e::wait_for("health reports SERVING over TLS", Duration::from_secs(10), || async move {
        health(address, Some(tls())).await.as_deref() == Ok("SERVING")
    })
    .await;
}

#[tokio::test]
async fn a_tls_server_answers_clients_that_trust_its_ca_and_refuses_plaintext() {
    let pki = Pki::new();
    let metadata = spawn_metadata(&pki.tls()).await;

    let plaintext = health(metadata.address, None).await;
    assert!(plaintext.is_err(), "a plaintext client was answered: {plaintext:?}");

    serving(metadata.address, || pki.client_tls(None)).await;
    let channel = channel(metadata.address, Some(pki.client_tls(None))).await.expect("a TLS connection");
    let mut client = MetadataServiceClient::new(channel);
    client.put_metadata(heat()).await.expect("PutMetadata over TLS");
    let stored = client.get_metadata(GetMetadataRequest { movie_id: "1".into() }).await.expect("GetMetadata over TLS");
    assert_eq!(stored.into_inner().metadata.map(|metadata| metadata.title).as_deref(), Some("Heat"));

    // The client's own check: a server whose certificate another CA signed
    // is not trusted.
    let other_ca = TestCa::new(pki.server.cert.parent().expect("the certificates' directory"), "client-trusts");
    let other_trust = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(std::fs::read(other_ca.ca_file()).expect("read the other CA")));
    let untrusted = health(metadata.address, Some(other_trust)).await;
    assert!(untrusted.is_err(), "a client trusting another CA accepted the server: {untrusted:?}");
}

#[tokio::test]
async fn mutual_tls_answers_only_clients_with_a_certificate_of_the_client_ca() {
    let pki = Pki::new();
    let metadata = spawn_metadata(&strings(&pki.mutual_tls())).await;

    let other_ca = health(metadata.address, Some(pki.client_tls(Some(&pki.stranger)))).await;
    assert!(other_ca.is_err(), "a client with another CA's certificate was answered: {other_ca:?}");
    let without_certificate = health(metadata.address, Some(pki.client_tls(None))).await;
    assert!(without_certificate.is_err(), "a client without a certificate was answered: {without_certificate:?}");
    let plaintext = health(metadata.address, None).await;
    assert!(plaintext.is_err(), "a plaintext client was answered: {plaintext:?}");

    serving(metadata.address, || pki.client_tls(Some(&pki.client))).await;
}

#[tokio::test]
async fn movie_gets_details_from_metadata_and_rating_over_mutual_tls() {
    let pki = Pki::new();
    let mutual_tls = pki.mutual_tls();
    let metadata = spawn_metadata(&strings(&mutual_tls)).await;
    let rating = spawn_rating(&strings(&mutual_tls)).await;
    MetadataServiceClient::new(mutual_channel(&pki, metadata.address).await)
        .put_metadata(heat())
        .await
        .expect("PutMetadata");
    RatingServiceClient::new(mutual_channel(&pki, rating.address).await)
        .put_rating(PutRatingRequest {
            user_id: "alice".into(),
            record_id: "1".into(),
            record_type: "movie".into(),
            rating_value: 4,
        })
        .await
        .expect("PutRating");

    let upstream_tls = [
        "--upstream-tls-ca",
        &pki.ca.ca(),
        "--upstream-tls-cert",
        pki.client.cert(),
        "--upstream-tls-key",
        pki.client.key(),
    ]
    .map(str::to_owned);
    let movie_args: Vec<String> = upstream_tls.iter().cloned().chain(mutual_tls.iter().cloned()).collect();
    let movie = spawn_movie(&metadata.authority(), &rating.authority(), &strings(&movie_args)).await;
    let details = MovieServiceClient::new(mutual_channel(&pki, movie.address).await)
        .get_movie_details(GetMovieDetailsRequest { movie_id: "1".into() })
        .await
        .expect("GetMovieDetails over mutual TLS")
        .into_inner()
        .movie_details
        .expect("details");
    assert_eq!(details.rating, Some(4.0));
    assert_eq!(details.metadata.map(|metadata| metadata.title).as_deref(), Some("Heat"));

    // Without its client certificate, movie is refused by both.
    let anonymous = spawn_movie(&metadata.authority(), &rating.authority(), &["--upstream-tls-ca", &pki.ca.ca()]).await;
    let refused = anonymous.client.clone().get_movie_details(GetMovieDetailsRequest { movie_id: "1".into() }).await;
    let status = refused.expect_err("metadata answered a client without a certificate");
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    assert!(status.message().contains("metadata"), "{status:?}");
}

#[tokio::test]
async fn upstreams_addressed_by_ip_are_verified_against_the_configured_name() {
    let pki = Pki::new();
    let named = pki.ca.issue("named", &["upstream.internal"]);
    let server = ["--tls-cert", named.cert(), "--tls-key", named.key()];
    let metadata = spawn_metadata(&server).await;
    let rating = spawn_rating(&server).await;
    let ca = pki.ca.ca();
    let request = || GetMovieDetailsRequest { movie_id: "1".into() };

    // 127.0.0.1 is not a name the certificate carries.
    let by_address = spawn_movie(&metadata.authority(), &rating.authority(), &["--upstream-tls-ca", &ca]).await;
    let status =
        by_address.client.clone().get_movie_details(request()).await.expect_err("a certificate for another name");
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");

    let by_name = spawn_movie(
        &metadata.authority(),
        &rating.authority(),
        &["--upstream-tls-ca", &ca, "--upstream-tls-domain", "upstream.internal"],
    )
    .await;
    let status = by_name.client.clone().get_movie_details(request()).await.expect_err("no such movie");
    assert_eq!(status.code(), Code::NotFound, "metadata answered over TLS: {status:?}");
}

fn healthcheck(args: &[&str], envs: &[(&str, &str)]) -> Output {
    Command::new(binary("healthcheck")).args(args).envs(envs.iter().copied()).output().expect("run healthcheck")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[test]
fn grpcurl_and_the_healthcheck_reach_a_metadata_process_over_mutual_tls() {
    let pki = Pki::new();
    let metadata = ServiceProcess::start("metadata", &strings(&pki.mutual_tls()), &[]);
    let address = metadata.authority();
    let ca = pki.ca.ca();
    let probe_tls = [
        ("HEALTHCHECK_TLS_CA", ca.as_str()),
        ("HEALTHCHECK_TLS_CERT", pki.client.cert()),
        ("HEALTHCHECK_TLS_KEY", pki.client.key()),
    ];
    wait_until("the healthcheck passes over mutual TLS", Duration::from_secs(10), || {
        healthcheck(&[&address], &probe_tls).status.success()
    });
    let without_certificate = healthcheck(&[&address, "--tls-ca", &ca], &[]);
    assert!(
        !without_certificate.status.success(),
        "passed without a client certificate: {}",
        stdout(&without_certificate)
    );
    let plaintext = healthcheck(&[&address], &[]);
    assert!(!plaintext.status.success(), "passed in plaintext: {}", stdout(&plaintext));

    let tls = ["-cacert", ca.as_str(), "-cert", pki.client.cert(), "-key", pki.client.key()];
    let movie = r#"{"metadata": {"id": "2", "title": "Ronin", "description": "Mercenaries chase a briefcase.", "director": "John Frankenheimer"}}"#;
    let put = grpcurl_tls(&address, Some("MetadataService/PutMetadata"), Some(movie), &tls);
    assert!(put.success, "{}", put.stderr);
    let got = grpcurl_tls(&address, Some("MetadataService/GetMetadata"), Some(r#"{"movie_id": "2"}"#), &tls).json();
    assert_eq!(got["metadata"]["title"], "Ronin");
    let listed = grpcurl_tls(&address, Some("list"), None, &tls);
    assert!(listed.stdout.lines().any(|line| line == "MetadataService"), "{}", listed.stderr);

    // A refused client: grpcurl may keep dialling until its connect timeout.
    let no_certificate = grpcurl_tls(&address, Some("list"), None, &["-connect-timeout", "2", "-cacert", &ca]);
    assert!(!no_certificate.success, "grpcurl without a client certificate was answered:\n{}", no_certificate.stdout);
    let stranger = grpcurl_tls(
        &address,
        Some("list"),
        None,
        &["-connect-timeout", "2", "-cacert", &ca, "-cert", pki.stranger.cert(), "-key", pki.stranger.key()],
    );
    assert!(!stranger.success, "grpcurl with another CA's certificate was answered:\n{}", stranger.stdout);
    let plaintext = grpcurl(&address, Some("list"), None, &["-connect-timeout", "2"]);
    assert!(!plaintext.success, "plaintext grpcurl was answered:\n{}", plaintext.stdout);
}

/// Runs metadata with `args` and `envs`, expecting it to stop at start-up;
/// returns what it printed.
fn failed_start(args: &[&str], envs: &[(&str, &str)]) -> String {
    let mut command = Command::new(binary("metadata"));
    command.args(["--listen", "127.0.0.1:0"]).args(args).envs(envs.iter().copied());
    match testbed::ChildProcess::run(command, Duration::from_secs(20)) {
        Ok(finished) => panic!("metadata started with {args:?} {envs:?}:\n{}", finished.stderr),
        Err(testbed::ProcessError::Failed { stderr, .. }) => stderr,
        Err(error) => panic!("{error}"),
    }
}

#[test]
fn bad_tls_settings_stop_the_start_with_an_error_naming_the_setting_and_file() {
    let pki = Pki::new();
    let only_cert = failed_start(&["--tls-cert", pki.server.cert()], &[]);
    assert!(
        only_cert.contains("--tls-cert (TLS_CERT) is set but --tls-key (TLS_KEY) is not: give both or neither"),
        "{only_cert}"
    );

    let missing = "/nonexistent/server.key";
    let unreadable = failed_start(&[], &[("TLS_CERT", pki.server.cert()), ("TLS_KEY", missing)]);
    assert!(unreadable.contains(&format!("cannot read --tls-key (TLS_KEY) file {missing}")), "{unreadable}");

    let swapped = failed_start(&["--tls-cert", pki.server.key(), "--tls-key", pki.server.cert()], &[]);
    assert!(swapped.contains("holds no PEM certificate"), "{swapped}");

    // A key that is not the certificate's: refused, and never printed.
    let mismatched = failed_start(&["--tls-cert", pki.server.cert(), "--tls-key", pki.client.key()], &[]);
    assert!(mismatched.contains("cannot be used"), "{mismatched}");
    let key = std::fs::read_to_string(&pki.client.key).expect("read the key");
    for line in key.lines().filter(|line| !line.starts_with("-----")) {
        assert!(!mismatched.contains(line), "key material in the error:\n{mismatched}");
    }
}
