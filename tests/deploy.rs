#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The deployment files agree with the service: container, probe and Service ports are the
//! ports the service listens on; the ConfigMap's `mcp-chat.toml` and `servers_config.json`
//! (and the image's defaults) load through the real config loader; every environment
//! variable the manifests and the Dockerfile set is one the service reads; the termination
//! grace period covers preStop plus the drain. Reads the YAML files directly (no kubectl).

use std::{
    collections::BTreeSet,
    path::{Path, PathBuf},
    time::Duration,
};

use mcp_chat::config::{self, Config, ENV_VARS, Overrides, ServersConfig};
use serde_norway::Value;

fn deploy_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy")
}

fn k8s(rel: &str) -> PathBuf {
    deploy_dir().join("kubernetes").join(rel)
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Every YAML document in a file.
fn yaml_docs(path: &Path) -> Vec<Value> {
    let text = read(path);
    serde_norway::Deserializer::from_str(&text)
        .map(|d| {
            serde::Deserialize::deserialize(d)
                .unwrap_or_else(|e| panic!("{}: not YAML: {e}", path.display()))
        })
        .filter(|v: &Value| !v.is_null())
        .collect()
}

fn yaml(path: &Path) -> Value {
    let mut docs = yaml_docs(path);
    assert_eq!(docs.len(), 1, "{}: one document expected", path.display());
    docs.remove(0)
}

/// `v[a][b]…`, panicking with the path when a step is missing.
fn at<'a>(v: &'a Value, path: &[&str]) -> &'a Value {
    path.iter().fold(v, |v, key| {
        v.get(*key)
            .unwrap_or_else(|| panic!("missing {} (at {key:?})", path.join(".")))
    })
}

fn str_of(v: &Value) -> &str {
    v.as_str().unwrap_or_else(|| panic!("not a string: {v:?}"))
}

fn u64_of(v: &Value) -> u64 {
    v.as_u64()
        .unwrap_or_else(|| panic!("not a non-negative integer: {v:?}"))
}

fn seq(v: &Value) -> &Vec<Value> {
    v.as_sequence()
        .unwrap_or_else(|| panic!("not a list: {v:?}"))
}

/// The element of a list whose `name` is `name`.
fn named<'a>(list: &'a Value, name: &str) -> &'a Value {
    seq(list)
        .iter()
        .find(|item| item.get("name").and_then(Value::as_str) == Some(name))
        .unwrap_or_else(|| panic!("no entry named {name:?} in {list:?}"))
}

fn base_deployment() -> Value {
    yaml(&k8s("base/deployment.yaml"))
}

/// The mcp-chat container of a Deployment (or of a patch of one).
fn container(deployment: &Value) -> &Value {
    named(
        at(deployment, &["spec", "template", "spec", "containers"]),
        "mcp-chat",
    )
}

/// The literal `env` values of a container (`valueFrom` entries are skipped).
fn literal_env(container: &Value) -> Vec<(String, String)> {
    container
        .get("env")
        .map(seq)
        .into_iter()
        .flatten()
        .filter_map(|e| {
            let value = e.get("value")?;
            Some((
                str_of(at(e, &["name"])).to_string(),
                str_of(value).to_string(),
            ))
        })
        .collect()
}

/// Every env var name a container sets, literal or from a Secret.
fn env_names(container: &Value) -> Vec<String> {
    container
        .get("env")
        .map(seq)
        .into_iter()
        .flatten()
        .map(|e| str_of(at(e, &["name"])).to_string())
        .collect()
}

/// The base's env with an overlay patch's values laid over it.
fn merged_env(patch: Option<&Value>) -> Vec<(String, String)> {
    let mut env = literal_env(container(&base_deployment()));
    if let Some(patch) = patch {
        for (name, value) in literal_env(container(patch)) {
            env.retain(|(n, _)| *n != name);
            env.push((name, value));
        }
    }
    env
}

/// An empty `.env`, so a developer's `./.env` cannot change what the tests load.
fn empty_dotenv() -> tempfile::NamedTempFile {
    tempfile::NamedTempFile::new().unwrap()
}

/// Loads a TOML file and a servers file through the service's own loader.
fn load(toml: &Path, servers: &Path, env: Vec<(String, String)>) -> Config {
    let dotenv = empty_dotenv();
    let overrides = Overrides {
        config_file: Some(toml.to_path_buf()),
        servers_config: Some(servers.to_path_buf()),
        dotenv_file: Some(dotenv.path().to_path_buf()),
        ..Overrides::default()
    };
    config::load(&overrides, env)
        .unwrap_or_else(|e| panic!("{} does not load: {e}", toml.display()))
}

