//! No secret ever reaches a log line or a status message: the services run
//! as processes at debug level with every secret the suite knows in use at
//! once (a PostgreSQL password in `--database-url`, Consul ACL tokens, a
//! Kafka SASL password in `--kafka-property`, the HS256 secret of
//! authenticated writes, a TLS private key), clients send bearer tokens
//! valid and invalid, errors are provoked (refused writes, a wrong Consul
//! token, a plaintext client at a TLS server, the database gone), and
//! neither the processes' output nor any status message returned carries
//! any of them.
use std::time::Duration;

use contract::api::{
    GetMetadataRequest, GetMovieDetailsRequest, PutRatingRequest, metadata_service_client::MetadataServiceClient,
    movie_service_client::MovieServiceClient, rating_service_client::RatingServiceClient,
};
use e2e::{
    broker::Broker,
    calls::heat,
    certificates::TestCa,
    consul::FakeConsul,
    postgres::{PASSWORD, Postgres},
    process::{ServiceProcess, block_on, endpoint},
    rating::average,
    tokens::{SECRET, signed, with_bearer},
    wait_until,
};
use tonic::{
    Code, Status,
    transport::{Certificate, ClientTlsConfig, Endpoint},
};

const WAIT: Duration = Duration::from_secs(30);
const CONSUL_TOKEN: &str = "consul-acl-token-3e8b1f";
const WRONG_CONSUL_TOKEN: &str = "consul-wrong-token-9c4d2a";
const KAFKA_PASSWORD: &str = "kafka-sasl-password-7a1c5e";

/// What a client gets back from a call: the status message of a failure.
fn message<T>(answer: Result<T, Status>) -> (Code, String) {
    answer.map_or_else(|status| (status.code(), status.message().to_owned()), |_| (Code::Ok, String::new()))
}

