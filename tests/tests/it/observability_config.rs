//! The observability profile's own configuration, checked with the tools
//! that read it: `promtool check config` on Prometheus's config (and through
//! it the alert rules it names), `promtool test rules` on the alerts' unit
//! tests, and the Grafana dashboard parsed, each query checked by promtool
//! and against the metrics the services export.
use std::{
    collections::BTreeSet,
    path::{Path, PathBuf},
    process::{Command, Output},
    sync::LazyLock,
};

use e2e::compose::{load_yaml, workspace_root};
use regex::Regex;
use serde_json::Value as Json;
use serde_norway::Value as Yaml;

const PROMETHEUS: &str = "observability/prometheus";
const DASHBOARD: &str = "observability/grafana/dashboards/movie-ratings.json";
const DATASOURCES: &str = "observability/grafana/provisioning/datasources/prometheus.yml";

/// The series the services export (docs/operations.md describes them), by
/// the names a query uses, and Prometheus's own `up`.
const HISTOGRAMS: [&str; 2] = ["rpc_server_call_duration_seconds", "rpc_client_call_duration_seconds"];
const SERIES: [&str; 8] = [
    "discovery_instances",
    "discovery_heartbeat_failures_total",
    "rating_events_applied_total",
    "rating_events_dead_lettered_total",
    "rating_consumer_lag",
    "rating_consumer_caught_up",
    "rating_writes_total",
    "up",
];

fn known_metrics() -> BTreeSet<String> {
    let histogram_series =
        HISTOGRAMS.iter().flat_map(|name| ["_bucket", "_sum", "_count"].map(|suffix| format!("{name}{suffix}")));
    SERIES.iter().map(|name| name.to_string()).chain(histogram_series).collect()
}

fn promtool(arguments: &[&str], directory: &Path) -> Output {
    Command::new("promtool")
        .args(arguments)
        .current_dir(directory)
        .output()
        .expect("run promtool (scripts/install-tools.sh --for-tests installs it)")
}

fn printed(output: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr))
}

