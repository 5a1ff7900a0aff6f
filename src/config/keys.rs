//! `[[api_keys]]`: client keys with a name and an access scope, beside the plain
//! `server.api_keys` list (whose keys see everything). A key sees and can call only what its
//! entry allows: MCP servers, tools, whether it may name remote MCP servers per request, and
//! models. The name goes on spans and metrics; the key itself never does.

use serde::{Deserialize, Serialize};

use super::Secret;

/// One `[[api_keys]]` entry as written.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyConfig {
    /// A name for logs, spans and metrics (unique).
    pub name: String,
    /// The key itself, or
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<Secret>,
    /// the environment variable that holds it (resolved at start-up).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_env: Option<String>,
    /// MCP servers (of servers_config.json) this key may use; all when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowed_servers: Option<Vec<String>>,
    /// Tools this key may use, as `server__tool` or the name the model sees; all of the
    /// allowed servers' when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowed_tools: Option<Vec<String>>,
    /// Whether it may name remote MCP servers per request (`server_url`).
    #[serde(default)]
    pub request_servers: bool,
    /// Models it may use; all when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub models: Option<Vec<String>>,
}

/// What a named key may see and do, resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyAccess {
    pub name: String,
    pub allowed_servers: Option<Vec<String>>,
    pub allowed_tools: Option<Vec<String>>,
    pub request_servers: bool,
    pub models: Option<Vec<String>>,
}

impl KeyAccess {
    pub fn from_config(k: &KeyConfig) -> Self {
        Self {
            name: k.name.clone(),
            allowed_servers: k.allowed_servers.clone(),
            allowed_tools: k.allowed_tools.clone(),
            request_servers: k.request_servers,
            models: k.models.clone(),
        }
    }

    /// Full access under `name` (a plain key of `API_KEYS`).
    pub fn unrestricted(name: String) -> Self {
        Self {
            name,
            allowed_servers: None,
            allowed_tools: None,
            request_servers: true,
            models: None,
        }
    }

    /// Whether this key may use the tool `tool` of `server`, offered to the model as
    /// `exposed`.
    pub fn allows_tool(&self, server: &str, tool: &str, exposed: &str) -> bool {
        let server_ok = self
            .allowed_servers
            .as_ref()
            .is_none_or(|s| s.iter().any(|s| s == server));
        let tool_ok = self.allowed_tools.as_ref().is_none_or(|names| {
            names
                .iter()
                .any(|n| n == exposed || *n == format!("{server}__{tool}"))
        });
        server_ok && tool_ok
    }

    /// Whether this key may see `server` at all.
    pub fn allows_server(&self, server: &str) -> bool {
        self.allowed_servers
            .as_ref()
            .is_none_or(|s| s.iter().any(|s| s == server))
    }

    /// Whether this key may use the model `id`.
    pub fn allows_model(&self, id: &str) -> bool {
        self.models
            .as_ref()
            .is_none_or(|m| m.iter().any(|m| m == id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_sees_only_what_its_entry_allows() {
        let all = KeyAccess::from_config(&KeyConfig {
            name: "all".into(),
            ..KeyConfig::default()
        });
        assert!(all.allows_tool("fx", "add", "add") && all.allows_model("m"));
        let narrow = KeyAccess::from_config(&KeyConfig {
            name: "narrow".into(),
            allowed_servers: Some(vec!["fx".into()]),
            allowed_tools: Some(vec!["fx__echo".into(), "search".into()]),
            models: Some(vec!["small".into()]),
            ..KeyConfig::default()
        });
        assert!(narrow.allows_tool("fx", "echo", "echo"));
        assert!(!narrow.allows_tool("fx", "add", "add"));
        assert!(
            !narrow.allows_tool("web", "search", "search"),
            "server not allowed"
        );
        assert!(narrow.allows_server("fx") && !narrow.allows_server("web"));
        assert!(narrow.allows_model("small") && !narrow.allows_model("big"));
        assert!(!narrow.request_servers);
    }
}
