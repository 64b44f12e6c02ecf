//! Static checks of `docker-compose.yml` and the `Dockerfile`, since no
//! Docker engine runs here: the tools' own validators (`docker-compose config
//! -q`, `hadolint`), then what they cannot see. Each suite service's
//! environment is turned into flags through the binary's own clap definition
//! (an unknown variable fails) and parsed into its real `Config`, so the
//! checks compare the settings the containers would actually run with:
//! ports, discovery and Kafka addresses, topics, healthchecks, start order,
//! and the one build of the image they all run.
use std::{net::SocketAddr, process::Command};

use clap::{CommandFactory, Parser};
use e2e::compose::{environment, load, service, workspace_root};
use platform::config::DiscoveryMode;
use serde_norway::Value;

/// The suite's services: compose service name = binary = registered name,
/// and the gRPC service its healthcheck should ask about.
const SUITE: [(&str, &str); 3] = [
    (contract::service::METADATA, "MetadataService"),
    (contract::service::RATING, "RatingService"),
    (contract::service::MOVIE, "MovieService"),
];

/// Every service that runs the suite's image: the three services and the tool.
const IMAGE_USERS: [&str; 4] =
    [contract::service::METADATA, contract::service::RATING, contract::service::MOVIE, "ratingingester"];

fn strings(value: &Value) -> Vec<String> {
    value
        .as_sequence()
        .unwrap_or_else(|| panic!("expected a list, got {value:?}"))
        .iter()
        .map(|item| item.as_str().unwrap_or_else(|| panic!("expected a string, got {item:?}")).to_string())
        .collect()
}

/// `${NAME:-default}` as compose interpolates it with NAME unset.
fn interpolate_defaults(text: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let end = rest[start..].find('}').expect("closing brace") + start;
        let expression = &rest[start + 2..end];
        let (_, default) = expression.split_once(":-").unwrap_or_else(|| panic!("`${{{expression}}}` has no default"));
        out.push_str(default);
        rest = &rest[end + 1..];
    }
    out.push_str(rest);
    out
}

/// The command line a container runs: its command's arguments plus one flag
/// per environment variable, found through the binary's own clap definition.
fn command_line<C: CommandFactory>(service_name: &str, service: &Value) -> Vec<String> {
    let definition = C::command();
    let command = strings(&service["command"]);
    let mut line = command.clone();
    for (variable, value) in environment(service) {
        if variable == "RUST_LOG" {
            continue;
        }
        let argument = definition
            .get_arguments()
            .find(|argument| argument.get_env().is_some_and(|env| env == variable.as_str()))
            .unwrap_or_else(|| panic!("{service_name}: `{variable}` is not a setting of `{}`", command[0]));
        let long = argument.get_long().expect("every environment setting has a long flag");
        line.push(format!("--{long}={value}"));
    }
    line
}

fn config<C: Parser + CommandFactory>(compose: &Value, name: &str) -> C {
    let line = command_line::<C>(name, service(compose, name));
    C::try_parse_from(&line).unwrap_or_else(|error| panic!("{name}: {line:?} does not parse: {error}"))
}

fn default_config<C: Parser>(binary: &str) -> C {
    C::try_parse_from([binary]).expect("defaults parse")
}

fn host_of(address: &str) -> &str {
    let without_scheme = address.split_once("://").map_or(address, |(_, rest)| rest);
    without_scheme.rsplit_once(':').map_or(without_scheme, |(host, _)| host)
}

/// The one service that builds an image, and the image's tag.
fn image_builder(compose: &Value) -> (&str, &str) {
    let builders: Vec<_> = compose["services"]
        .as_mapping()
        .expect("services")
        .iter()
        .filter(|(_, service)| service.get("build").is_some())
        .map(|(name, service)| (name.as_str().expect("service name"), service))
        .collect();
    let [(name, service)] = builders[..] else {
        let names: Vec<_> = builders.iter().map(|(name, _)| *name).collect();
        panic!("exactly one service builds the suite's image, not {names:?}: the same tag built twice collides")
    };
    let image = service["image"].as_str().unwrap_or_else(|| panic!("{name} builds an image without naming it"));
    (name, image)
}

/// (host, container) port pairs of a service's `ports`.
fn published_ports(service: &Value) -> Vec<(String, u16)> {
    strings(&service["ports"])
        .iter()
        .map(|mapping| {
            let mapping = interpolate_defaults(mapping);
            let (host, container) =
                mapping.rsplit_once(':').unwrap_or_else(|| panic!("`{mapping}` is not host:container"));
            (host.to_string(), container.parse().expect("container port"))
        })
        .collect()
}

#[test]
fn docker_compose_accepts_the_file() {
    for extra in [&[][..], &["--profile", "tools"][..]] {
        let output = Command::new("docker-compose")
            .current_dir(workspace_root())
            .args(extra)
            .args(["config", "-q"])
            .output()
            .expect("run docker-compose (scripts/install-tools.sh --for-tests installs it)");
        assert!(output.status.success(), "docker-compose config -q: {}", String::from_utf8_lossy(&output.stderr));
    }
}