fn base_config() -> Config {
    load(
        &k8s("base/mcp-chat.toml"),
        &k8s("base/servers_config.json"),
        merged_env(None),
    )
}

fn overlay_patch(overlay: &str) -> Value {
    yaml(&k8s(&format!("overlays/{overlay}/deployment-patch.yaml")))
}

fn is_service_env(name: &str) -> bool {
    ENV_VARS.iter().any(|v| v.name == name) || name == "RUST_LOG" || name.starts_with("OTEL_")
}

#[test]
fn configmap_files_load_through_the_real_loader() {
    let defaults = Config::default();
    let config = base_config();
    assert_eq!(config.server.port, defaults.server.port);
    assert_eq!(config.server.grpc_port, defaults.server.grpc_port);
    assert!(
        defaults.server.ui && !config.server.ui,
        "no web page in a cluster"
    );
    for overlay in ["single", "ha"] {
        let config = load(
            &k8s("base/mcp-chat.toml"),
            &k8s("base/servers_config.json"),
            merged_env(Some(&overlay_patch(overlay))),
        );
        let scheme = config.sessions.store.split("://").next().unwrap();
        let expected = if overlay == "ha" { "redis" } else { "sqlite" };
        assert_eq!(scheme, expected, "overlays/{overlay} session store");
    }
    let servers = read(&k8s("base/servers_config.json"));
    ServersConfig::parse(&servers, &|_| None).unwrap();
}

#[test]
fn configmap_is_generated_from_the_two_files_the_deployment_points_at() {
    let kustomization = yaml(&k8s("base/kustomization.yaml"));
    let generator = named(
        at(&kustomization, &["configMapGenerator"]),
        "mcp-chat-config",
    );
    let files: BTreeSet<&str> = seq(at(generator, &["files"])).iter().map(str_of).collect();
    assert_eq!(
        files,
        BTreeSet::from(["mcp-chat.toml", "servers_config.json"])
    );

    let deployment = base_deployment();
    let c = container(&deployment);
    let args: Vec<&str> = seq(at(c, &["args"])).iter().map(str_of).collect();
    let config_arg = args
        .iter()
        .position(|a| *a == "--config")
        .map(|i| args[i + 1])
        .expect("the container passes --config");
    let mount = str_of(at(
        named(at(c, &["volumeMounts"]), "config"),
        &["mountPath"],
    ));
    let volume = named(
        at(&deployment, &["spec", "template", "spec", "volumes"]),
        "config",
    );
    assert_eq!(
        str_of(at(volume, &["configMap", "name"])),
        "mcp-chat-config"
    );
    assert_eq!(
        Path::new(config_arg),
        Path::new(mount).join("mcp-chat.toml")
    );
    let toml: toml::Value = toml::from_str(&read(&k8s("base/mcp-chat.toml"))).unwrap();
    assert_eq!(
        Path::new(toml["mcp"]["servers_config"].as_str().unwrap()),
        Path::new(mount).join("servers_config.json"),
        "mcp.servers_config in the ConfigMap's TOML must point into the mounted ConfigMap"
    );
}

#[test]
fn container_probe_and_service_ports_are_the_service_ports() {
    let config = base_config();
    let (http, grpc) = (config.server.port, config.server.grpc_port);
    let deployment = base_deployment();
    let c = container(&deployment);
    let ports = at(c, &["ports"]);
    assert_eq!(
        u64_of(at(named(ports, "http"), &["containerPort"])),
        u64::from(http)
    );
    assert_eq!(
        u64_of(at(named(ports, "grpc"), &["containerPort"])),
        u64::from(grpc)
    );
    for probe in ["livenessProbe", "readinessProbe", "startupProbe"] {
        assert_eq!(
            u64_of(at(c, &[probe, "grpc", "port"])),
            u64::from(grpc),
            "{probe}"
        );
    }
    assert_eq!(
        str_of(at(c, &["readinessProbe", "grpc", "service"])),
        "mcpchat.v1.ChatService",
        "readiness follows the ChatService health status"
    );

    let service = yaml(&k8s("base/service.yaml"));
    let sports = at(&service, &["spec", "ports"]);
    for (name, port, protocol) in [("http", http, "http"), ("grpc", grpc, "grpc")] {
        let p = named(sports, name);
        assert_eq!(u64_of(at(p, &["port"])), u64::from(port), "Service {name}");
        assert_eq!(str_of(at(p, &["targetPort"])), name);
        assert_eq!(str_of(at(p, &["appProtocol"])), protocol);
    }

    let monitor = yaml(&k8s("components/servicemonitor/servicemonitor.yaml"));
    let endpoint = &seq(at(&monitor, &["spec", "endpoints"]))[0];
    assert_eq!(str_of(at(endpoint, &["port"])), "http");
    assert_eq!(str_of(at(endpoint, &["path"])), "/metrics");
}

