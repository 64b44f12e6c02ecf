//! Runs `docs/walkthrough.md` against the no-Docker stack, so the tour a
//! learner follows cannot rot.
//!
//! Every ```sh block of the walkthrough is a step; a ```text block right after
//! it is what the step prints. Steps run in order with bash, against the
//! real binaries, a real Kafka-protocol broker (Tansu), a throwaway
//! PostgreSQL server with the compose file's databases, and the Consul
//! stand-in, with `localhost:<port>` rewritten to where each of them listens
//! here. A step that needs Docker (`docker ...`) is replaced by its local
//! equivalent, defined below; a Docker command this file does not know fails
//! the test, so no step can be added to the walkthrough without being run.
//!
//! Outputs are compared after masking what differs from run to run or from a
//! Docker network: timestamps, durations, instance ids, IP addresses and
//! ports, and Kafka offsets. A read-only step is retried for a while when it
//! fails or its output does not match yet, since events arrive
//! asynchronously and restarted services are found again after a while (the
//! walkthrough says "a moment later" and "a few seconds later" there).
use std::{
    collections::BTreeMap,
    path::PathBuf,
    process::Command,
    sync::LazyLock,
    time::{Duration, Instant},
};

use e2e::{
    broker::Broker,
    compose,
    consul::FakeConsul,
    postgres::Postgres,
    process::{ServiceProcess, binary},
    rating::health,
    wait_until,
};
use regex::Regex;

/// One ```sh block and the ```text block after it, if any.
#[derive(Debug)]
struct Step {
    line: usize,
    script: String,
    expected: Option<String>,
}

fn steps(markdown: &str) -> Vec<Step> {
    let mut steps: Vec<Step> = Vec::new();
    let mut lines = markdown.lines().enumerate();
    // Whether only blank lines separate the current block from the last step.
    let mut follows_step = false;
    while let Some((number, line)) = lines.next() {
        let Some(info) = line.strip_prefix("```") else {
            follows_step &= line.trim().is_empty();
            continue;
        };
        let mut body = String::new();
        for (_, line) in lines.by_ref() {
            if line.starts_with("```") {
                break;
            }
            body.push_str(line);
            body.push('\n');
        }
        match info.trim() {
            "sh" => {
                steps.push(Step { line: number + 1, script: body, expected: None });
                follows_step = true;
            }
            "text" if follows_step => {
                steps.last_mut().expect("a step").expected = Some(body);
                follows_step = false;
            }
            _ => follows_step = false,
        }
    }
    steps
}

