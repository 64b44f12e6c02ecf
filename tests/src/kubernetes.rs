//! The Kubernetes manifests of `deploy/kubernetes` as the tests read them:
//! every deployable target (each overlay, and the base with each documented
//! combination of components) rendered by `kubectl kustomize`, parsed into
//! objects; and the tools that check them from outside (kubectl,
//! kubernetes-validate, checkov, the custom-resource validator).
use std::{
    collections::{BTreeMap, BTreeSet},
    path::{Component, Path, PathBuf},
    process::{Command, Output},
};

use serde_norway::Value;

use crate::compose::workspace_root;

/// `deploy/kubernetes`.
pub fn manifests_root() -> PathBuf {
    workspace_root().join("deploy/kubernetes")
}

/// The base with components, as docs/kubernetes.md lists them: together
/// with the overlays, every component is rendered at least once (a test
/// checks), with each alternative of each concern.
pub const COMBINATIONS: [(&str, &[&str]); 3] = [
    ("base+consul+strimzi+cloudnative-pg", &["discovery-consul", "kafka-strimzi", "postgres-cloudnative-pg"]),
    ("base+dns+external-kafka+external-postgres", &["discovery-dns", "kafka-external", "postgres-external"]),
    (
        "base+dns+strimzi+cloudnative-pg+observability+autoscaling+tls+auth-jwt",
        &[
            "discovery-dns",
            "kafka-strimzi",
            "postgres-cloudnative-pg",
            "observability",
            "autoscaling",
            "tls",
            "auth-jwt",
        ],
    ),
];

/// One rendered target: its name, the YAML `kubectl kustomize` printed, and
/// its objects.
pub struct Target {
    pub name: String,
    pub yaml: String,
    pub objects: Vec<Value>,
}

impl Target {
    /// The objects of one kind.
    pub fn of_kind<'a>(&'a self, kind: &'a str) -> impl Iterator<Item = &'a Value> + 'a {
        self.objects.iter().filter(move |object| object["kind"].as_str() == Some(kind))
    }

    /// The object of `kind` named `name`.
    pub fn find(&self, kind: &str, name: &str) -> Option<&Value> {
        self.objects
            .iter()
            .find(|object| object["kind"].as_str() == Some(kind) && object["metadata"]["name"].as_str() == Some(name))
    }

    pub fn is_overlay(&self, overlay: &str) -> bool {
        self.name == format!("overlays/{overlay}")
    }
}