#[test]
fn every_env_var_the_manifests_set_is_read_by_the_service() {
    let mut names = env_names(container(&base_deployment()));
    for overlay in ["single", "ha"] {
        names.extend(env_names(container(&overlay_patch(overlay))));
    }
    let unknown: Vec<_> = names.iter().filter(|n| !is_service_env(n)).collect();
    assert!(
        unknown.is_empty(),
        "variables the service never reads: {unknown:?}"
    );

    // The Secret keys the Deployment reads are the ones the example Secret documents.
    let example = read(&k8s("base/secret.env.example"));
    let documented: BTreeSet<&str> = example
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .filter_map(|l| l.split_once('=').map(|(k, _)| k.trim()))
        .collect();
    let deployment = base_deployment();
    for e in seq(at(container(&deployment), &["env"])) {
        if let Some(r) = e.get("valueFrom").and_then(|v| v.get("secretKeyRef")) {
            assert_eq!(str_of(at(r, &["name"])), "mcp-chat-secrets");
            let key = str_of(at(r, &["key"]));
            assert!(
                documented.contains(key),
                "{key} missing from secret.env.example"
            );
            assert!(is_service_env(key), "{key} is not read by the service");
        }
    }
}

#[test]
fn termination_grace_covers_prestop_and_the_drain() {
    let config = base_config();
    let deployment = base_deployment();
    let pod = at(&deployment, &["spec", "template", "spec"]);
    let grace = Duration::from_secs(u64_of(at(pod, &["terminationGracePeriodSeconds"])));
    let pre_stop = at(container(&deployment), &["lifecycle", "preStop"]);
    let sleep = match pre_stop.get("sleep") {
        Some(s) => u64_of(at(s, &["seconds"])),
        None => {
            let command: Vec<&str> = seq(at(pre_stop, &["exec", "command"]))
                .iter()
                .map(str_of)
                .collect();
            assert_eq!(command.first(), Some(&"sleep"), "{command:?}");
            command[1].parse().unwrap()
        }
    };
    let needed = Duration::from_secs(sleep) + config.server.shutdown_grace;
    assert!(
        grace > needed,
        "terminationGracePeriodSeconds {grace:?} must exceed preStop {sleep}s + shutdown_grace {:?}",
        config.server.shutdown_grace
    );
}

#[test]
fn image_defaults_load_and_match_the_service() {
    let dockerfile = read(&deploy_dir().join("Dockerfile"));
    let lines: Vec<&str> = dockerfile
        .lines()
        .map(str::trim)
        .filter(|l| !l.starts_with('#'))
        .collect();

    let exposed: BTreeSet<u16> = lines
        .iter()
        .filter_map(|l| l.strip_prefix("EXPOSE "))
        .flat_map(|ports| ports.split_whitespace().map(|p| p.parse::<u16>().unwrap()))
        .collect();
    let defaults = Config::default();
    assert_eq!(
        exposed,
        BTreeSet::from([defaults.server.port, defaults.server.grpc_port])
    );

    // ENV a=b \ c=d …: the names and values of every ENV instruction.
    let mut env = Vec::new();
    let mut in_env = false;
    for line in lines.iter().copied() {
        let rest = match line.strip_prefix("ENV ") {
            Some(rest) => rest,
            None if in_env => line,
            None => continue,
        };
        in_env = rest.ends_with('\\');
        for pair in rest.trim_end_matches('\\').split_whitespace() {
            let (name, value) = pair.split_once('=').expect("ENV name=value");
            env.push((name.to_string(), value.to_string()));
        }
    }
    let unknown: Vec<_> = env
        .iter()
        .filter(|(n, _)| n != "HOME" && !is_service_env(n))
        .collect();
    assert!(
        unknown.is_empty(),
        "Dockerfile ENV the service never reads: {unknown:?}"
    );

    let image = deploy_dir().join("image");
    let config = load(
        &image.join("mcp-chat.toml"),
        &image.join("servers_config.json"),
        env,
    );
    assert_eq!(config.sessions.store, "sqlite:///data/mcp-chat.db");
    assert_eq!(config.server.port, defaults.server.port);
    // Inside the image the TOML names the file copied beside it.
    let named_in_toml: toml::Value = toml::from_str(&read(&image.join("mcp-chat.toml"))).unwrap();
    assert_eq!(
        named_in_toml["mcp"]["servers_config"].as_str(),
        Some("/app/servers_config.json")
    );
    assert!(
        dockerfile
            .contains("COPY deploy/image/mcp-chat.toml deploy/image/servers_config.json /app/")
    );
}