/// Masks what legitimately differs between runs and between the Docker
/// stack and this one.
fn normalize(text: &str) -> String {
    static MASKS: LazyLock<Vec<(Regex, &str)>> = LazyLock::new(|| {
        [
            (r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z", "<time>"),
            (r"\b\d+(\.\d+)?(ns|µs|ms|s)\b", "<duration>"),
            (r"\b(metadata|rating|movie)-[0-9a-f]{8}\b", "$1-<id>"),
            (r"\b\d{1,3}(\.\d{1,3}){3}(:\d+)?\b", "<address>"),
            (r"\b(offset[=:] ?)\d+", "${1}<n>"),
        ]
        .into_iter()
        .map(|(pattern, replacement)| (Regex::new(pattern).expect("mask pattern"), replacement))
        .collect()
    });
    let mut text = text.to_string();
    for (pattern, replacement) in MASKS.iter() {
        text = pattern.replace_all(&text, *replacement).into_owned();
    }
    text.lines().map(str::trim_end).collect::<Vec<_>>().join("\n").trim().to_string()
}

/// Whether `actual` is what `expected` says; an expected output that opens
/// with a `...` line only has to match the end of the actual one (log lines
/// before a summary, say).
fn matches(actual: &str, expected: &str) -> bool {
    match expected.strip_prefix("...\n") {
        Some(tail) => actual == tail || actual.ends_with(&format!("\n{tail}")),
        None => actual == expected,
    }
}

/// The local stack: what `docker compose up` starts, without Docker.
struct Stack {
    broker: Broker,
    consul: FakeConsul,
    metadatas: Vec<ServiceProcess>,
    ratings: Vec<ServiceProcess>,
    movie: Option<ServiceProcess>,
    /// `localhost:<published port>` → where that service listens here.
    ports: BTreeMap<u16, String>,
    scratch: PathBuf,
    /// Service → its DATABASE_URL here: its compose database, on `postgres`.
    databases: BTreeMap<&'static str, String>,
    /// Last, so that it stops after the services.
    postgres: Postgres,
}

/// RUST_LOG of a service in docker-compose.yml, so its logs read the same.
fn compose_log_filter(service: &str) -> String {
    let compose = compose::load();
    compose::environment(compose::service(&compose, service))
        .remove("RUST_LOG")
        .unwrap_or_else(|| "info,consulrs=warn".to_string())
}

/// The databases of docker-compose.yml, created as the compose PostgreSQL
/// creates them (its init script), on a server here; each storing service's
/// URL names its compose database on that server.
fn databases(postgres: &Postgres) -> BTreeMap<&'static str, String> {
    let compose = compose::load();
    let init = compose::service(&compose, "postgres")["volumes"]
        .as_sequence()
        .expect("postgres's volumes")
        .iter()
        .filter_map(|mount| mount.as_str()?.split(':').next())
        .find(|source| source.ends_with(".sql"))
        .expect("the init script")
        .to_string();
    let script = compose::workspace_root().join(init);
    let (output, succeeded) =
        run(&format!("{} -d postgres -v ON_ERROR_STOP=1 -f {}", postgres.psql_command(), script.display()));
    assert!(succeeded, "{}: {output}", script.display());
    ["metadata", "rating"]
        .into_iter()
        .map(|service| {
            let url = &compose::environment(compose::service(&compose, service))["DATABASE_URL"];
            let (_, database) = url.rsplit_once('/').expect("a database in the URL");
            (service, postgres.url_of(database))
        })
        .collect()
}

impl Stack {
    fn up() -> Self {
        let broker = Broker::start_in_memory();
        let consul = FakeConsul::start();
        let postgres = Postgres::start();
        let databases = databases(&postgres);
        let scratch = std::env::temp_dir().join(format!("walkthrough-{}", std::process::id()));
        std::fs::create_dir_all(&scratch).expect("scratch directory");
        let mut stack = Self {
            broker,
            consul,
            metadatas: Vec::new(),
            ratings: Vec::new(),
            movie: None,
            ports: BTreeMap::new(),
            scratch,
            databases,
            postgres,
        };
        let metadata = stack.service("metadata", &[]);
        let rating = stack.start_rating();
        wait_until("rating has replayed the topic", Duration::from_secs(30), || health(&rating) == "SERVING");
        let movie = stack.service("movie", &["--discovery-refresh", "1s"]);
        // Compose starts each service once what it needs is healthy.
        for service in [&metadata, &movie] {
            wait_until("the service reports SERVING", Duration::from_secs(30), || health(service) == "SERVING");
        }
        stack.ports.insert(8081, metadata.authority());
        stack.ports.insert(8082, rating.authority());
        stack.ports.insert(8083, movie.authority());
        stack.ports.insert(8500, stack.consul.http_address().trim_start_matches("http://").to_string());
        stack.ports.insert(9092, stack.broker.address());
        stack.metadatas.push(metadata);
        stack.ratings.push(rating);
        stack.movie = Some(movie);
        stack
    }

    /// A service as compose runs it: its log filter and, for metadata and
    /// rating, its database. (Until rating reads DATABASE_URL, it ignores it
    /// and keeps its store in memory, rebuilt from the topic at start: the
    /// steps print the same.)
    fn service(&self, name: &str, args: &[&str]) -> ServiceProcess {
        let consul = self.consul.http_address();
        let mut all = vec!["--consul-addr", &consul];
        all.extend_from_slice(args);
        let log_filter = compose_log_filter(name);
        let mut environment = vec![("RUST_LOG", log_filter.as_str())];
        if let Some(url) = self.databases.get(name) {
            environment.push(("DATABASE_URL", url));
        }
        ServiceProcess::start(name, &all, &environment)
    }