#[test]
fn no_secret_reaches_a_log_line_or_a_status_message() {
    let consul = FakeConsul::start_with_token(CONSUL_TOKEN);
    let consul_address = consul.http_address();
    let postgres = Postgres::start();
    let database = postgres.create_database();
    assert!(database.contains(PASSWORD), "the database URL carries the password");
    let broker = Broker::start_in_memory();
    let certificates = tempfile::tempdir().expect("a directory for the certificates");
    let server = TestCa::new(certificates.path(), "secrets").issue("movie", &["localhost"]);
    let private_key = std::fs::read_to_string(&server.key).expect("read the TLS key");
    let secret_file = certificates.path().join("hs256.secret");
    std::fs::write(&secret_file, format!("{SECRET}\n")).expect("write the HS256 secret");

    let env = [("CONSUL_HTTP_ADDR", consul_address.as_str()), ("RUST_LOG", "debug")];
    let with_consul = |args: &[&str]| -> Vec<String> {
        ["--consul-token", CONSUL_TOKEN, "--consul-check-ttl", "1s"]
            .iter()
            .chain(args)
            .map(|arg| arg.to_string())
            .collect()
    };
    let start = |binary: &str, args: Vec<String>| {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        ServiceProcess::start(binary, &args, &env)
    };
    let metadata = start("metadata", with_consul(&["--database-url", &database, "--auth-hs256-secret", SECRET]));
    let kafka = format!("sasl.password={KAFKA_PASSWORD}");
    let rating = start(
        "rating",
        with_consul(&[
            "--kafka-brokers",
            &broker.address(),
            "--kafka-property",
            &kafka,
            "--auth-hs256-secret-file",
            secret_file.to_str().expect("a UTF-8 path"),
        ]),
    );
    let movie = start("movie", with_consul(&["--tls-cert", server.cert(), "--tls-key", server.key()]));
    let refused_by_consul = ServiceProcess::start(
        "metadata",
        &["--consul-token", WRONG_CONSUL_TOKEN, "--instance-id", "metadata-wrong-token"],
        &env,
    );
    metadata.wait_until_serving(WAIT);
    rating.wait_until_serving(WAIT);
    refused_by_consul.wait_for_log("refused the request: ACL not found", WAIT);
    wait_until("metadata and rating are registered", WAIT, || {
        consul.registered("metadata").len() == 1 && consul.registered("rating").len() == 1
    });

    let valid = signed(SECRET, "metadata:write ratings:write", 3600);
    let forged = signed("not-the-secret-but-as-long-as-one-should-be", "metadata:write", 3600);
    let reader = signed(SECRET, "metadata:read", 3600);
    let mut answers = Vec::new();
    block_on(async {
        let channel = endpoint(&metadata).connect().await.expect("connect to metadata");
        let mut client = MetadataServiceClient::new(channel);
        for token in [forged.as_str(), reader.as_str(), "garbage"] {
            answers.push(message(client.put_metadata(with_bearer(heat(), token)).await));
        }
        answers.push(message(client.put_metadata(heat()).await));
        assert_eq!(message(client.put_metadata(with_bearer(heat(), &valid)).await), (Code::Ok, String::new()));

        let channel = endpoint(&rating).connect().await.expect("connect to rating");
        let mut client = RatingServiceClient::new(channel);
        let put = || PutRatingRequest {
            user_id: "ann".into(),
            record_id: "1".into(),
            record_type: "movie".into(),
            rating_value: 4,
        };
        answers.push(message(client.put_rating(with_bearer(put(), &forged)).await));
        assert_eq!(message(client.put_rating(with_bearer(put(), &valid)).await), (Code::Ok, String::new()));
    });
    assert_eq!(average(&rating, "1"), Some(4.0), "the rating went through Kafka");
    let codes: Vec<Code> = answers.iter().map(|(code, _)| *code).collect();
    assert_eq!(
        codes,
        [
            Code::Unauthenticated,
            Code::PermissionDenied,
            Code::Unauthenticated,
            Code::Unauthenticated,
            Code::Unauthenticated
        ]
    );

    block_on(async {
        let ca = std::fs::read(certificates.path().join("secrets-ca.pem")).expect("read the CA");
        let tls = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(ca)).domain_name("localhost");
        let movie_address = format!("https://{}", movie.authority());
        let channel = Endpoint::from_shared(movie_address).unwrap().tls_config(tls).unwrap().connect().await;
        let mut client = MovieServiceClient::new(channel.expect("a TLS connection to movie"));
        let details = client.get_movie_details(GetMovieDetailsRequest { movie_id: "1".into() }).await;
        assert_eq!(message(details), (Code::Ok, String::new()), "movie found both upstreams through Consul");
        // A plaintext client at the TLS server.
        let plaintext = endpoint(&movie).connect().await;
        if let Ok(channel) = plaintext {
            let answer = MovieServiceClient::new(channel)
                .get_movie_details(GetMovieDetailsRequest { movie_id: "1".into() })
                .await;
            answers.push(message(answer));
        }
    });

    postgres.pause();
    block_on(async {
        let channel = endpoint(&metadata).connect().await.expect("connect to metadata");
        let mut client = MetadataServiceClient::new(channel);
        let read = message(client.get_metadata(GetMetadataRequest { movie_id: "1".into() }).await);
        assert_eq!(read.0, Code::Unavailable, "{}", read.1);
        answers.push(read);
        answers.push(message(client.put_metadata(with_bearer(heat(), &valid)).await));
    });

    let secrets = [
        ("the PostgreSQL password", PASSWORD.to_owned()),
        ("the Consul ACL token", CONSUL_TOKEN.to_owned()),
        ("the wrong Consul token", WRONG_CONSUL_TOKEN.to_owned()),
        ("the Kafka SASL password", KAFKA_PASSWORD.to_owned()),
        ("the HS256 secret", SECRET.to_owned()),
        ("a valid bearer token", valid.clone()),
        ("a valid token's signature", valid.rsplit('.').next().expect("a signature").to_owned()),
        ("a forged bearer token", forged.clone()),
    ];
    // Every line of the key's base64 body.
    let key_lines = private_key
        .lines()
        .filter(|line| !line.starts_with("-----"))
        .map(|line| ("the TLS private key", line.to_owned()));
    let secrets: Vec<(&str, String)> = secrets.into_iter().chain(key_lines).collect();

    let logs = [
        ("metadata", metadata.terminate_with_log(WAIT).1),
        ("rating", rating.terminate_with_log(WAIT).1),
        ("movie", movie.terminate_with_log(WAIT).1),
        ("metadata with the wrong Consul token", refused_by_consul.terminate_with_log(WAIT).1),
    ];
    // The logs are at debug level, and record the refusals: what is looked
    // through is what was meant to be.
    assert!(logs[0].1.contains("DEBUG") && logs[0].1.contains("call refused"), "{}", logs[0].1);
    let messages = answers.iter().map(|(_, message)| ("a status message", message.clone()));
    for (source, text) in logs.into_iter().chain(messages) {
        for (secret, value) in &secrets {
            assert!(!text.contains(value.as_str()), "{secret} is in {source}:\n{text}");
        }
    }
}
