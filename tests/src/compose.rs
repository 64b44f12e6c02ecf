//! The repository's `docker-compose.yml` as the tests read it: parsed, with
//! YAML merge keys resolved, and its services' environments as plain maps;
//! and the other YAML files it mounts (Prometheus's and Grafana's).
use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
};

use serde_norway::Value;

/// The workspace root, where the compose file, the Dockerfile and the docs are.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("workspace root").to_path_buf()
}

/// `docker-compose.yml`, merge keys resolved.
pub fn load() -> Value {
    let mut value = load_yaml("docker-compose.yml");
    // A merged-in mapping may itself merge another (x-suite-service merges
    // x-suite-image): resolve until nothing changes.
    loop {
        let before = value.clone();
        value.apply_merge().expect("YAML merge keys resolve");
        if value == before {
            return value;
        }
    }
}

/// A YAML file of the repository, by its path from the workspace root.
pub fn load_yaml(relative: &str) -> Value {
    let path = workspace_root().join(relative);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|error| panic!("{}: {error}", path.display()));
    serde_norway::from_str(&text).unwrap_or_else(|error| panic!("{relative} is not YAML: {error}"))
}

pub fn service<'a>(compose: &'a Value, name: &str) -> &'a Value {
    compose["services"].get(name).unwrap_or_else(|| panic!("docker-compose.yml has no service `{name}`"))
}

/// A service's `environment` mapping; numbers as compose passes them, text.
pub fn environment(service: &Value) -> BTreeMap<String, String> {
    text_map(&service["environment"], "environment")
}

/// A YAML mapping of names to text or numbers (compose's `environment`, a
/// KafkaTopic's `config`), every value as text; empty when `mapping` is not
/// a mapping. `what` names it in the panic over any other value.
pub fn text_map(mapping: &Value, what: &str) -> BTreeMap<String, String> {
    mapping
        .as_mapping()
        .into_iter()
        .flatten()
        .map(|(key, value)| {
            let value = match value {
                Value::String(text) => text.clone(),
                Value::Number(number) => number.to_string(),
                other => panic!("{what} value {other:?} is not a string or number"),
            };
            (key.as_str().unwrap_or_else(|| panic!("{what} key {key:?} is not a string")).to_string(), value)
        })
        .collect()
}