    fn start_rating(&self) -> ServiceProcess {
        self.service("rating", &["--kafka-brokers", &self.broker.address()])
    }

    /// `localhost:<port>` rewritten to this stack's addresses.
    fn localize(&self, script: &str) -> String {
        let mut script = script.to_string();
        for (port, address) in &self.ports {
            script = script.replace(&format!("localhost:{port}"), address);
        }
        script
    }

    /// Runs a Docker step's local equivalent and returns what it prints.
    fn docker_step(&mut self, command: &str) -> String {
        let command = command.trim();
        if command == "docker compose up -d --build" {
            // Started by `Stack::up`, as compose waits for health.
            String::new()
        } else if command == "docker compose ps -a" {
            // Compose shows each service healthy: here, each answers SERVING.
            // (The stack here has no topic-creating job: rating creates them.)
            let running = self.metadatas.iter().chain(&self.ratings).chain(&self.movie);
            for process in running {
                assert_eq!(health(process), "SERVING");
            }
            String::new()
        } else if command == "docker compose run --rm ratingingester"
            || command == "docker compose run --rm --no-deps ratingingester"
        {
            // Here the broker is up all along: nothing to start first.
            let output = Command::new(binary("ratingingester"))
                .arg(compose::workspace_root().join("ratingsdata.json"))
                .args(["--kafka-brokers", &self.broker.address()])
                .output()
                .expect("run ratingingester");
            assert!(output.status.success(), "ratingingester: {}", String::from_utf8_lossy(&output.stderr));
            format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr))
        } else if let Some(rest) = command.strip_prefix("docker compose logs --no-log-prefix ") {
            let (service, pipeline) = rest.split_once(" | ").unwrap_or((rest, "cat"));
            let log = match service.trim() {
                "rating" => self.ratings.iter().map(ServiceProcess::log).collect::<String>(),
                "metadata" => self.metadatas.iter().map(ServiceProcess::log).collect::<String>(),
                "movie" => self.movie.as_ref().expect("movie").log(),
                other => panic!("no service {other} in the stack"),
            };
            let file = self.scratch.join("service.log");
            std::fs::write(&file, log).expect("write the log");
            run(&format!("cat {} | {}", file.display(), self.localize(pipeline))).0
        } else if command == "docker compose restart metadata rating" {
            // Each instance stops (SIGTERM) and starts again as it was.
            let metadatas = std::mem::take(&mut self.metadatas);
            let ratings = std::mem::take(&mut self.ratings);
            let (metadata_count, rating_count) = (metadatas.len(), ratings.len());
            for process in metadatas.into_iter().chain(ratings) {
                let status = process.terminate(Duration::from_secs(15));
                assert!(status.success(), "a service stopped with {status}");
            }
            self.metadatas = (0..metadata_count).map(|_| self.service("metadata", &[])).collect();
            self.ratings = (0..rating_count).map(|_| self.start_rating()).collect();
            // What `docker compose ps` shows a few seconds later: all healthy.
            for process in self.metadatas.iter().chain(&self.ratings) {
                wait_until("a restarted instance is ready", Duration::from_secs(30), || health(process) == "SERVING");
            }
            self.ports.insert(8081, self.metadatas[0].authority());
            self.ports.insert(8082, self.ratings[0].authority());
            String::new()
        } else if let Some(arguments) = command.strip_prefix("docker compose exec postgres psql -U movies ") {
            // The compose user is `movies`; this server's is `postgres`.
            let (output, succeeded) = run(&format!("{} {arguments}", self.postgres.psql_command()));
            assert!(succeeded, "psql {arguments}: {output}");
            output
        } else if command
            == "METADATA_HOST_PORTS=18081-18088 RATING_HOST_PORTS=18082-18089 \
                docker compose up -d --no-recreate --scale metadata=2 --scale rating=2"
        {
            // The first instances are left as they are, still behind
            // `localhost:8081` and `localhost:8082`.
            let metadata = self.service("metadata", &[]);
            let rating = self.start_rating();
            for process in [&metadata, &rating] {
                wait_until("a second instance is ready", Duration::from_secs(30), || health(process) == "SERVING");
            }
            self.metadatas.push(metadata);
            self.ratings.push(rating);
            // Consul lists an instance as passing once its first heartbeat came.
            for service in ["metadata", "rating"] {
                wait_until(&format!("Consul has both {service} instances passing"), Duration::from_secs(10), || {
                    let registered = self.consul.registered(service);
                    registered.len() == 2
                        && registered.iter().all(|instance| {
                            instance.check_id.as_deref().is_some_and(|check| self.consul.heartbeats(check) > 0)
                        })
                });
            }
            // And movie calls them once it has asked Consul again.
            let asked_before = self.consul.requests().len();
            wait_until("movie has looked up both services again", Duration::from_secs(10), || {
                let requests = self.consul.requests();
                ["metadata", "rating"].iter().all(|service| {
                    let lookup = format!("/v1/health/service/{service}?");
                    requests[asked_before..].iter().any(|request| request.contains(&lookup))
                })
            });
            String::new()
        } else if command == "docker compose ps -q rating | head -n 1 | xargs docker kill" {
            self.ratings.remove(0).crash();
            String::new()
        } else if command == "docker compose --profile observability up -d jaeger prometheus grafana" {
            // Jaeger, Prometheus and Grafana have no stand-in here: what they
            // read is checked by tests/tests/it/observability_config.rs and
            // compose.rs, and the steps that use them are done in a browser.
            // That this leaves the scaled services alone is compose.rs's too.
            String::new()
        } else if command == "docker compose --profile observability down" {
            let movie = self.movie.take().expect("movie");
            let ratings = std::mem::take(&mut self.ratings);
            let metadatas = std::mem::take(&mut self.metadatas);
            let running = 1 + ratings.len() + metadatas.len();
            let deregistered_before = self.consul.deregistered().len();
            for process in [movie].into_iter().chain(ratings).chain(metadatas) {
                let status = process.terminate(Duration::from_secs(15));
                assert!(status.success(), "a service stopped with {status}");
            }
            assert_eq!(self.consul.deregistered().len() - deregistered_before, running, "each instance deregistered");
            assert!(self.consul.registered("metadata").is_empty() && self.consul.registered("movie").is_empty());
            String::new()
        } else {
            panic!(
                "the walkthrough has a Docker step this test has no local equivalent for: `{command}`; \
                 add one to tests/tests/it/walkthrough.rs"
            );
        }
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.scratch);
    }
}