/// A fresh directory for files this test writes.
fn scratch(name: &str) -> PathBuf {
    let directory = std::env::temp_dir().join(format!("observability-config-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&directory);
    std::fs::create_dir_all(&directory).expect("scratch directory");
    directory
}

#[test]
fn promtool_accepts_the_prometheus_config_and_the_rules_it_names() {
    let directory = workspace_root().join(PROMETHEUS);
    let output = promtool(&["check", "config", "prometheus.yml"], &directory);
    if output.status.success() {
        return;
    }
    // Debian builds Prometheus without Consul discovery ("Disable Consul SD
    // until its Debian package is back in shape"), so its promtool refuses
    // `consul_sd_configs`. Then promtool checks everything else: the same
    // config without that block, beside the same rule files. The block itself
    // is checked against the compose file by compose.rs.
    let text = printed(&output);
    assert!(text.contains("field consul_sd_configs not found"), "promtool check config prometheus.yml:\n{text}");
    let mut config = load_yaml(&format!("{PROMETHEUS}/prometheus.yml"));
    for job in config["scrape_configs"].as_sequence_mut().expect("scrape_configs") {
        job.as_mapping_mut().expect("a scrape config").remove("consul_sd_configs");
    }
    let copy = scratch("config");
    std::fs::write(copy.join("prometheus.yml"), serde_norway::to_string(&config).expect("YAML"))
        .expect("write the config");
    for rule_file in config["rule_files"].as_sequence().expect("rule_files") {
        let rule_file = rule_file.as_str().expect("a rule file");
        std::fs::copy(directory.join(rule_file), copy.join(rule_file)).expect("copy a rule file beside the config");
    }
    let output = promtool(&["check", "config", "prometheus.yml"], &copy);
    let _ = std::fs::remove_dir_all(&copy);
    assert!(output.status.success(), "promtool check config (without consul_sd_configs):\n{}", printed(&output));
}

#[test]
fn every_alert_fires_when_its_unit_tests_say_and_only_then() {
    let directory = workspace_root().join(PROMETHEUS);
    let output = promtool(&["test", "rules", "alerts_test.yml"], &directory);
    assert!(output.status.success(), "promtool test rules alerts_test.yml:\n{}", printed(&output));

    // Each alert has a case where it fires and one where it does not.
    let alerts = load_yaml(&format!("{PROMETHEUS}/alerts.yml"));
    let tests = load_yaml(&format!("{PROMETHEUS}/alerts_test.yml"));
    let cases: Vec<&Yaml> = tests["tests"]
        .as_sequence()
        .expect("tests")
        .iter()
        .flat_map(|test| test["alert_rule_test"].as_sequence().expect("alert_rule_test"))
        .collect();
    for group in alerts["groups"].as_sequence().expect("groups") {
        for rule in group["rules"].as_sequence().expect("rules") {
            let Some(alert) = rule["alert"].as_str() else { continue };
            let expected: Vec<bool> = cases
                .iter()
                .filter(|case| case["alertname"].as_str() == Some(alert))
                .map(|case| case["exp_alerts"].as_sequence().is_some_and(|alerts| !alerts.is_empty()))
                .collect();
            assert!(expected.contains(&true), "no test case where {alert} fires");
            assert!(expected.contains(&false), "no test case where {alert} stays quiet");
        }
    }
}

/// The metric names a PromQL expression reads: identifiers outside label
/// matchers, ranges, groupings and strings, that are not functions or
/// keywords.
fn metric_names(expression: &str) -> BTreeSet<String> {
    static STRIP: LazyLock<Vec<Regex>> = LazyLock::new(|| {
        [r#""[^"]*""#, r"\{[^}]*\}", r"\[[^\]]*\]", r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)"]
            .into_iter()
            .map(|pattern| Regex::new(pattern).expect("pattern"))
            .collect()
    });
    // An identifier, not preceded by what would make it part of a number
    // (1e3) or of a longer name.
    static IDENTIFIER: LazyLock<Regex> =
        LazyLock::new(|| Regex::new(r"(?:^|[^a-zA-Z0-9_:.])([a-zA-Z_:][a-zA-Z0-9_:]*)").expect("pattern"));
    const KEYWORDS: [&str; 7] = ["and", "or", "unless", "offset", "bool", "inf", "nan"];
    let mut rest = expression.to_string();
    for pattern in STRIP.iter() {
        rest = pattern.replace_all(&rest, " ").into_owned();
    }
    IDENTIFIER
        .captures_iter(&rest)
        .map(|captures| captures.get(1).expect("the identifier"))
        .filter(|name| !rest[name.end()..].trim_start().starts_with('('))
        .map(|name| name.as_str())
        .filter(|name| !KEYWORDS.contains(&name.to_lowercase().as_str()))
        .map(str::to_string)
        .collect()
}

/// (panel title, expression) of every query of the dashboard, row panels'
/// nested panels included, after checking each query's data source.
fn dashboard_queries(dashboard: &Json, datasource_uid: &str) -> Vec<(String, String)> {
    let mut queries = Vec::new();
    let mut panels: Vec<&Json> = dashboard["panels"].as_array().expect("panels").iter().collect();
    while let Some(panel) = panels.pop() {
        let title = panel["title"].as_str().expect("every panel has a title").to_string();
        let kind = panel["type"].as_str().expect("every panel has a type");
        if kind == "row" {
            panels.extend(panel["panels"].as_array().into_iter().flatten());
            continue;
        }
        assert!(["timeseries", "stat"].contains(&kind), "{title}: a {kind} panel");
        assert_eq!(panel["datasource"]["uid"], datasource_uid, "{title} names the provisioned data source");
        let targets = panel["targets"].as_array().unwrap_or_else(|| panic!("{title} has no queries"));
        assert!(!targets.is_empty(), "{title} has no queries");
        for target in targets {
            assert_eq!(
                target["datasource"]["uid"], datasource_uid,
                "{title}'s queries name the provisioned data source"
            );
            let expression = target["expr"].as_str().unwrap_or_else(|| panic!("{title}: a query without expr"));
            queries.push((title.clone(), expression.to_string()));
        }
    }
    queries
}

#[test]
fn the_dashboard_queries_only_what_the_services_export_through_the_provisioned_data_source() {
    let path = workspace_root().join(DASHBOARD);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|error| panic!("{}: {error}", path.display()));
    let dashboard: Json = serde_json::from_str(&text).expect("the dashboard is JSON");
    let datasources = load_yaml(DATASOURCES);
    let [datasource] = &datasources["datasources"].as_sequence().expect("datasources")[..] else {
        panic!("one provisioned data source")
    };
    assert_eq!(datasource["type"].as_str(), Some("prometheus"));
    let uid = datasource["uid"].as_str().expect("the data source has a fixed uid");

    let queries = dashboard_queries(&dashboard, uid);
    let known = known_metrics();
    let mut used = BTreeSet::new();
    for (title, expression) in &queries {
        let names = metric_names(expression);
        assert!(!names.is_empty(), "{title}: `{expression}` reads no metric");
        let unknown: Vec<_> = names.difference(&known).collect();
        assert!(unknown.is_empty(), "{title}: `{expression}` reads {unknown:?}, which no service exports");
        used.extend(names);
    }
    for name in HISTOGRAMS.iter().map(|name| format!("{name}_bucket")).chain(SERIES.iter().map(|name| name.to_string()))
    {
        assert!(used.contains(&name), "no panel shows {name}");
    }

    // promtool parses each query, as a recording rule (Grafana's
    // $__rate_interval taken as a minute).
    let rules: Vec<Yaml> = queries
        .iter()
        .enumerate()
        .map(|(index, (_, expression))| {
            let mut rule = serde_norway::Mapping::new();
            rule.insert("record".into(), format!("dashboard:query_{index}").into());
            rule.insert("expr".into(), expression.replace("$__rate_interval", "1m").into());
            Yaml::Mapping(rule)
        })
        .collect();
    let mut group = serde_norway::Mapping::new();
    group.insert("name".into(), "dashboard".into());
    group.insert("rules".into(), Yaml::Sequence(rules));
    let mut file = serde_norway::Mapping::new();
    file.insert("groups".into(), Yaml::Sequence(vec![Yaml::Mapping(group)]));
    let directory = scratch("dashboard");
    std::fs::write(directory.join("queries.yml"), serde_norway::to_string(&file).expect("YAML")).expect("write");
    let output = promtool(&["check", "rules", "queries.yml"], &directory);
    let _ = std::fs::remove_dir_all(&directory);
    assert!(output.status.success(), "promtool check rules on the dashboard's queries:\n{}", printed(&output));
}

#[test]
fn the_alerts_read_only_what_the_services_export() {
    let alerts = load_yaml(&format!("{PROMETHEUS}/alerts.yml"));
    let known = known_metrics();
    for group in alerts["groups"].as_sequence().expect("groups") {
        for rule in group["rules"].as_sequence().expect("rules") {
            let expression = rule["expr"].as_str().expect("expr");
            let names = metric_names(expression);
            assert!(!names.is_empty() && names.is_subset(&known), "`{expression}` reads {names:?}");
        }
    }
}

#[test]
fn metric_names_are_told_apart_from_functions_labels_and_numbers() {
    let names = metric_names(
        r#"histogram_quantile(0.99, sum by (service_name, le) (rate(rpc_server_call_duration_seconds_bucket{rpc_method="Get"}[$__rate_interval]))) > 1e3 and on (job) up == 0"#,
    );
    assert_eq!(names, BTreeSet::from(["rpc_server_call_duration_seconds_bucket".to_string(), "up".to_string()]));
    assert_eq!(
        metric_names("sum without (partition) (rating_consumer_lag) / 2"),
        BTreeSet::from(["rating_consumer_lag".into()])
    );
}
