//! Static checks of `docker-compose.yml` and the `Dockerfile`, since no
//! Docker engine runs here: the tools' own validators (`docker-compose config
//! -q`, `hadolint`), then what they cannot see. Each suite service's
//! environment is turned into flags through the binary's own clap definition
//! (an unknown variable fails) and parsed into its real `Config`, so the
//! checks compare the settings the containers would actually run with:
//! ports, discovery and Kafka addresses, topics, healthchecks, start order,
//! and the one build of the image they all run. The observability profile's
//! services (Jaeger, Prometheus, Grafana) are checked the same way: pinned
//! images, configuration mounted read-only from the repository, Prometheus
//! asking the Consul agent the services register with. So is PostgreSQL:
//! pinned, probed, on a named volume, with a database for each service that
//! stores in it and one password.
use std::{collections::BTreeMap, net::SocketAddr, process::Command};

use clap::{CommandFactory, Parser};
use e2e::compose::{environment, load, load_yaml, service, workspace_root};
use platform::discovery::DiscoveryMode;
use serde_norway::Value;
use sql_store::DatabaseArgs;

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

/// The services that keep their data in PostgreSQL, shared by their replicas.
const STORING: [&str; 2] = [contract::service::METADATA, contract::service::RATING];

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
        // Read by libraries rather than flags: the log filter, and the
        // OpenTelemetry exporter (OTEL_EXPORTER_OTLP_ENDPOINT and the like).
        if variable == "RUST_LOG" || variable.starts_with("OTEL_") {
            continue;
        }
        let argument =
            definition.get_arguments().find(|argument| argument.get_env().is_some_and(|env| env == variable.as_str()));
        let argument =
            argument.unwrap_or_else(|| panic!("{service_name}: `{variable}` is not a setting of `{}`", command[0]));
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
    for extra in [&[][..], &["--profile", "tools"][..], &["--profile", "observability"][..]] {
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
        ("metadata", &["consul", "postgres"]),
        ("rating", &["consul", "postgres", "kafka-topics"]),
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
        let (repository, tag) = image.rsplit_once(':').unwrap_or_else(|| panic!("{name:?}: {image} has no tag"));
        // Prometheus tags its releases `v2.55.1`; a variant follows a dash
        // (`16.4-alpine`).
        let tag = tag.strip_prefix('v').unwrap_or(tag);
        let version = tag.split_once('-').map_or(tag, |(version, _)| version);
        // PostgreSQL numbers its releases major.minor (16.4).
        let numbers = if repository == "postgres" { 2 } else { 3 };
        assert!(
            version.split('.').count() == numbers && version.split('.').all(|part| part.parse::<u32>().is_ok()),
            "{name:?}: {image} is not pinned to a release ({numbers} numbers)"
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

/// The observability profile's services and the UI port each publishes.
const OBSERVABILITY: [(&str, u16); 3] = [("jaeger", 16686), ("prometheus", 9090), ("grafana", 3000)];

/// (source in the repository, target in the container) of a service's bind
/// mounts, each checked to be read-only.
fn read_only_mounts(name: &str, service: &Value) -> Vec<(String, String)> {
    strings(&service["volumes"])
        .iter()
        .map(|volume| {
            let parts: Vec<&str> = volume.split(':').collect();
            let [source, target, "ro"] = parts[..] else { panic!("{name}: `{volume}` is not source:target:ro") };
            assert!(source.starts_with("./"), "{name}: `{volume}` mounts a file of the repository");
            (source.to_string(), target.to_string())
        })
        .collect()
}

#[test]
fn the_observability_profile_mounts_its_configuration_from_the_repository_read_only() {
    let compose = load();
    for (name, port) in OBSERVABILITY {
        let service = service(&compose, name);
        assert_eq!(strings(&service["profiles"]), ["observability"], "{name} starts only with the profile");
        assert!(published_ports(service).contains(&(port.to_string(), port)), "{name}'s UI is on localhost:{port}");
        if service.get("volumes").is_none() {
            continue;
        }
        for (source, _) in read_only_mounts(name, service) {
            assert!(workspace_root().join(&source).exists(), "{name} mounts {source}, which is not in the repository");
        }
    }

    // Jaeger receives OTLP over gRPC and HTTP.
    let jaeger = published_ports(service(&compose, "jaeger"));
    for otlp in [4317, 4318] {
        assert!(jaeger.contains(&(otlp.to_string(), otlp)), "Jaeger receives OTLP on {otlp}");
    }

    // Prometheus reads the mounted config, and the rule files it names are
    // mounted beside it (Prometheus resolves them relative to the config).
    let prometheus = service(&compose, "prometheus");
    let mounts = read_only_mounts("prometheus", prometheus);
    let config_file = strings(&prometheus["command"])
        .iter()
        .find_map(|argument| argument.strip_prefix("--config.file=").map(str::to_string))
        .expect("prometheus is given --config.file");
    let (config_source, _) = mounts
        .iter()
        .find(|(_, target)| *target == config_file)
        .unwrap_or_else(|| panic!("{config_file} is not mounted"));
    assert_eq!(config_source, "./observability/prometheus/prometheus.yml");
    let config_directory = config_file.rsplit_once('/').expect("an absolute path").0;
    for rule_file in strings(&load_yaml("observability/prometheus/prometheus.yml")["rule_files"]) {
        let in_container = format!("{config_directory}/{rule_file}");
        let (source, _) = mounts
            .iter()
            .find(|(_, target)| *target == in_container)
            .unwrap_or_else(|| panic!("the rule file {in_container} is not mounted"));
        assert_eq!(*source, format!("./observability/prometheus/{rule_file}"));
    }

    // Grafana: provisioning where Grafana looks for it, the dashboards where
    // the dashboard provider reads them, the data source at Prometheus.
    let grafana = service(&compose, "grafana");
    let mounts = read_only_mounts("grafana", grafana);
    assert!(mounts.contains(&("./observability/grafana/provisioning".into(), "/etc/grafana/provisioning".into())));
    let providers = load_yaml("observability/grafana/provisioning/dashboards/dashboards.yml");
    for provider in providers["providers"].as_sequence().expect("dashboard providers") {
        let path = provider["options"]["path"].as_str().expect("a provider's path");
        assert!(
            mounts.contains(&("./observability/grafana/dashboards".into(), path.into())),
            "the dashboards are mounted where the provider reads them, {path}"
        );
    }
    let datasources = load_yaml("observability/grafana/provisioning/datasources/prometheus.yml");
    let url = datasources["datasources"][0]["url"].as_str().expect("the data source's url");
    assert_eq!(url, "http://prometheus:9090", "Grafana asks the compose Prometheus");
    let grafana_environment = environment(grafana);
    assert_eq!(grafana_environment["GF_AUTH_ANONYMOUS_ENABLED"], "true", "dashboards open without a login");
    assert_eq!(grafana_environment["GF_AUTH_ANONYMOUS_ORG_ROLE"], "Viewer", "anonymous visitors only view");
}

#[test]
fn prometheus_discovers_the_services_through_the_consul_they_register_with() {
    let compose = load();
    let consul_addresses = [
        config::<metadata::Config>(&compose, "metadata").discovery.consul_address,
        config::<rating::Config>(&compose, "rating").discovery.consul_address,
        config::<movie::Config>(&compose, "movie").discovery.consul_address,
    ];
    let prometheus = load_yaml("observability/prometheus/prometheus.yml");
    let suite_jobs: Vec<&Value> = prometheus["scrape_configs"]
        .as_sequence()
        .expect("scrape_configs")
        .iter()
        .filter(|job| job.get("consul_sd_configs").is_some())
        .collect();
    let [job] = suite_jobs[..] else { panic!("one scrape job discovers the suite through Consul") };
    let [discovery] = &job["consul_sd_configs"].as_sequence().expect("consul_sd_configs")[..] else {
        panic!("one Consul to ask")
    };
    let server = discovery["server"].as_str().expect("the Consul server");
    for ((name, _), address) in SUITE.into_iter().zip(consul_addresses) {
        let address = address.expect("a Consul address");
        let host_and_port = address.split_once("://").map_or(address.as_str(), |(_, rest)| rest);
        assert_eq!(server, host_and_port, "Prometheus asks the Consul agent {name} registers with");
    }
    let services = strings(&discovery["services"]);
    assert_eq!(services, SUITE.map(|(name, _)| name), "Prometheus looks up the names the services register under");

    // Only instances that announce a metrics port, scraped on that port.
    let relabelling = serde_norway::to_string(&job["relabel_configs"]).expect("relabel_configs as text");
    assert!(relabelling.contains("__meta_consul_service_metadata_metrics_port"), "{relabelling}");
    let depends_on = &service(&compose, "prometheus")["depends_on"][host_of(server)]["condition"];
    assert_eq!(depends_on.as_str(), Some("service_healthy"), "Prometheus starts once Consul answers");
}

#[test]
fn the_services_serve_metrics_on_one_port_and_send_traces_to_jaeger() {
    let compose = load();
    let jaeger_otlp = published_ports(service(&compose, "jaeger"));
    for (name, _) in SUITE {
        let environment = environment(service(&compose, name));
        // Prometheus scrapes each instance on the port it registers as the
        // meta metrics_port, on its container address: any port works, on
        // all interfaces.
        let metrics: SocketAddr = environment
            .get("METRICS_ADDR")
            .unwrap_or_else(|| panic!("{name} serves no metrics"))
            .parse()
            .expect("METRICS_ADDR is an address");
        assert!(metrics.ip().is_unspecified(), "{name} serves metrics on all interfaces, not {metrics}");
        let endpoint =
            environment.get("OTEL_EXPORTER_OTLP_ENDPOINT").unwrap_or_else(|| panic!("{name} sends no traces"));
        assert_eq!(endpoint, "http://jaeger:4317", "{name} sends its traces to Jaeger's OTLP gRPC port");
        assert!(jaeger_otlp.iter().any(|(_, container)| *container == 4317), "Jaeger receives OTLP gRPC on 4317");
    }
}

/// The flags of the shared database settings, for a service's `DATABASE_*`
/// variables: what metadata and rating both read them with.
#[derive(Parser)]
struct DatabaseSettings {
    #[command(flatten)]
    database: DatabaseArgs,
}

/// A service's `DATABASE_*` variables, as `DatabaseArgs` reads them, and the
/// URL with compose's defaults filled in.
fn database_settings(name: &str, compose: &Value) -> (DatabaseArgs, String) {
    let environment = environment(service(compose, name));
    let definition = DatabaseSettings::command();
    let mut line = vec![name.to_string()];
    for (variable, value) in environment.iter().filter(|(variable, _)| variable.starts_with("DATABASE_")) {
        let argument = definition
            .get_arguments()
            .find(|argument| argument.get_env().is_some_and(|env| env == variable.as_str()))
            .unwrap_or_else(|| panic!("{name}: `{variable}` is not a database setting"));
        line.push(format!("--{}={value}", argument.get_long().expect("a long flag")));
    }
    let settings = DatabaseSettings::try_parse_from(&line)
        .unwrap_or_else(|error| panic!("{name}: {line:?} does not parse: {error}"))
        .database;
    let url = environment.get("DATABASE_URL").unwrap_or_else(|| panic!("{name} has no DATABASE_URL"));
    (settings, interpolate_defaults(url))
}

/// The parts of `postgres://USER:PASSWORD@HOST:PORT/DATABASE`.
#[derive(Debug, PartialEq)]
struct PostgresUrl {
    user: String,
    password: String,
    host: String,
    port: u16,
    database: String,
}

fn postgres_url(url: &str) -> PostgresUrl {
    let parse = || -> Option<PostgresUrl> {
        let rest = url.strip_prefix("postgres://")?;
        let (user_info, rest) = rest.split_once('@')?;
        let (user, password) = user_info.split_once(':')?;
        let (host_port, database) = rest.split_once('/')?;
        let (host, port) = host_port.split_once(':')?;
        Some(PostgresUrl {
            user: user.into(),
            password: password.into(),
            host: host.into(),
            port: port.parse().ok()?,
            database: database.into(),
        })
    };
    parse().unwrap_or_else(|| panic!("`{url}` is not postgres://USER:PASSWORD@HOST:PORT/DATABASE"))
}

#[test]
fn postgres_is_pinned_probed_with_pg_isready_and_keeps_its_data_on_a_named_volume() {
    let compose = load();
    let postgres = service(&compose, "postgres");
    let image = postgres["image"].as_str().expect("an image");
    assert!(image.starts_with("postgres:"), "the official PostgreSQL image, not {image}");
    assert!(postgres.get("ports").is_none(), "PostgreSQL is reached inside the network only");
    let environment = environment(postgres);
    let user = &environment["POSTGRES_USER"];

    // pg_isready over TCP: while the image initializes an empty volume (and
    // creates the databases), its server listens on the Unix socket only, so
    // a service waiting for this health finds its database there.
    let test = strings(&postgres["healthcheck"]["test"]);
    assert_eq!(test[..2], ["CMD", "pg_isready"], "the healthcheck runs pg_isready: {test:?}");
    let option = |name: &str| test.iter().position(|argument| argument == name).map(|at| test[at + 1].as_str());
    assert_eq!(option("--host"), Some("127.0.0.1"), "pg_isready asks over TCP: {test:?}");
    assert_eq!(option("--username"), Some(user.as_str()), "pg_isready asks as the user the services use: {test:?}");

    let volumes = strings(&postgres["volumes"]);
    let data = environment.get("PGDATA").map_or("/var/lib/postgresql/data", String::as_str);
    let (volume, _) = volumes
        .iter()
        .find_map(|mount| mount.split_once(':').filter(|(_, target)| *target == data))
        .unwrap_or_else(|| panic!("PostgreSQL's data directory {data} is not mounted: {volumes:?}"));
    assert!(!volume.starts_with('.') && !volume.starts_with('/'), "{data} is on a named volume, not {volume}");
    assert!(compose["volumes"].get(volume).is_some(), "the named volume {volume} is declared");
}

#[test]
fn metadata_and_rating_store_in_a_postgres_database_each_with_one_password() {
    let compose = load();
    let postgres = environment(service(&compose, "postgres"));
    let password = interpolate_defaults(&postgres["POSTGRES_PASSWORD"]);

    // The script the image runs on an empty volume, which creates the databases.
    let init = strings(&service(&compose, "postgres")["volumes"])
        .iter()
        .find_map(|mount| {
            let parts: Vec<&str> = mount.split(':').collect();
            match parts[..] {
                [source, target, "ro"] if target.starts_with("/docker-entrypoint-initdb.d/") => {
                    Some(source.to_string())
                }
                _ => None,
            }
        })
        .expect("a script mounted read-only in /docker-entrypoint-initdb.d");
    let init = std::fs::read_to_string(workspace_root().join(&init)).unwrap_or_else(|error| panic!("{init}: {error}"));

    let mut databases = BTreeMap::new();
    for name in STORING {
        let (settings, url) = database_settings(name, &compose);
        assert!(settings.database_url.is_some(), "{name} stores in a database");
        let url = postgres_url(&url);
        assert_eq!(url.host, "postgres", "{name} stores in the compose PostgreSQL");
        assert_eq!(url.port, 5432, "{name} connects to PostgreSQL's port");
        assert_eq!(url.user, postgres["POSTGRES_USER"], "{name} connects as the user the image creates");
        assert_eq!(url.password, password, "{name} has PostgreSQL's password");
        // Each service runs its own migrations, and sqlx keeps their history
        // in a table per database: two services in one database would each
        // see the other's migrations as unknown.
        assert!(
            init.contains(&format!("CREATE DATABASE {};", url.database)),
            "{name}'s database {} is not created by the init script:\n{init}",
            url.database
        );
        if let Some(other) = databases.insert(url.database.clone(), name) {
            panic!("{name} and {other} share the database {}", url.database);
        }
    }
    let metadata = config::<metadata::Config>(&compose, "metadata").database.database_url;
    assert_eq!(metadata, database_settings("metadata", &compose).0.database_url, "metadata reads DATABASE_URL");

    // One place: with POSTGRES_PASSWORD set, the server and every URL have it.
    let changed = "changed-for-the-test";
    let output = Command::new("docker-compose")
        .current_dir(workspace_root())
        .env("POSTGRES_PASSWORD", changed)
        .arg("config")
        .output()
        .expect("run docker-compose");
    assert!(output.status.success(), "docker-compose config: {}", String::from_utf8_lossy(&output.stderr));
    let resolved: Value = serde_norway::from_str(&String::from_utf8_lossy(&output.stdout)).expect("YAML");
    assert_eq!(environment(service(&resolved, "postgres"))["POSTGRES_PASSWORD"], changed);
    for name in STORING {
        let url = &environment(service(&resolved, name))["DATABASE_URL"];
        assert_eq!(postgres_url(url).password, changed, "{name}'s URL takes POSTGRES_PASSWORD");
    }
}

#[test]
fn metadata_and_rating_can_be_scaled_on_a_range_of_host_ports() {
    let compose = load();
    for name in STORING {
        let [mapping] = &strings(&service(&compose, name)["ports"])[..] else { panic!("{name} publishes one port") };
        let (host, _) = mapping.rsplit_once(':').expect("host:container");
        // `${NAME_HOST_PORTS:-8081}`: the default port, or a range to scale.
        assert!(
            host.starts_with("${") && host.contains(":-"),
            "{name}'s host port can be given a range for its replicas: {mapping}"
        );
        let depends_on = &service(&compose, name)["depends_on"]["postgres"]["condition"];
        assert_eq!(depends_on.as_str(), Some("service_healthy"), "{name}'s replicas start once PostgreSQL answers");
    }
}

/// The services `name` depends on, directly or through others.
fn dependencies(compose: &Value, name: &str) -> Vec<String> {
    let mut found: Vec<String> = Vec::new();
    let mut next = vec![name.to_string()];
    while let Some(current) = next.pop() {
        let Some(depends_on) = service(compose, &current)["depends_on"].as_mapping() else { continue };
        for dependency in depends_on.keys().filter_map(Value::as_str) {
            if !found.iter().any(|known| known == dependency) {
                found.push(dependency.to_string());
                next.push(dependency.to_string());
            }
        }
    }
    found
}

/// A `docker compose` command's subcommand (`up`, `run`, ...), its flags and
/// the services it names; the options before the subcommand (`--profile x`)
/// are left out.
#[derive(Debug)]
struct ComposeCommand {
    text: String,
    subcommand: String,
    flags: Vec<String>,
    services: Vec<String>,
}

/// The compose options and flags this file's commands use that take a value.
const TAKES_A_VALUE: [&str; 3] = ["--profile", "--scale", "--index"];

fn compose_command(line: &str) -> Option<ComposeCommand> {
    let start = line.find("docker compose ")?;
    let text = line[start..].split(['`', '|', '#']).next().unwrap_or_default().trim().to_string();
    let mut words = text.split_whitespace().skip(2);
    let mut subcommand = None;
    let (mut flags, mut services) = (Vec::new(), Vec::new());
    while let Some(word) = words.next() {
        if word.starts_with('-') {
            if TAKES_A_VALUE.contains(&word) {
                words.next();
            }
            if subcommand.is_some() {
                flags.push(word.to_string());
            }
        } else if subcommand.is_none() {
            subcommand = Some(word.to_string());
        } else {
            services.push(word.to_string());
        }
    }
    Some(ComposeCommand { subcommand: subcommand?, text, flags, services })
}

/// The `docker compose` commands of a markdown file's ```sh blocks, in order.
fn compose_commands_of_markdown(relative: &str) -> Vec<ComposeCommand> {
    let markdown = std::fs::read_to_string(workspace_root().join(relative)).expect("read the markdown file");
    let mut in_script = false;
    let mut commands = Vec::new();
    for line in markdown.lines() {
        if let Some(info) = line.strip_prefix("```") {
            in_script = !in_script && info.trim() == "sh";
        } else if in_script {
            commands.extend(compose_command(line));
        }
    }
    commands
}

/// Compose brings what a command is about back to the file: after the
/// walkthrough scales metadata and rating out (port ranges and `--scale` from
/// the shell), an `up` or `run` that takes them in without those would
/// remove the second instances and start the killed one again.
#[test]
fn after_scaling_out_the_walkthrough_leaves_the_scaled_services_alone() {
    let compose = load();
    let commands = compose_commands_of_markdown("docs/walkthrough.md");
    let scale_out = commands
        .iter()
        .position(|command| command.subcommand == "up" && command.flags.iter().any(|flag| flag == "--scale"))
        .expect("the walkthrough scales out with `up --scale`");
    let converging: Vec<&ComposeCommand> = commands[scale_out + 1..]
        .iter()
        .filter(|command| ["up", "run", "create"].contains(&&*command.subcommand))
        .collect();
    assert!(!converging.is_empty(), "no `up` or `run` follows the scale-out: {commands:#?}");
    for command in converging {
        assert!(!command.services.is_empty(), "`{}` names no service: it takes in every one", command.text);
        let touched: Vec<String> = if command.flags.iter().any(|flag| flag == "--no-deps") {
            command.services.clone()
        } else {
            command
                .services
                .iter()
                .flat_map(|name| dependencies(&compose, name).into_iter().chain([name.clone()]))
                .collect()
        };
        for scaled in STORING {
            assert!(
                !touched.iter().any(|name| name == scaled),
                "`{}` takes {scaled} back to the file's one instance (it touches {touched:?})",
                command.text
            );
        }
    }
}

/// Starting the observability profile is something done to a running stack,
/// maybe scaled: every place that says how names the services it starts.
#[test]
fn the_documented_observability_start_names_its_services() {
    let compose = load();
    let profile: Vec<String> = compose["services"]
        .as_mapping()
        .unwrap()
        .iter()
        .filter(|(_, service)| {
            service["profiles"].as_sequence().is_some_and(|profiles| profiles.contains(&"observability".into()))
        })
        .map(|(name, _)| name.as_str().unwrap().to_string())
        .collect();
    assert!(!profile.is_empty(), "the observability profile has services");
    let mut checked = 0;
    for file in ["docker-compose.yml", "README.md", "docs/walkthrough.md", "docs/operations.md"] {
        let text = std::fs::read_to_string(workspace_root().join(file)).expect("read the file");
        for command in text.lines().filter_map(compose_command) {
            if command.subcommand != "up" || !command.text.contains("--profile observability") {
                continue;
            }
            checked += 1;
            let mut named = command.services.clone();
            named.sort();
            let mut expected = profile.clone();
            expected.sort();
            assert_eq!(named, expected, "{file}: `{}` names the profile's services, and only them", command.text);
        }
    }
    assert!(checked >= 3, "only {checked} commands start the observability profile");
}

#[test]
fn the_build_context_leaves_out_the_env_file_with_the_password() {
    let ignored = std::fs::read_to_string(workspace_root().join(".dockerignore")).expect("read .dockerignore");
    let patterns: Vec<&str> =
        ignored.lines().map(str::trim).filter(|line| !line.is_empty() && !line.starts_with('#')).collect();
    assert!(patterns.contains(&".env"), ".dockerignore leaves out .env (POSTGRES_PASSWORD): {patterns:?}");
    assert!(!patterns.iter().any(|pattern| pattern.starts_with("!.env")), "nothing takes .env back in: {patterns:?}");
}

/// The `--bin` list of the Dockerfile's `RUN` instruction that runs `program`.
fn built_binaries(dockerfile: &str, program: &str) -> Vec<String> {
    let instruction = dockerfile
        .replace("\\\n", " ")
        .lines()
        .find(|line| line.starts_with("RUN ") && line.contains(program))
        .unwrap_or_else(|| panic!("the Dockerfile runs `{program}`"))
        .to_string();
    let words: Vec<&str> = instruction.split_whitespace().collect();
    words.windows(2).filter(|pair| pair[0] == "--bin").map(|pair| pair[1].to_string()).collect()
}

#[test]
fn the_dependency_layer_is_cooked_for_the_binaries_the_image_builds() {
    let dockerfile = std::fs::read_to_string(workspace_root().join("Dockerfile")).expect("read Dockerfile");
    let built = built_binaries(&dockerfile, "cargo build");
    assert!(!built.is_empty(), "the image builds named binaries");
    assert_eq!(
        built_binaries(&dockerfile, "cargo chef cook"),
        built,
        "cargo chef cook compiles the dependencies for the same binaries as the build, with the same features"
    );
}

/// Whether the OpenTelemetry exporter's own error logs (a failed export)
/// pass the services' log filter under `rust_log`.
fn exporter_errors_logged(rust_log: Option<&str>) -> bool {
    use tracing_subscriber::layer::SubscriberExt;
    let subscriber = tracing_subscriber::registry().with(telemetry::log_filter(rust_log));
    tracing::subscriber::with_default(subscriber, || {
        tracing::enabled!(target: "opentelemetry_sdk", tracing::Level::ERROR)
            || tracing::enabled!(target: "opentelemetry-otlp", tracing::Level::ERROR)
    })
}

/// The services send traces to Jaeger, which runs only with the
/// observability profile: without it every export fails, and the log filters
/// the image and the compose file set must not show each failure.
#[test]
fn the_exporters_own_errors_stay_out_of_the_logs_the_stack_sets() {
    let compose = load();
    let dockerfile = std::fs::read_to_string(workspace_root().join("Dockerfile")).expect("read Dockerfile");
    let image_filter = dockerfile
        .lines()
        .find_map(|line| line.strip_prefix("ENV RUST_LOG="))
        .expect("the image sets RUST_LOG")
        .to_string();
    let mut filters = vec![image_filter];
    filters.extend(IMAGE_USERS.iter().filter_map(|name| environment(service(&compose, name)).remove("RUST_LOG")));
    assert!(filters.len() >= 2, "the image's and a service's RUST_LOG: {filters:?}");
    for filter in &filters {
        assert!(!exporter_errors_logged(Some(filter)), "RUST_LOG={filter} logs every failed export");
    }
    assert!(!exporter_errors_logged(None), "the default filter logs every failed export");
    // Asked for by name, they are shown.
    assert!(exporter_errors_logged(Some("info,opentelemetry=warn")));
    assert!(exporter_errors_logged(Some("info,opentelemetry_sdk=error")));
}