/// Runs `kubectl kustomize` on a directory; panics with its stderr.
pub fn kustomize(directory: &Path) -> String {
    let output = Command::new("kubectl").arg("kustomize").arg(directory).output().unwrap_or_else(|error| {
        panic!("cannot run kubectl ({error}): the Kubernetes tests need kubectl on PATH (it bundles kustomize)")
    });
    assert!(
        output.status.success(),
        "kubectl kustomize {} failed:\n{}",
        directory.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("kustomize prints UTF-8")
}

/// `to` relative to the directory `from` (both absolute): kustomize takes
/// only relative paths to bases and components.
fn relative(from: &Path, to: &Path) -> PathBuf {
    let depth = from.components().filter(|component| matches!(component, Component::Normal(_))).count();
    let mut path: PathBuf = std::iter::repeat_n("..", depth).collect();
    path.push(to.strip_prefix("/").expect("an absolute path"));
    path
}

/// The base with `components`, rendered from a kustomization in a temporary
/// directory, with the namespace the overlays set and a placeholder digest
/// for the suite's image as production's.
pub fn render_combination(components: &[&str]) -> String {
    let directory = tempfile::tempdir().expect("a temporary directory");
    let root = manifests_root();
    let path = |relative_path: &str| relative(directory.path(), &root.join(relative_path)).display().to_string();
    let components: Vec<String> =
        components.iter().map(|name| format!("  - {}", path(&format!("components/{name}")))).collect();
    let kustomization = format!(
        "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nnamespace: movie-ratings\n\
         resources:\n  - {}\ncomponents:\n{}\nimages:\n  - name: movie-ratings\n    newName: registry.example.com/movie-ratings\n    \
         digest: sha256:{}\n",
        path("base"),
        components.join("\n"),
        "0".repeat(64)
    );
    std::fs::write(directory.path().join("kustomization.yaml"), kustomization).expect("write kustomization.yaml");
    kustomize(directory.path())
}

pub fn parse(name: &str, yaml: String) -> Target {
    // kustomize separates its objects with `---` lines.
    let objects = yaml
        .split("\n---\n")
        .map(|document| {
            serde_norway::from_str::<Value>(document)
                .unwrap_or_else(|error| panic!("{name}: kustomize printed an object that is not YAML: {error}"))
        })
        .filter(|object| !object.is_null())
        .collect();
    Target { name: name.to_string(), yaml, objects }
}

/// Every deployable target: the overlays, then the combinations.
pub fn targets() -> Vec<Target> {
    let overlays = ["dev", "production"].map(|overlay| {
        let name = format!("overlays/{overlay}");
        let yaml = kustomize(&manifests_root().join(&name));
        parse(&name, yaml)
    });
    let combinations =
        COMBINATIONS.iter().map(|(name, components)| parse(name, render_combination(components))).collect::<Vec<_>>();
    overlays.into_iter().chain(combinations).collect()
}

/// The components an overlay's kustomization names.
pub fn overlay_components(overlay: &str) -> Vec<String> {
    let path = manifests_root().join("overlays").join(overlay).join("kustomization.yaml");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|error| panic!("{}: {error}", path.display()));
    let kustomization: Value = serde_norway::from_str(&text).expect("kustomization.yaml is YAML");
    kustomization["components"]
        .as_sequence()
        .map(|components| {
            components
                .iter()
                .filter_map(|component| component.as_str()?.rsplit('/').next().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// Whether an `apiVersion` belongs to a custom resource (an operator's
/// group), rather than to Kubernetes itself.
pub fn is_custom(api_version: &str) -> bool {
    match api_version.rsplit_once('/') {
        None => false,
        Some((group, _)) => group.contains('.') && !group.ends_with(".k8s.io"),
    }
}

/// The environment variables `binary --help` says the binary reads
/// (`[env: NAME=...]`): the names the manifests may set.
pub fn environment_of_help(binary: &str) -> BTreeSet<String> {
    let program = crate::process::binary(binary);
    let output = Command::new(&program).arg("--help").output().expect("run the binary's --help");
    assert!(output.status.success(), "{binary} --help failed: {}", String::from_utf8_lossy(&output.stderr));
    let help = String::from_utf8(output.stdout).expect("--help prints UTF-8");
    help.split("[env: ")
        .skip(1)
        .map(|rest| rest.chars().take_while(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || *c == '_').collect())
        .collect()
}

/// The containers of a workload (its pod template's), init containers too.
pub fn containers(workload: &Value) -> Vec<&Value> {
    let spec = &workload["spec"]["template"]["spec"];
    ["initContainers", "containers"]
        .iter()
        .filter_map(|key| spec[key].as_sequence())
        .flat_map(|containers| containers.iter())
        .collect()
}

/// A container's environment as the binary sees its names: `env` entries
/// and the keys of every ConfigMap it takes whole (`envFrom`), each with
/// where it comes from.
pub fn environment_names(target: &Target, container: &Value) -> BTreeMap<String, String> {
    let mut names = BTreeMap::new();
    for variable in container["env"].as_sequence().into_iter().flatten() {
        names.insert(variable["name"].as_str().expect("env name").to_string(), "env".to_string());
    }
    for source in container["envFrom"].as_sequence().into_iter().flatten() {
        let (kind, name) = if let Some(name) = source["configMapRef"]["name"].as_str() {
            ("ConfigMap", name)
        } else if let Some(name) = source["secretRef"]["name"].as_str() {
            ("Secret", name)
        } else {
            panic!("{}: an envFrom of neither a ConfigMap nor a Secret: {source:?}", target.name)
        };
        let Some(object) = target.find(kind, name) else { continue };
        for key in object["data"].as_mapping().into_iter().flatten().map(|(key, _)| key) {
            names.insert(key.as_str().expect("a data key").to_string(), format!("{kind} {name}"));
        }
    }
    names
}

/// The value a container's settings give `variable`: a literal `env` value
/// or a key of a ConfigMap it takes whole.
pub fn setting(target: &Target, container: &Value, variable: &str) -> Option<String> {
    for entry in container["env"].as_sequence().into_iter().flatten() {
        if entry["name"].as_str() == Some(variable) {
            return entry["value"].as_str().map(str::to_string);
        }
    }
    container["envFrom"].as_sequence().into_iter().flatten().find_map(|source| {
        let name = source["configMapRef"]["name"].as_str()?;
        target.find("ConfigMap", name)?["data"][variable].as_str().map(str::to_string)
    })
}

/// Runs a tool, returning its output; panics saying how to install it when
/// it cannot be started.
pub fn run_tool(mut command: Command, install: &str) -> Output {
    let program = command.get_program().to_string_lossy().into_owned();
    command.output().unwrap_or_else(|error| panic!("cannot run {program} ({error}): {install}"))
}

/// checkov: from `CHECKOV`, else the virtual environment
/// scripts/install-tools.sh puts it in, else PATH.
pub fn checkov() -> PathBuf {
    if let Some(path) = std::env::var_os("CHECKOV") {
        return path.into();
    }
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cache")));
    cache
        .map(|cache| cache.join("movie-ratings/checkov/bin/checkov"))
        .filter(|path| path.is_file())
        .unwrap_or_else(|| "checkov".into())
}

/// The operators' CRD schemas, `<repository>/../shared/crds`, when present.
pub fn crd_schemas() -> Option<PathBuf> {
    let path = workspace_root().join("../shared/crds");
    path.is_dir().then(|| path.canonicalize().unwrap_or(path))
}
