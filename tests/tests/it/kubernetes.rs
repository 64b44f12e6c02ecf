//! Offline checks of the Kubernetes manifests (deploy/kubernetes), since no
//! cluster runs here: every target (each overlay, and the base with each
//! documented combination of components) is rendered by `kubectl
//! kustomize`; its core objects are validated against the Kubernetes API
//! schemas in strict mode (kubernetes-validate), its custom resources
//! against the operators' CRD schemas at their pinned releases
//! (`../shared/crds`), and the whole by checkov. Then what no schema knows:
//! each probe asks the container's gRPC port about a service the binary
//! really serves (asked of the running binary), each environment variable is
//! one the binary's `--help` lists, each Secret and ConfigMap reference
//! resolves, each image is pinned, the KafkaTopics and the ingest autoscaler
//! agree with the rating service's own topic configuration, and termination
//! leaves time for the drain.
use std::{
    collections::{BTreeMap, BTreeSet},
    process::Command,
};

use clap::CommandFactory;
use e2e::{
    compose::{load_yaml, text_map, workspace_root},
    kubernetes::{
        COMBINATIONS, Target, checkov, containers, crd_schemas, environment_names, environment_of_help, is_custom,
        manifests_root, overlay_components, run_tool, setting, targets,
    },
    postgres::Postgres,
    process::{ServiceProcess, block_on, endpoint},
};
use serde_norway::Value;
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};

/// The workloads of the suite: every Deployment runs one of its binaries.
const WORKLOADS: [&str; 4] = ["metadata", "rating", "rating-ingest", "movie"];

/// Kubernetes releases the core objects must validate against: the oldest
/// the manifests support (the native preStop `sleep` action is on by default
/// from 1.30) and the newest the validator knows.
const KUBERNETES_VERSIONS: [&str; 2] = ["1.30.0", "1.37.0"];

/// Annotations on the Namespace naming the Secrets created outside the
/// manifests (base/namespace.yaml).
const EXTERNAL_SECRET: &str = "external-secret.movie-ratings.dev/";

fn name(object: &Value) -> &str {
    object["metadata"]["name"].as_str().unwrap_or("?")
}

fn deployments(target: &Target) -> impl Iterator<Item = &Value> {
    target.of_kind("Deployment")
}

/// The binary a container runs: the first word of its command.
/// The `name` of each entry of a list (volumes, volume mounts).
fn names(list: &Value) -> BTreeSet<&str> {
    list.as_sequence().into_iter().flatten().filter_map(|entry| entry["name"].as_str()).collect()
}

fn binary(container: &Value) -> &str {
    container["command"][0].as_str().unwrap_or_else(|| panic!("container {} names no command", name_of(container)))
}

fn name_of(container: &Value) -> &str {
    container["name"].as_str().unwrap_or("?")
}

fn port_of(address: &str) -> u16 {
    address
        .rsplit_once(':')
        .and_then(|(_, port)| port.parse().ok())
        .unwrap_or_else(|| panic!("`{address}` has no port"))
}

/// A humantime duration as the services take it (`10s`, `1m`), in seconds.
fn seconds(text: &str) -> u64 {
    let (number, unit) = text.split_at(text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len()));
    let number: u64 = number.parse().unwrap_or_else(|_| panic!("`{text}` is not a duration"));
    match unit {
        "s" | "" => number,
        "m" => number * 60,
        other => panic!("unexpected unit `{other}` in `{text}`"),
    }
}

/// The default clap gives a setting of `C`, by its environment variable.
fn default_of<C: CommandFactory>(variable: &str) -> Option<String> {
    let command = C::command();
    let argument = command.get_arguments().find(|argument| argument.get_env().is_some_and(|env| env == variable))?;
    argument.get_default_values().first().map(|value| value.to_string_lossy().into_owned())
}