/// Runs a script with bash (pipefail), stdout and stderr together.
fn run(script: &str) -> (String, bool) {
    run_in(&std::env::current_dir().expect("the working directory"), script)
}

/// [`run`] in `directory`.
fn run_in(directory: &std::path::Path, script: &str) -> (String, bool) {
    let output = Command::new("bash")
        .args(["-o", "pipefail", "-c", &format!("exec 2>&1\n{script}")])
        .current_dir(directory)
        .env("LD_LIBRARY_PATH", kcat_library_path())
        .output()
        .expect("run bash");
    // kcat 1.7.1 sets a property that the newer librdkafka it runs with here
    // warns about (see `kcat_library_path`); with its own librdkafka it does not.
    let printed: String = String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter(|line| !(line.starts_with("%4|") && line.contains("|CONFWARN|")))
        .map(|line| format!("{line}\n"))
        .collect();
    (printed, output.status.success())
}

/// Debian's kcat links librdkafka 2.0.2, which fails Tansu's ApiVersions
/// handshake (Apache Kafka is fine). The same kcat runs here with the newer
/// librdkafka that the confluent-kafka wheel ships.
fn kcat_library_path() -> String {
    static PATH: LazyLock<String> = LazyLock::new(|| {
        let output = Command::new("python3")
            .args(["-c", "import confluent_kafka, os; print(os.path.dirname(confluent_kafka.__file__) + '.libs')"])
            .output()
            .expect("python3 with confluent-kafka (scripts/install-tools.sh --for-tests)");
        let libs = PathBuf::from(String::from_utf8_lossy(&output.stdout).trim());
        let library = std::fs::read_dir(&libs)
            .unwrap_or_else(|error| panic!("{}: {error}", libs.display()))
            .map(|entry| entry.expect("directory entry").path())
            .find(|path| path.file_name().is_some_and(|name| name.to_string_lossy().starts_with("librdkafka")))
            .expect("the wheel's librdkafka");
        let directory = std::env::temp_dir().join("walkthrough-librdkafka");
        std::fs::create_dir_all(&directory).expect("library directory");
        let link = directory.join("librdkafka.so.1");
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink(&library, &link).expect("link librdkafka.so.1");
        directory.display().to_string()
    });
    PATH.clone()
}