#[test]
fn hadolint_accepts_the_dockerfile() {
    let output = Command::new("hadolint")
        .current_dir(workspace_root())
        .arg("Dockerfile")
        .output()
        .expect("run hadolint (scripts/install-tools.sh --for-tests installs it)");
    assert!(
        output.status.success(),
        "hadolint Dockerfile:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn the_services_listen_publish_and_probe_their_default_ports() {
    let compose = load();
    let listens: [(SocketAddr, SocketAddr); 3] = [
        (
            config::<metadata::Config>(&compose, "metadata").listen,
            default_config::<metadata::Config>("metadata").listen,
        ),
        (config::<rating::Config>(&compose, "rating").listen, default_config::<rating::Config>("rating").listen),
        (config::<movie::Config>(&compose, "movie").listen, default_config::<movie::Config>("movie").listen),
    ];
    for ((name, grpc_service), (listen, default)) in SUITE.into_iter().zip(listens) {
        let service = service(&compose, name);
        assert_eq!(strings(&service["command"])[0], name, "{name} runs its own binary");
        assert!(listen.ip().is_unspecified(), "{name} must listen on all interfaces in its container, not {listen}");
        assert_eq!(listen.port(), default.port(), "{name} listens on its default port");
        assert_eq!(
            published_ports(service),
            vec![(default.port().to_string(), default.port())],
            "{name} publishes its default port on the host"
        );
        assert_eq!(
            strings(&service["healthcheck"]["test"]),
            ["CMD", "healthcheck", &format!("127.0.0.1:{}", default.port()), "--service", grpc_service],
            "{name}'s healthcheck asks the gRPC health service on its own port"
        );
    }
}

#[test]
fn one_service_builds_the_image_that_every_suite_service_runs() {
    let compose = load();
    let (builder, image) = image_builder(&compose);
    assert_eq!(service(&compose, builder)["build"].as_str(), Some("."), "{builder} builds the repository's Dockerfile");
    for name in IMAGE_USERS {
        let service = service(&compose, name);
        assert_eq!(service["image"].as_str(), Some(image), "{name} runs the image {builder} builds");
        if name == builder {
            continue;
        }
        // The tag is on no registry: pulling it can only fail.
        assert_eq!(service["pull_policy"].as_str(), Some("never"), "{name} never pulls {image}");
        // `up <name>` or `run <name>` selects its dependencies only, and builds
        // the image only if the builder is among them.
        assert!(service["depends_on"].get(builder).is_some(), "{name} depends on {builder}, which builds {image}");
    }
}

#[test]
fn every_service_registers_with_the_compose_consul_and_movie_finds_what_it_looks_up() {
    let compose = load();
    let discovery = [
        config::<metadata::Config>(&compose, "metadata").discovery,
        config::<rating::Config>(&compose, "rating").discovery,
        config::<movie::Config>(&compose, "movie").discovery,
    ];
    for ((name, _), discovery) in SUITE.into_iter().zip(discovery) {
        assert_eq!(discovery.mode(), DiscoveryMode::Consul, "{name} uses Consul");
        let address = discovery.consul_address.expect("a Consul address");
        assert_eq!(address, "http://consul:8500", "{name} talks to the compose Consul agent's HTTP API");
    }
    let consul = service(&compose, host_of("http://consul:8500"));
    assert!(consul["image"].as_str().unwrap().starts_with("hashicorp/consul:"));
    assert!(strings(&consul["command"]).contains(&"-dev".to_string()));
    assert_eq!(published_ports(consul), vec![("8500".to_string(), 8500)], "the Consul UI is on localhost:8500");

    // The names the movie service looks up are the names metadata and rating
    // register under: each is a compose service running that binary.
    for looked_up in [contract::service::METADATA, contract::service::RATING] {
        assert_eq!(strings(&service(&compose, looked_up)["command"])[0], looked_up);
    }
}

#[test]
fn nothing_starts_before_what_it_needs_is_healthy() {
    let compose = load();
    let needs: [(&str, &[&str]); 4] = [
        ("metadata", &["consul"]),
        ("rating", &["consul", "kafka-topics"]),
        ("movie", &["consul", "metadata", "rating"]),
        ("ratingingester", &["kafka-topics"]),
    ];
    for (name, dependencies) in needs {
        let depends_on = service(&compose, name)["depends_on"].as_mapping().expect("depends_on with conditions");
        for dependency in dependencies {
            let condition = depends_on
                .get(*dependency)
                .unwrap_or_else(|| panic!("{name} does not wait for {dependency}"))["condition"]
                .as_str()
                .unwrap();
            let target = service(&compose, dependency);
            if condition == "service_healthy" {
                assert!(
                    target["healthcheck"]["test"].is_sequence(),
                    "{name} waits for {dependency}'s health, which has none"
                );
            } else {
                assert_eq!(condition, "service_completed_successfully", "{name} → {dependency}");
                assert_eq!(target["restart"].as_str(), Some("no"), "{dependency} is a one-shot");
            }
        }
    }
    let topics_need = &service(&compose, "kafka-topics")["depends_on"]["kafka"]["condition"];
    assert_eq!(topics_need.as_str(), Some("service_healthy"));
}

#[test]
fn the_ingester_and_the_rating_service_share_broker_and_topics_and_kafka_advertises_them() {
    let compose = load();
    let rating = config::<rating::Config>(&compose, "rating").event_log;
    let ingester = config::<ratingingester::Config>(&compose, "ratingingester");
    let brokers = rating.kafka.brokers.clone().expect("rating ingests from Kafka");
    assert_eq!(ingester.kafka.brokers_or_local(), brokers, "ratingingester publishes where rating consumes");
    assert_eq!(ingester.kafka.topic, rating.kafka.topic, "ratingingester publishes to the topic rating consumes");

    let kafka = environment(service(&compose, host_of(&brokers)));
    let advertised = &kafka["KAFKA_ADVERTISED_LISTENERS"];
    assert!(advertised.contains(&format!("://{brokers}")), "Kafka advertises {brokers} to containers: {advertised}");
    assert!(advertised.contains("://localhost:9092"), "Kafka advertises localhost:9092 to the host: {advertised}");
    assert_eq!(published_ports(service(&compose, "kafka")), vec![("9092".to_string(), 9092)]);
    assert_eq!(kafka["KAFKA_LOG_DIRS"], "/var/lib/kafka/data");
    assert!(
        strings(&service(&compose, "kafka")["volumes"]).contains(&"kafka-data:/var/lib/kafka/data".to_string()),
        "Kafka's log is on the named volume"
    );
    assert!(compose["volumes"].get("kafka-data").is_some(), "the named volume is declared");

    let create = strings(&service(&compose, "kafka-topics")["command"]).join("\n");
    assert!(create.contains(&format!("for topic in {} {};", rating.kafka.topic, rating.dlq_topic)), "{create}");
    assert!(create.contains(&format!("--partitions {}", rating.topic_partitions)), "{create}");
    assert!(create.contains("--bootstrap-server kafka:19092"), "{create}");
    assert!(create.contains("retention.ms=-1"), "rating replays the whole topic, so it is kept: {create}");
    // Created exactly as the rating service creates them when they are missing.
    let configs: Vec<&str> =
        create.split("--config ").skip(1).filter_map(|rest| rest.split_whitespace().next()).collect();
    let expected: Vec<String> =
        rating::event_log::topics::TOPIC_CONFIG.iter().map(|(key, value)| format!("{key}={value}")).collect();
    assert_eq!(configs, expected, "the job creates the topics with the rating service's settings: {create}");

    let ingester_service = service(&compose, "ratingingester");
    assert_eq!(strings(&ingester_service["profiles"]), ["tools"], "ratingingester is not started by `up`");
    let mount = format!("./ratingsdata.json:{}:ro", ingester.file.display());
    assert!(
        strings(&ingester_service["volumes"]).contains(&mount),
        "the file ratingingester reads is mounted: {mount}"
    );
}

#[test]
fn pulled_images_are_pinned_to_a_release() {
    let compose = load();
    for (name, service) in compose["services"].as_mapping().unwrap() {
        let image = service["image"].as_str().unwrap();
        if service.get("build").is_some() || service["pull_policy"].as_str() == Some("never") {
            continue;
        }
        let (_, tag) = image.rsplit_once(':').unwrap_or_else(|| panic!("{name:?}: {image} has no tag"));
        assert!(
            tag.split('.').count() == 3 && tag.split('.').all(|part| part.parse::<u32>().is_ok()),
            "{name:?}: {image} is not pinned to a major.minor.patch release"
        );
    }
}

#[test]
fn the_image_holds_every_binary_compose_runs_and_runs_as_a_non_root_user() {
    let compose = load();
    let dockerfile = std::fs::read_to_string(workspace_root().join("Dockerfile")).expect("read Dockerfile");
    let (_, image) = image_builder(&compose);
    let mut run: Vec<String> = ["healthcheck".to_string()].into();
    for (_, service) in compose["services"].as_mapping().unwrap() {
        if service["image"].as_str() == Some(image) {
            run.push(strings(&service["command"])[0].clone());
        }
    }
    for binary in run {
        assert!(
            dockerfile.contains(&format!("--bin {binary} ")) || dockerfile.contains(&format!("--bin {binary}\n")),
            "the image does not build `{binary}`"
        );
        assert!(dockerfile.contains(&format!("target/release/{binary}")), "the image does not copy `{binary}`");
    }
    let runtime = dockerfile.rsplit_once("\nFROM ").expect("a multi-stage build").1;
    let user = runtime.lines().find_map(|line| line.strip_prefix("USER ")).expect("the runtime stage sets USER");
    assert!(!user.starts_with("root") && !user.starts_with("0"), "the runtime runs as {user}");
    assert!(!runtime.contains("cargo") && !runtime.contains("build-essential"), "no build tools in the runtime");
}
