//! The one loader: built-in defaults < `mcp-chat.toml` < `.env` < environment < CLI flags,
//! then `servers_config.json`, then validation. Every error names where the bad value came
//! from (file and line/column, environment variable, or flag) and what was expected.

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
};

use figment::{
    Figment, Metadata, Profile, Provider,
    providers::{Format, Toml},
    value::{Dict, Map, Value},
};

use super::{Config, ConfigError, env, servers::ServersConfig, validate};

/// Values given on the command line; they win over every other layer.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    /// `--config`: the TOML file. Without it `./mcp-chat.toml` is read when it exists.
    pub config_file: Option<PathBuf>,
    /// `.env` file to read (default `./.env`, optional).
    pub dotenv_file: Option<PathBuf>,
    pub host: Option<String>,
    pub port: Option<u16>,
    pub grpc_port: Option<u16>,
    pub servers_config: Option<PathBuf>,
}

/// Loads, layers and validates the configuration. `vars` is the process environment
/// (passed in so tests stay hermetic).
pub fn load(
    overrides: &Overrides,
    vars: impl IntoIterator<Item = (String, String)>,
) -> Result<Config, ConfigError> {
    let process_env: HashMap<String, String> = vars.into_iter().collect();
    let dotenv = read_dotenv(overrides.dotenv_file.as_deref())?;

    let mut figment = Figment::new();
    match &overrides.config_file {
        Some(path) => {
            if !path.is_file() {
                return Err(ConfigError::Read {
                    path: path.clone(),
                    message: "no such file".into(),
                });
            }
            figment = figment.merge(Toml::file_exact(path));
        }
        None => {
            let default = Path::new("mcp-chat.toml");
            if default.is_file() {
                figment = figment.merge(Toml::file_exact(default));
            }
        }
    }
    figment = figment
        .merge(Layer::env(
            ".env file",
            dotenv.iter().map(|(k, v)| (k.as_str(), v.as_str())),
        ))
        .merge(Layer::env(
            "environment variable",
            process_env.iter().map(|(k, v)| (k.as_str(), v.as_str())),
        ));
    figment = figment.merge(flag_layer(overrides));

    let mut config: Config = figment
        .extract()
        .map_err(|e| ConfigError::Value(describe_figment_error(&e)))?;

    let lookup = |name: &str| process_env.get(name).or_else(|| dotenv.get(name)).cloned();
    let origin = |key: &str| origin_of(&figment, key);

    let servers_path = config.mcp.servers_config.clone();
    let explicitly_set = figment.find_metadata("mcp.servers_config").is_some();
    config.servers = if servers_path.is_file() || explicitly_set {
        ServersConfig::load(&servers_path, &lookup)?
    } else {
        ServersConfig::default()
    };

    validate::resolve_and_check(&mut config, &lookup, &origin)?;
    Ok(config)
}

fn read_dotenv(path: Option<&Path>) -> Result<HashMap<String, String>, ConfigError> {
    let (path, required) = match path {
        Some(p) => (p.to_path_buf(), true),
        None => (PathBuf::from(".env"), false),
    };
    if !path.is_file() {
        return if required {
            Err(ConfigError::DotEnv {
                path,
                message: "no such file".into(),
            })
        } else {
            Ok(HashMap::new())
        };
    }
    let iter = dotenvy::from_path_iter(&path).map_err(|e| ConfigError::DotEnv {
        path: path.clone(),
        message: e.to_string(),
    })?;
    let mut out = HashMap::new();
    for item in iter {
        let (k, v) = item.map_err(|e| ConfigError::DotEnv {
            path: path.clone(),
            message: e.to_string(),
        })?;
        out.insert(k, v);
    }
    Ok(out)
}

/// Where the effective value of `key` came from, for error messages.
fn origin_of(figment: &Figment, key: &str) -> String {
    match figment.find_metadata(key) {
        None => "default".into(),
        Some(md) => describe_metadata(md, key),
    }
}

fn describe_metadata(md: &Metadata, key: &str) -> String {
    let keys: Vec<&str> = key.split('.').collect();
    match &md.source {
        Some(figment::Source::File(path)) => format!("in {}", path.display()),
        _ => format!(
            "from {} {}",
            md.name,
            md.interpolate(&Profile::Default, &keys)
        ),
    }
}

fn describe_figment_error(err: &figment::Error) -> String {
    let mut lines = Vec::new();
    for e in err.clone() {
        let key = e.path.join(".");
        let origin = match &e.metadata {
            Some(md) => describe_metadata(md, &key),
            None => String::new(),
        };
        let what = match &e.kind {
            figment::error::Kind::Message(m) => m.clone(),
            other => other.to_string(),
        };
        lines.push(if key.is_empty() {
            format!("  - {what} {origin}")
        } else {
            format!("  - {key} ({origin}): {what}")
        });
    }
    format!("invalid configuration:\n{}", lines.join("\n"))
}

/// The command-line layer: `--host`, `--port`, `--grpc-port`, `--servers-config`.
fn flag_layer(o: &Overrides) -> Layer {
    let mut layer = Layer::new("command-line flag", flag_name);
    if let Some(host) = &o.host {
        layer.insert("server.host", Value::from(host.clone()));
    }
    if let Some(port) = o.port {
        layer.insert("server.port", Value::from(port));
    }
    if let Some(port) = o.grpc_port {
        layer.insert("server.grpc_port", Value::from(port));
    }
    if let Some(path) = &o.servers_config {
        layer.insert(
            "mcp.servers_config",
            Value::from(path.display().to_string()),
        );
    }
    layer
}

fn flag_name(key: &str) -> String {
    match key {
        "server.host" => "--host".into(),
        "server.port" => "--port".into(),
        "server.grpc_port" => "--grpc-port".into(),
        "mcp.servers_config" => "--servers-config".into(),
        other => other.into(),
    }
}

fn env_name(key: &str) -> String {
    env::name_for(key).map_or_else(|| key.to_string(), String::from)
}

/// A flat layer of `section.key` values that names its source in errors: `.env`, the
/// process environment (only our variables, mapped through [`env::ENV_VARS`]), or flags.
struct Layer {
    name: &'static str,
    namer: fn(&str) -> String,
    dict: Dict,
}

impl Layer {
    fn new(name: &'static str, namer: fn(&str) -> String) -> Self {
        Self {
            name,
            namer,
            dict: Dict::new(),
        }
    }

    fn env<'a>(name: &'static str, pairs: impl Iterator<Item = (&'a str, &'a str)>) -> Self {
        let mut layer = Self::new(name, env_name);
        for (var, raw) in pairs {
            let Some(key) = env::key_for(var) else {
                continue;
            };
            let value = if env::is_text(key) {
                Value::from(raw.to_string())
            } else {
                raw.parse::<Value>()
                    .unwrap_or_else(|_| Value::from(raw.to_string()))
            };
            layer.insert(key, value);
        }
        layer
    }

    fn insert(&mut self, key: &str, value: Value) {
        let Some((section, field)) = key.split_once('.') else {
            return;
        };
        let entry = self
            .dict
            .entry(section.to_string())
            .or_insert_with(|| Value::from(Dict::new()));
        if let Value::Dict(_, inner) = entry {
            inner.insert(field.to_string(), value);
        }
    }
}

impl Provider for Layer {
    fn metadata(&self) -> Metadata {
        let namer = self.namer;
        Metadata::named(self.name).interpolater(move |_, keys: &[&str]| namer(&keys.join(".")))
    }

    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        Ok(Profile::Default.collect(self.dict.clone()))
    }
}