/// Whether running the step again could change anything.
fn has_side_effects(script: &str) -> bool {
    ["kcat -P", "/Put", "/Delete", "docker "].iter().any(|marker| script.contains(marker))
}

#[test]
fn every_step_of_the_walkthrough_prints_what_it_says() {
    let markdown = std::fs::read_to_string(compose::workspace_root().join("docs/walkthrough.md"))
        .expect("read docs/walkthrough.md");
    let steps = steps(&markdown);
    assert!(steps.len() >= 10, "the walkthrough has only {} steps", steps.len());
    let mut stack = Stack::up();
    let mut docker_steps = 0;
    for step in &steps {
        let is_docker = step.script.lines().any(|line| line.contains("docker "));
        let deadline = Instant::now() + Duration::from_secs(if has_side_effects(&step.script) { 0 } else { 30 });
        loop {
            let (actual, failed) = if is_docker {
                docker_steps += 1;
                (stack.docker_step(&step.script), false)
            } else {
                let (output, succeeded) = run(&stack.localize(&step.script));
                let expects_error = step.expected.as_deref().is_some_and(|text| text.starts_with("ERROR:"));
                (output, !succeeded && !expects_error)
            };
            // A read-only step that fails is retried too: a service that
            // has just restarted may not be found yet.
            if failed {
                assert!(
                    Instant::now() < deadline,
                    "walkthrough line {}: `{}` failed:\n{actual}",
                    step.line,
                    step.script.trim()
                );
                std::thread::sleep(Duration::from_millis(500));
                continue;
            }
            let Some(expected) = &step.expected else { break };
            if matches(&normalize(&actual), &normalize(expected)) {
                break;
            }
            if Instant::now() >= deadline {
                panic!(
                    "walkthrough line {}: `{}` printed\n{actual}\nbut the walkthrough says\n{expected}\n(compared as\n{}\nvs\n{})",
                    step.line,
                    step.script.trim(),
                    normalize(&actual),
                    normalize(expected)
                );
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    }
    assert!(docker_steps >= 5, "only {docker_steps} Docker steps ran their local equivalent");
    assert!(stack.movie.is_none(), "the walkthrough ends with the stack stopped");
}

#[test]
fn steps_pair_commands_with_the_output_that_follows_them() {
    let markdown =
        "intro\n```sh\necho a\n```\n\n```text\na\n```\nprose\n```sh\ntrue\n```\nprose\n```text\nnot output\n```\n";
    let steps = steps(markdown);
    assert_eq!(steps.len(), 2);
    assert_eq!(steps[0].script, "echo a\n");
    assert_eq!(steps[0].expected.as_deref(), Some("a\n"));
    assert_eq!(steps[1].expected, None, "a text block after prose is not the step's output");
}

#[test]
fn an_elided_start_matches_only_whole_trailing_lines() {
    assert!(matches("log\nlog\nsummary", "...\nsummary"));
    assert!(matches("summary", "...\nsummary"));
    assert!(!matches("log\nthe summary", "...\nsummary"));
    assert!(!matches("log\nsummary", "summary"));
}

#[test]
fn normalizing_masks_what_differs_between_runs_and_stacks() {
    assert_eq!(
        normalize("2026-11-23T13:05:01.123456Z  WARN rating: partition=1 offset=7 took 1.52ms  \n"),
        normalize("2025-01-01T00:00:00Z  WARN rating: partition=1 offset=0 took 3s")
    );
    assert_eq!(normalize("rating-0a1b2c3d 172.18.0.6:8082"), normalize("rating-ffffffff 127.0.0.1:40123"));
    assert_ne!(normalize("rating-0a1b2c3d 172.18.0.6:8082"), normalize("movie-0a1b2c3d 172.18.0.6:8082"));
    assert_ne!(normalize("\"rating\": 4.5"), normalize("\"rating\": 3.5"), "values are compared");
}

/// The README's section on producers in other languages, run as written:
/// each ```sh step, in a scratch directory that holds the repository's
/// `contract/` (the schema the Python example loads), against Tansu and the
/// rating service, with `127.0.0.1:9092` and `127.0.0.1:8082` rewritten to
/// where they listen here and `cargo run` to the built binary.
#[test]
fn the_readmes_producers_in_other_languages_do_what_it_says() {
    let readme = std::fs::read_to_string(compose::workspace_root().join("README.md")).expect("read README.md");
    let heading = "## Producing rating events from another language\n";
    let (_, section) = readme.split_once(heading).expect("the README's section on other languages");
    let section = section.split("\n## ").next().expect("the section");
    let steps = steps(section);
    assert!(steps.len() >= 4, "the section has only {} steps", steps.len());

    let broker = Broker::start_in_memory();
    let rating = ServiceProcess::start("rating", &["--kafka-brokers", &broker.address()], &[]);
    wait_until("rating is serving", Duration::from_secs(30), || health(&rating) == "SERVING");
    let scratch = tempfile::tempdir().expect("a scratch directory");
    std::os::unix::fs::symlink(compose::workspace_root().join("contract"), scratch.path().join("contract"))
        .expect("link contract/");
    let ratingingester = binary("ratingingester").display().to_string();
    let localize = |script: &str| {
        script
            .replace("127.0.0.1:9092", &broker.address())
            .replace("127.0.0.1:8082", &rating.authority())
            .replace("cargo run -q --bin ratingingester --", &ratingingester)
    };

    for step in &steps {
        let script = localize(&step.script);
        // A step that prints `error: ...` must fail; any other must succeed.
        let expects_failure =
            step.expected.as_deref().is_some_and(|text| text.lines().any(|line| line.starts_with("error: ")));
        // Only a read waits for the events to be applied: a step that
        // writes runs once.
        let reads = script.trim_start().starts_with("grpcurl") && !has_side_effects(&script);
        let deadline = Instant::now() + Duration::from_secs(if reads { 30 } else { 0 });
        loop {
            let (actual, succeeded) = run_in(scratch.path(), &script);
            let printed_as_said =
                step.expected.as_deref().is_none_or(|expected| matches(&normalize(&actual), &normalize(expected)));
            if succeeded != expects_failure && printed_as_said {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "README line {}: `{}` {} and printed\n{actual}\nbut the README says\n{}",
                step.line,
                step.script.trim(),
                if succeeded { "succeeded" } else { "failed" },
                step.expected.as_deref().unwrap_or("nothing in particular"),
            );
            std::thread::sleep(Duration::from_millis(500));
        }
    }
    // Every event reached the topic keyed as the rating service keys it,
    // and none was refused.
    let published = broker.read_all("ratings");
    assert_eq!(published.len(), 4, "kcat's event and Python's three: {published:?}");
    for message in &published {
        let event = contract::event::RatingEvent::from_json(
            message["value"].as_str().unwrap_or_default().as_bytes(),
            contract::rating::RatingRange::default(),
        )
        .unwrap_or_else(|error| panic!("{message}: {error}"));
        assert_eq!(message["key"], event.kafka_key(), "{message}");
    }
    assert_eq!(broker.message_count("ratings.dlq"), 0, "nothing was dead-lettered");
}