#[test]
fn every_target_builds_and_every_component_is_in_one() {
    let targets = targets();
    let mut used: BTreeSet<String> =
        COMBINATIONS.iter().flat_map(|(_, names)| names.iter().map(|n| n.to_string())).collect();
    used.extend(overlay_components("dev"));
    used.extend(overlay_components("production"));
    let present: BTreeSet<String> = std::fs::read_dir(manifests_root().join("components"))
        .expect("deploy/kubernetes/components")
        .map(|entry| entry.expect("a directory entry").file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(used, present, "every component is rendered by an overlay or a combination, and only those exist");
    for target in &targets {
        assert!(!target.objects.is_empty(), "{} renders nothing", target.name);
        println!("{}: {} objects", target.name, target.objects.len());
    }
}

#[test]
fn core_objects_validate_against_the_kubernetes_schemas_in_strict_mode() {
    for target in targets() {
        let core: Vec<&Value> =
            target.objects.iter().filter(|object| !is_custom(object["apiVersion"].as_str().unwrap_or(""))).collect();
        let file = tempfile::NamedTempFile::new().expect("a temporary file");
        let yaml: Vec<String> = core.iter().map(|object| serde_norway::to_string(object).expect("YAML")).collect();
        std::fs::write(file.path(), yaml.join("---\n")).expect("write the core objects");
        for version in KUBERNETES_VERSIONS {
            let mut command = Command::new("kubernetes-validate");
            command.args(["--strict", "--quiet", "--kubernetes-version", version]).arg(file.path());
            let output = run_tool(command, "scripts/install-tools.sh --for-tests installs kubernetes-validate (pip)");
            assert!(
                output.status.success(),
                "{}: kubernetes-validate --strict (Kubernetes {version}):\n{}{}",
                target.name,
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            );
            println!("{}: {} core objects valid against Kubernetes {version}", target.name, core.len());
        }
    }
}

#[test]
fn custom_resources_validate_against_the_operators_crds() {
    let Some(schemas) = crd_schemas() else {
        // Printed whatever the outcome (.config/nextest.toml), so that a run
        // without the schemas says what it did not check.
        println!(
            "SKIPPED: the custom resources (Strimzi, CloudNativePG, KEDA, Prometheus operator) were NOT validated: \
             {} is absent (the operators' CRD schemas at their pinned releases; see its README.md)",
            workspace_root().join("../shared/crds").display()
        );
        return;
    };
    let script = workspace_root().join("scripts/validate-custom-resources.py");
    for target in targets() {
        let custom: Vec<String> = target
            .objects
            .iter()
            .filter(|object| is_custom(object["apiVersion"].as_str().unwrap_or("")))
            .map(|object| serde_norway::to_string(object).expect("YAML"))
            .collect();
        let file = tempfile::NamedTempFile::new().expect("a temporary file");
        std::fs::write(file.path(), custom.join("---\n")).expect("write the custom resources");
        let mut command = Command::new("python3");
        command.arg(&script).arg(&schemas).arg(file.path());
        let output = run_tool(command, "python3 with jsonschema and PyYAML (scripts/install-tools.sh --for-tests)");
        let report = String::from_utf8_lossy(&output.stdout);
        println!("{}:\n{report}", target.name);
        assert!(
            output.status.success(),
            "{}: custom resources against {}:\n{report}{}",
            target.name,
            schemas.display(),
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

#[test]
fn checkov_passes_and_every_skip_says_why() {
    // One checkov run over every target (it takes seconds to start), in a
    // directory whose name does not start with a dot: checkov skips those.
    let directory = tempfile::Builder::new().prefix("checkov-").tempdir().expect("a temporary directory");
    for target in targets() {
        for object in &target.objects {
            for (key, value) in object["metadata"]["annotations"].as_mapping().into_iter().flatten() {
                let key = key.as_str().unwrap_or("");
                if !key.contains("checkov.io/skip") {
                    continue;
                }
                let value = value.as_str().unwrap_or("");
                let (check, reason) = value.split_once('=').unwrap_or((value, ""));
                assert!(
                    check.starts_with("CKV") && reason.split_whitespace().count() >= 5 && !reason.contains('='),
                    "{}: {} {}: `{key}: {value}` must be CKV_...=<the reason, in a sentence, with no `=`>",
                    target.name,
                    object["kind"].as_str().unwrap_or("?"),
                    name(object)
                );
            }
        }
        let file = directory.path().join(format!("{}.yaml", target.name.replace(['/', '+'], "_")));
        std::fs::write(file, &target.yaml).expect("write the rendered target");
    }
    let mut command = Command::new(checkov());
    command.args(["--framework", "kubernetes", "--compact", "--quiet", "--skip-download", "-d"]).arg(directory.path());
    let output = run_tool(command, "scripts/install-tools.sh --for-tests installs checkov in a virtual environment");
    assert!(
        output.status.success(),
        "checkov found failed checks:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    // It checked something: its summary counts the passed checks.
    let report = String::from_utf8_lossy(&output.stdout);
    let passed: u64 = report
        .split("Passed checks: ")
        .nth(1)
        .and_then(|rest| rest.split(',').next())
        .and_then(|count| count.trim().parse().ok())
        .unwrap_or(0);
    assert!(passed > 0, "checkov checked nothing:\n{report}");
    println!("{report}");
}

/// A probe's port and gRPC service name: the native grpc probe, or the
/// image's healthcheck binary (with TLS, which the native probe lacks).
fn probe_target(probe: &Value) -> (u16, String) {
    if let Some(port) = probe["grpc"]["port"].as_u64() {
        return (port as u16, probe["grpc"]["service"].as_str().unwrap_or("").to_string());
    }
    let command: Vec<&str> =
        probe["exec"]["command"].as_sequence().into_iter().flatten().filter_map(Value::as_str).collect();
    assert_eq!(command.first(), Some(&"healthcheck"), "a probe is grpc or runs the image's healthcheck: {probe:?}");
    let address = command.get(1).expect("healthcheck's address");
    assert!(address.starts_with("127.0.0.1:"), "the exec probe asks the container itself, not {address}");
    let service = command.iter().position(|word| *word == "--service").map(|at| command[at + 1]).unwrap_or("");
    (port_of(address), service.to_string())
}

#[test]
fn probes_ask_the_grpc_port_about_a_service_the_binary_serves() {
    // (binary, ROLE) -> the service names its probes ask about.
    let mut asked: BTreeMap<(String, Option<String>), BTreeSet<String>> = BTreeMap::new();
    for target in targets() {
        for deployment in deployments(&target) {
            for container in containers(deployment) {
                let listen = setting(&target, container, "LISTEN_ADDR")
                    .unwrap_or_else(|| panic!("{}: {} sets no LISTEN_ADDR", target.name, name(deployment)));
                assert!(
                    listen.starts_with("0.0.0.0:"),
                    "{}: {} must listen on all interfaces",
                    target.name,
                    name(deployment)
                );
                let grpc_port = container["ports"]
                    .as_sequence()
                    .into_iter()
                    .flatten()
                    .find(|port| port["name"].as_str() == Some("grpc"))
                    .and_then(|port| port["containerPort"].as_u64())
                    .unwrap_or_else(|| panic!("{}: {} has no port named grpc", target.name, name(deployment)));
                assert_eq!(
                    grpc_port,
                    u64::from(port_of(&listen)),
                    "{}: {}'s grpc port is LISTEN_ADDR's",
                    target.name,
                    name(deployment)
                );
                if let Some(metrics) = setting(&target, container, "METRICS_ADDR") {
                    let declared = container["ports"]
                        .as_sequence()
                        .into_iter()
                        .flatten()
                        .find(|port| port["name"].as_str() == Some("metrics"));
                    assert_eq!(
                        declared.and_then(|port| port["containerPort"].as_u64()),
                        Some(u64::from(port_of(&metrics))),
                        "{}: {}'s port named metrics is METRICS_ADDR's",
                        target.name,
                        name(deployment)
                    );
                }
                for kind in ["startupProbe", "readinessProbe", "livenessProbe"] {
                    let probe = &container[kind];
                    assert!(!probe.is_null(), "{}: {} has no {kind}", target.name, name(deployment));
                    let (port, service) = probe_target(probe);
                    assert_eq!(
                        u64::from(port),
                        grpc_port,
                        "{}: {}'s {kind} asks port {port}, not its gRPC port",
                        target.name,
                        name(deployment)
                    );
                    let role = setting(&target, container, "ROLE");
                    asked.entry((binary(container).to_string(), role)).or_default().insert(service);
                }
            }
        }
    }
    // The names are asked of the binary itself: its health service answers
    // NOT_FOUND for a name it does not serve. ROLE is the one setting that
    // changes what a binary serves.
    // A role alone needs a store the other role shares (PostgreSQL), and
    // ingesting needs Kafka: a throwaway database, and a broker address
    // nothing answers at (health answers before ingestion connects).
    let postgres = Postgres::start();
    let database = postgres.create_database();
    let nobody = format!("127.0.0.1:{}", e2e::free_port());
    for ((binary, role), services) in asked {
        let mut envs: Vec<(&str, &str)> = role.iter().map(|role| ("ROLE", role.as_str())).collect();
        if role.is_some() {
            envs.extend([("DATABASE_URL", database.as_str()), ("KAFKA_BROKERS", nobody.as_str())]);
        }
        let process = ServiceProcess::start(&binary, &[], &envs);
        for service in services {
            let answer = block_on(async {
                let channel = endpoint(&process).connect().await.expect("connect to the health service");
                HealthClient::new(channel).check(HealthCheckRequest { service: service.clone() }).await
            });
            assert!(
                answer.is_ok(),
                "a probe asks `{binary}` (ROLE={}) about the service `{service}`, which it does not serve: {:?}",
                role.as_deref().unwrap_or("unset"),
                answer.err()
            );
        }
        drop(process);
    }
}

#[test]
fn every_environment_variable_is_one_the_binary_reads() {
    let mut read: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut unknown = Vec::new();
    for target in targets() {
        for deployment in deployments(&target) {
            for container in containers(deployment) {
                let binary = binary(container).to_string();
                let known = read.entry(binary.clone()).or_insert_with(|| environment_of_help(&binary));
                for (variable, source) in environment_names(&target, container) {
                    // Read by libraries, not flags: the OpenTelemetry
                    // exporter (OTEL_*) and the log filter, as in compose.
                    if variable.starts_with("OTEL_") || variable == "RUST_LOG" {
                        continue;
                    }
                    if !known.contains(&variable) {
                        unknown.push(format!(
                            "{}: {} ({binary}): {variable} (from {source})",
                            target.name,
                            name(deployment)
                        ));
                    }
                }
            }
        }
    }
    unknown.sort();
    unknown.dedup();
    assert!(unknown.is_empty(), "variables the binaries' --help does not list:\n{}", unknown.join("\n"));
}

/// Secrets an operator in the target writes: CloudNativePG's `<cluster>-app`
/// (its application user's credentials, `uri` among them).
fn operator_secrets(target: &Target) -> BTreeMap<String, Vec<&'static str>> {
    target
        .of_kind("Cluster")
        .map(|cluster| {
            (format!("{}-app", name(cluster)), vec!["uri", "username", "password", "host", "port", "dbname"])
        })
        .collect()
}

#[test]
fn every_secret_and_configmap_reference_resolves() {
    for target in targets() {
        let external: BTreeSet<String> = target
            .of_kind("Namespace")
            .flat_map(|namespace| namespace["metadata"]["annotations"].as_mapping().into_iter().flatten())
            .filter_map(|(key, _)| key.as_str()?.strip_prefix(EXTERNAL_SECRET).map(str::to_string))
            .collect();
        let operated = operator_secrets(&target);
        let check_secret = |what: &str, secret: &str, key: Option<&str>| {
            if let Some(object) = target.find("Secret", secret) {
                if let Some(key) = key {
                    assert!(
                        !object["data"][key].is_null() || !object["stringData"][key].is_null(),
                        "{}: {what}: Secret {secret} has no key {key}",
                        target.name
                    );
                }
            } else if let Some(keys) = operated.get(secret) {
                assert!(
                    key.is_none_or(|key| keys.contains(&key)),
                    "{}: {what}: {secret} has no key {key:?}",
                    target.name
                );
            } else {
                assert!(
                    external.contains(secret),
                    "{}: {what}: Secret {secret} is neither in the manifests, nor written by an operator of them, \
                     nor declared created beforehand (Namespace annotation {EXTERNAL_SECRET}{secret})",
                    target.name
                );
            }
        };
        let check_config_map = |what: &str, config_map: &str, key: Option<&str>| {
            let object = target
                .find("ConfigMap", config_map)
                .unwrap_or_else(|| panic!("{}: {what}: ConfigMap {config_map} is not in the manifests", target.name));
            if let Some(key) = key {
                assert!(
                    !object["data"][key].is_null(),
                    "{}: {what}: ConfigMap {config_map} has no key {key}",
                    target.name
                );
            }
        };
        for deployment in deployments(&target) {
            let pod = &deployment["spec"]["template"]["spec"];
            let what = format!("Deployment {}", name(deployment));
            if let Some(account) = pod["serviceAccountName"].as_str() {
                assert!(
                    target.find("ServiceAccount", account).is_some(),
                    "{}: {what}: no ServiceAccount {account}",
                    target.name
                );
            }
            for volume in pod["volumes"].as_sequence().into_iter().flatten() {
                if let Some(secret) = volume["secret"]["secretName"].as_str() {
                    let keys: Vec<&str> = volume["secret"]["items"]
                        .as_sequence()
                        .into_iter()
                        .flatten()
                        .filter_map(|item| item["key"].as_str())
                        .collect();
                    check_secret(&what, secret, None);
                    for key in keys {
                        check_secret(&what, secret, Some(key));
                    }
                }
                if let Some(config_map) = volume["configMap"]["name"].as_str() {
                    check_config_map(&what, config_map, None);
                }
            }
            let volumes = names(&pod["volumes"]);
            for container in containers(deployment) {
                assert!(
                    names(&container["volumeMounts"]).is_subset(&volumes),
                    "{}: {what} mounts a volume it does not have",
                    target.name
                );
                for source in container["envFrom"].as_sequence().into_iter().flatten() {
                    if let Some(config_map) = source["configMapRef"]["name"].as_str() {
                        check_config_map(&what, config_map, None);
                    }
                    if let Some(secret) = source["secretRef"]["name"].as_str() {
                        check_secret(&what, secret, None);
                    }
                }
                for variable in container["env"].as_sequence().into_iter().flatten() {
                    let reference = &variable["valueFrom"];
                    if let Some(secret) = reference["secretKeyRef"]["name"].as_str() {
                        assert_ne!(
                            reference["secretKeyRef"]["optional"].as_bool(),
                            Some(true),
                            "{}: {what}: optional Secret",
                            target.name
                        );
                        check_secret(&what, secret, reference["secretKeyRef"]["key"].as_str());
                    }
                    if let Some(config_map) = reference["configMapKeyRef"]["name"].as_str() {
                        check_config_map(&what, config_map, reference["configMapKeyRef"]["key"].as_str());
                    }
                }
            }
        }
    }
}

/// Whether an image reference names one build: a digest, or a tag that is
/// not `latest`.
fn pinned(image: &str) -> bool {
    if image.contains("@sha256:") {
        return true;
    }
    let last = image.rsplit('/').next().unwrap_or(image);
    last.rsplit_once(':').is_some_and(|(_, tag)| !tag.is_empty() && tag != "latest")
}

#[test]
fn every_image_is_pinned_and_production_pulls_the_suite_by_digest() {
    for target in targets() {
        let mut images: Vec<(String, String)> = deployments(&target)
            .flat_map(|deployment| containers(deployment).into_iter().map(move |container| (deployment, container)))
            .map(|(deployment, container)| {
                (format!("Deployment {}", name(deployment)), container["image"].as_str().unwrap_or("").to_string())
            })
            .collect();
        images.extend(target.of_kind("Cluster").map(|cluster| {
            (format!("Cluster {}", name(cluster)), cluster["spec"]["imageName"].as_str().unwrap_or("").to_string())
        }));
        for (owner, image) in &images {
            assert!(pinned(image), "{}: {owner} runs `{image}`, not pinned to a version tag or a digest", target.name);
        }
        // Only a local build is referred to by tag: everything that is pulled
        // from the suite's registry is pulled by digest.
        if !target.is_overlay("dev") {
            for (owner, image) in images.iter().filter(|(owner, _)| owner.starts_with("Deployment")) {
                assert!(
                    image.contains("@sha256:"),
                    "{}: {owner} must pull the suite's image by digest, not `{image}`",
                    target.name
                );
            }
        }
    }
}

#[test]
fn kafka_topics_and_the_ingest_autoscaler_match_the_topic_configuration_of_the_rating_service() {
    let expected_config: BTreeMap<String, String> = rating::event_log::topics::TOPIC_CONFIG
        .iter()
        .map(|(key, value)| (key.to_string(), value.to_string()))
        .collect();
    for target in targets() {
        let Some(ingest) = target.find("Deployment", "rating-ingest") else {
            panic!("{}: no rating-ingest", target.name)
        };
        let container = containers(ingest)[0];
        let value = |variable: &str| {
            setting(&target, container, variable)
                .or_else(|| default_of::<rating::Config>(variable))
                .unwrap_or_else(|| panic!("{}: rating-ingest has no {variable} and the binary no default", target.name))
        };
        let partitions: u64 = value("RATINGS_TOPIC_PARTITIONS").parse().expect("a partition count");
        let topics = [value("RATINGS_TOPIC"), value("RATINGS_DLQ_TOPIC")];
        let kafka_topics: Vec<&Value> = target.of_kind("KafkaTopic").collect();
        if !kafka_topics.is_empty() {
            let names: BTreeSet<&str> =
                kafka_topics.iter().filter_map(|topic| topic["spec"]["topicName"].as_str()).collect();
            assert_eq!(
                names,
                topics.iter().map(String::as_str).collect(),
                "{}: the KafkaTopics are the service's topics",
                target.name
            );
            for topic in kafka_topics {
                let spec = &topic["spec"];
                assert_eq!(
                    spec["partitions"].as_u64(),
                    Some(partitions),
                    "{}: KafkaTopic {} partitions",
                    target.name,
                    name(topic)
                );
                let config = text_map(&spec["config"], "KafkaTopic config");
                assert_eq!(
                    config,
                    expected_config,
                    "{}: KafkaTopic {} config is rating's TOPIC_CONFIG",
                    target.name,
                    name(topic)
                );
            }
        }
        for scaled in target.of_kind("ScaledObject") {
            assert_eq!(scaled["spec"]["scaleTargetRef"]["name"].as_str(), Some("rating-ingest"));
            assert_eq!(
                scaled["spec"]["maxReplicaCount"].as_u64(),
                Some(partitions),
                "{}: past the partition count, an ingest replica gets no partition",
                target.name
            );
            let window = scaled["spec"]["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]["scaleDown"]["stabilizationWindowSeconds"]
                .as_u64()
                .unwrap_or(0);
            assert!(
                window >= 600,
                "{}: scaling the ingest role down rebalances partitions: a long window, not {window} s",
                target.name
            );
            for trigger in scaled["spec"]["triggers"].as_sequence().into_iter().flatten() {
                let metadata = &trigger["metadata"];
                assert_eq!(trigger["type"].as_str(), Some("kafka"));
                assert_eq!(
                    metadata["topic"].as_str(),
                    Some(topics[0].as_str()),
                    "{}: KEDA watches the ratings topic",
                    target.name
                );
                assert_eq!(
                    metadata["consumerGroup"].as_str().map(str::to_string),
                    Some(value("RATINGS_CONSUMER_GROUP")),
                    "{}: KEDA reads the lag of the ingest role's consumer group",
                    target.name
                );
                let from_env = metadata["bootstrapServersFromEnv"].as_str().expect("bootstrapServersFromEnv");
                assert!(
                    environment_names(&target, container).contains_key(from_env),
                    "{}: KEDA reads {from_env} from rating-ingest's environment, which does not set it",
                    target.name
                );
            }
        }
    }
}

#[test]
fn termination_leaves_time_for_the_prestop_sleep_and_the_drain() {
    for target in targets() {
        for deployment in deployments(&target) {
            let grace =
                deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"].as_u64().unwrap_or_else(|| {
                    panic!("{}: {} sets no terminationGracePeriodSeconds", target.name, name(deployment))
                });
            for container in containers(deployment) {
                let shutdown = setting(&target, container, "SHUTDOWN_TIMEOUT")
                    .or_else(|| default_of::<metadata::Config>("SHUTDOWN_TIMEOUT"))
                    .map(|text| seconds(&text))
                    .expect("a shutdown timeout");
                let sleep = container["lifecycle"]["preStop"]["sleep"]["seconds"].as_u64().unwrap_or(0);
                assert!(
                    container["lifecycle"]["preStop"]["exec"].is_null(),
                    "{}: {}: the image runs no shell; use the native sleep action",
                    target.name,
                    name(deployment)
                );
                // An ingesting rating also stops its ingestion, within its
                // own bound, before or after the drain; then 5 s for the
                // process to exit.
                let ingests = binary(container) == "rating"
                    && setting(&target, container, "ROLE").is_none_or(|role| role != "serve");
                let ingestion = if ingests { rating::INGESTION_STOP_TIMEOUT.as_secs() } else { 0 };
                assert!(
                    grace >= sleep + shutdown + ingestion + 5,
                    "{}: {}: terminationGracePeriodSeconds {grace} < preStop {sleep} s + SHUTDOWN_TIMEOUT {shutdown} s \
                     + stopping ingestion {ingestion} s + 5 s",
                    target.name,
                    name(deployment)
                );
                let serves_clients = target.of_kind("Service").any(|service| {
                    service["spec"]["selector"]["app.kubernetes.io/name"].as_str() == Some(name(deployment))
                });
                assert!(
                    !serves_clients || sleep > 0,
                    "{}: {} is behind a Service: a preStop sleep keeps it serving while its endpoint is removed",
                    target.name,
                    name(deployment)
                );
            }
        }
    }
}

#[test]
fn the_prometheus_rule_holds_the_compose_alert_rules() {
    let alerts = load_yaml("observability/prometheus/alerts.yml");
    let mut seen = false;
    for target in targets() {
        for rule in target.of_kind("PrometheusRule") {
            seen = true;
            assert_eq!(
                rule["spec"]["groups"],
                alerts["groups"],
                "{}: PrometheusRule {} differs from alerts.yml",
                target.name,
                name(rule)
            );
        }
    }
    assert!(seen, "some target renders the PrometheusRule");
}

/// The fewest replicas a workload runs with: its autoscaler's minimum, or
/// its Deployment's count.
fn fewest_replicas(target: &Target, workload: &str) -> u64 {
    let hpa = target
        .of_kind("HorizontalPodAutoscaler")
        .find(|hpa| hpa["spec"]["scaleTargetRef"]["name"].as_str() == Some(workload))
        .and_then(|hpa| hpa["spec"]["minReplicas"].as_u64());
    let keda = target
        .of_kind("ScaledObject")
        .find(|scaled| scaled["spec"]["scaleTargetRef"]["name"].as_str() == Some(workload))
        .and_then(|scaled| scaled["spec"]["minReplicaCount"].as_u64());
    let deployment = target.find("Deployment", workload).expect("the workload");
    hpa.or(keda).or_else(|| deployment["spec"]["replicas"].as_u64()).unwrap_or(1)
}

#[test]
fn production_runs_two_replicas_of_every_role_spread_with_tls_and_tokens() {
    let targets = targets();
    let production = targets.iter().find(|target| target.is_overlay("production")).expect("the production overlay");
    for workload in WORKLOADS {
        assert!(fewest_replicas(production, workload) >= 2, "production runs at least two {workload}");
        let deployment = production.find("Deployment", workload).expect("the workload");
        let pod = &deployment["spec"]["template"]["spec"];
        assert!(!pod["affinity"]["podAntiAffinity"].is_null(), "production spreads {workload} with anti-affinity");
        let container = containers(deployment)[0];
        assert!(setting(production, container, "TLS_CERT").is_some(), "production {workload} serves TLS");
        assert_eq!(setting(production, container, "DISCOVERY").as_deref(), Some("dns"));
    }
    for workload in ["metadata", "rating"] {
        let container = containers(production.find("Deployment", workload).expect("the workload"))[0];
        assert!(
            setting(production, container, "AUTH_HS256_SECRET_FILE").is_some(),
            "production {workload} needs tokens on writes"
        );
    }
    let movie = containers(production.find("Deployment", "movie").expect("movie"))[0];
    assert!(setting(production, movie, "UPSTREAM_TLS_CA").is_some(), "production movie verifies its upstreams");
    let dev = targets.iter().find(|target| target.is_overlay("dev")).expect("the dev overlay");
    for workload in WORKLOADS {
        assert_eq!(fewest_replicas(dev, workload), 1, "dev runs one {workload}");
    }
}

#[test]
fn pods_meet_the_restricted_pod_security_standard() {
    for target in targets() {
        for namespace in target.of_kind("Namespace") {
            let labels = &namespace["metadata"]["labels"];
            assert_eq!(labels["pod-security.kubernetes.io/enforce"].as_str(), Some("restricted"), "{}", target.name);
        }
        for deployment in deployments(&target) {
            let pod = &deployment["spec"]["template"]["spec"];
            let what = format!("{}: {}", target.name, name(deployment));
            assert_eq!(pod["securityContext"]["runAsNonRoot"].as_bool(), Some(true), "{what}: runAsNonRoot");
            assert_ne!(pod["securityContext"]["runAsUser"].as_u64(), Some(0), "{what}: not as root");
            assert_eq!(
                pod["securityContext"]["seccompProfile"]["type"].as_str(),
                Some("RuntimeDefault"),
                "{what}: seccomp"
            );
            assert_eq!(pod["automountServiceAccountToken"].as_bool(), Some(false), "{what}: no API token");
            assert!(!pod["topologySpreadConstraints"].is_null(), "{what}: spread over zones and nodes");
            assert!(
                target.of_kind("PodDisruptionBudget").any(|pdb| name(pdb) == name(deployment)),
                "{what}: a PodDisruptionBudget"
            );
            for container in containers(deployment) {
                let security = &container["securityContext"];
                // A container's own setting overrides the pod's.
                assert_ne!(security["runAsNonRoot"].as_bool(), Some(false), "{what}: runAsNonRoot");
                assert_ne!(security["runAsUser"].as_u64(), Some(0), "{what}: not as root");
                let added = security["capabilities"]["add"].as_sequence().into_iter().flatten();
                assert!(
                    added.clone().all(|capability| capability == "NET_BIND_SERVICE"),
                    "{what}: adds no capability but NET_BIND_SERVICE: {:?}",
                    added.collect::<Vec<_>>()
                );
                assert_eq!(
                    security["allowPrivilegeEscalation"].as_bool(),
                    Some(false),
                    "{what}: no privilege escalation"
                );
                assert_eq!(
                    security["readOnlyRootFilesystem"].as_bool(),
                    Some(true),
                    "{what}: read-only root filesystem"
                );
                assert_eq!(
                    security["capabilities"]["drop"][0].as_str(),
                    Some("ALL"),
                    "{what}: every capability dropped"
                );
                for resource in ["requests", "limits"] {
                    assert!(!container["resources"][resource]["memory"].is_null(), "{what}: memory {resource}");
                }
            }
        }
    }
}
