//! The hub as an MCP server shows it (for the `/mcp` edge, `mcp_serve/`): every offered
//! tool with its server's own definition under its exposed name, calls that return the
//! server's `CallToolResult` unflattened with progress forwarded, the resources, resource
//! templates and prompts of the ready servers that offer them, and the changes an MCP client
//! is told of ([`Changes`], [`HubEvent`]).
//!
//! # Names
//! Tools keep the names of the index (`naming.rs`). Prompts are named the same way: their
//! own name, or `server__prompt` when two servers share it or `mcp.tool_prefix` is `always`.
//! Resource URIs (and templates) are kept unless two servers list the same one or the prefix
//! policy is `always`: then they become `label+uri` (the label is the server name with
//! every character a URI scheme may not hold replaced by `-`), still a valid URI. A read of
//! an unprefixed URI goes to the server that listed it, else to each server that offers
//! resources in turn until one answers.

#![allow(deprecated)] // resources/subscribe is legacy-only in the 2026-07-28 revision.

use std::{collections::HashMap, sync::Arc};

use rmcp::{
    ErrorData, RoleClient,
    model::{
        CallToolResult, ContentBlock, GetPromptRequestParams, GetPromptResult, JsonObject, Prompt,
        ReadResourceRequestParams, ReadResourceResult, Resource, ResourceTemplate,
        SubscribeRequestParams, Tool, UnsubscribeRequestParams,
    },
    service::{Peer, ServiceError},
};
use serde_json::Value;
use tokio::sync::{broadcast, watch};
use tokio_util::sync::CancellationToken;

use super::{McpHub, ToolSpec, asks::Caller, call, naming::ListedTool, progress::ProgressSink};
use crate::config::ToolPrefix;

/// What the servers announce beyond their tools, for MCP clients of mcp-chat.
#[derive(Debug, Clone, PartialEq)]
pub enum HubEvent {
    /// `notifications/resources/updated` of a resource of `server` (its own URI).
    ResourceUpdated { server: String, uri: String },
    /// A server's resource list changed.
    ResourcesChanged,
    /// A server's prompt list changed.
    PromptsChanged,
    /// A server's `notifications/message`, its logger already naming the server.
    Log {
        server: String,
        message: rmcp::model::LoggingMessageNotificationParam,
    },
}

/// Generations of what an MCP client lists: bumped when the offered tools change (a server
/// down or back, a server's own list changed) and when the set of ready servers changes.
#[derive(Debug, Clone, Default)]
pub struct Changes {
    pub tools: u64,
    pub servers: u64,
    ready: Vec<String>,
    definitions: Vec<Arc<[ListedTool]>>,
}

impl Changes {
    /// Records a rebuilt index; whether anything a client lists changed.
    pub(super) fn note(
        &mut self,
        old: &[ToolSpec],
        new: &[ToolSpec],
        ready: Vec<&str>,
        definitions: Vec<Arc<[ListedTool]>>,
    ) -> bool {
        let mut changed = false;
        if old != new || definitions != self.definitions {
            self.tools += 1;
            changed = true;
        }
        if ready != self.ready {
            self.servers += 1;
            self.ready = ready.into_iter().map(str::to_string).collect();
            changed = true;
        }
        self.definitions = definitions;
        changed
    }
}

/// A tool as an MCP client of mcp-chat sees it.
#[derive(Debug, Clone)]
pub struct OfferedTool {
    /// Its entry in the index (exposed name, server, own name).
    pub spec: ToolSpec,
    /// The server's definition, named by the exposed name.
    pub tool: Tool,
}

/// Why a request of an MCP client could not be served.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("there is no tool named {0:?} (it may have been withdrawn)")]
    UnknownTool(String),
    #[error("no ready MCP server offers {0:?}")]
    NotFound(String),
    /// The server's own error, passed on.
    #[error("MCP server {server:?}: {}", error.message)]
    Upstream { server: String, error: ErrorData },
    #[error("MCP server {server:?}: {message}")]
    Failed { server: String, message: String },
}

/// A ready server's peer, with what it said it offers.
pub(super) struct Live {
    pub server: String,
    pub peer: Peer<RoleClient>,
    pub resources: bool,
    pub subscribe: bool,
    pub prompts: bool,
    pub logging: bool,
    pub completions: bool,
}

/// A character a URI scheme may hold (`ALPHA *( ALPHA / DIGIT / "+" / "-" / "." )`, without
/// `+`, the separator).
fn scheme_label(server: &str) -> String {
    let label: String = server
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '.' {
                c
            } else {
                '-'
            }
        })
        .collect();
    if label.starts_with(|c: char| c.is_ascii_alphabetic()) {
        label
    } else {
        format!("s{label}")
    }
}

/// Names items of several servers: each keeps its own key unless another server has the
/// same one or `always`; then `rename(server, key)`.
fn namespace<T>(
    items: Vec<(String, T)>,
    key: impl Fn(&T) -> &str,
    rename: impl Fn(&str, &str) -> String,
    always: bool,
) -> Vec<(String, String, T)> {
    let mut owners: HashMap<String, usize> = HashMap::new();
    for (_, item) in &items {
        *owners.entry(key(item).to_string()).or_default() += 1;
    }
    items
        .into_iter()
        .map(|(server, item)| {
            let own = key(&item).to_string();
            let exposed = if always || owners.get(&own).is_some_and(|n| *n > 1) {
                rename(&server, &own)
            } else {
                own
            };
            (server, exposed, item)
        })
        .collect()
}

pub(super) fn prefixed_uri(server: &str, uri: &str) -> String {
    format!("{}+{uri}", scheme_label(server))
}

fn prefixed_prompt(server: &str, name: &str) -> String {
    format!("{}__{name}", super::naming::sanitize(server))
}

pub(super) fn upstream(server: &str, e: ServiceError) -> ProxyError {
    match e {
        ServiceError::McpError(error) => ProxyError::Upstream {
            server: server.to_string(),
            error,
        },
        other => ProxyError::Failed {
            server: server.to_string(),
            message: other.to_string(),
        },
    }
}

impl McpHub {
    /// Every offered tool with its server's definition (title, input and output schemas,
    /// annotations, `_meta`) under its exposed name.
    pub fn offered_tools(&self) -> Vec<OfferedTool> {
        let index = self.shared.snapshot();
        let listed: HashMap<&str, Arc<[ListedTool]>> = self
            .shared
            .slots
            .iter()
            .map(|s| (s.config.name.as_str(), s.status().tools))
            .collect();
        index
            .tools
            .iter()
            .map(|spec| {
                let definition = listed
                    .get(spec.server.as_str())
                    .and_then(|tools| tools.iter().find(|t| t.name == spec.tool))
                    .and_then(|t| t.definition.clone());
                let mut tool = match definition {
                    Some(d) => (*d).clone(),
                    None => {
                        let schema = match &spec.input_schema {
                            Value::Object(map) => map.clone(),
                            _ => JsonObject::new(),
                        };
                        Tool::new(spec.name.clone(), spec.description.clone(), schema)
                    }
                };
                tool.name = spec.name.clone().into();
                OfferedTool {
                    spec: spec.clone(),
                    tool,
                }
            })
            .collect()
    }

    /// Watches [`Changes`]: a new value whenever the offered tools or the ready servers change.
    pub fn changes(&self) -> watch::Receiver<Changes> {
        self.shared.changes.subscribe()
    }

    /// The servers' resource and prompt notifications from now on.
    pub fn events(&self) -> broadcast::Receiver<HubEvent> {
        self.shared.events.subscribe()
    }

    /// Calls the tool offered as `name` for an MCP client: the server's own result (a
    /// failure to reach it is a result with `isError`), its progress sent to `progress`,
    /// cancelled on the server when `cancel` is.
    pub async fn call_tool_raw(
        &self,
        name: &str,
        arguments: JsonObject,
        cancel: CancellationToken,
        caller: Option<Arc<dyn Caller>>,
        progress: Option<ProgressSink>,
    ) -> Result<CallToolResult, ProxyError> {
        let answer = call::call_raw(
            &self.shared,
            name,
            Value::Object(arguments),
            cancel,
            caller,
            progress,
        )
        .await
        .ok_or_else(|| ProxyError::UnknownTool(name.to_string()))?;
        Ok(match answer {
            Ok(value) => serde_json::from_value(value).unwrap_or_else(|e| {
                CallToolResult::error(vec![ContentBlock::text(format!(
                    "error: cannot read the tool's result: {e}"
                ))])
            }),
            Err(text) => CallToolResult::error(vec![ContentBlock::text(text)]),
        })
    }

    pub(super) fn live(&self) -> Vec<Live> {
        self.shared.live()
    }

    pub(super) fn always_prefix(&self) -> bool {
        self.shared.config.tool_prefix == ToolPrefix::Always
    }

    /// Whether any ready server offers resources (prompts), for the capabilities.
    pub fn offers(&self) -> (bool, bool) {
        let live = self.live();
        (
            live.iter().any(|l| l.resources),
            live.iter().any(|l| l.prompts),
        )
    }

    /// The resources of the ready servers `allowed` lets through, as `(server, resource)`
    /// with the URI exposed.
    pub async fn list_resources(
        &self,
        allowed: &(dyn Fn(&str) -> bool + Sync),
    ) -> Vec<(String, Resource)> {
        let mut all = Vec::new();
        for live in self
            .live()
            .into_iter()
            .filter(|l| l.resources && allowed(&l.server))
        {
            match live.peer.list_all_resources().await {
                Ok(list) => all.extend(list.into_iter().map(|r| (live.server.clone(), r))),
                Err(e) => tracing::warn!(server = %live.server, "resources/list failed: {e}"),
            }
        }
        namespace(all, |r| r.uri.as_str(), prefixed_uri, self.always_prefix())
            .into_iter()
            .map(|(server, uri, mut r)| {
                r.uri = uri;
                (server, r)
            })
            .collect()
    }

    /// The resource templates of the ready servers `allowed` lets through.
    pub async fn list_resource_templates(
        &self,
        allowed: &(dyn Fn(&str) -> bool + Sync),
    ) -> Vec<(String, ResourceTemplate)> {
        let mut all = Vec::new();
        for live in self
            .live()
            .into_iter()
            .filter(|l| l.resources && allowed(&l.server))
        {
            match live.peer.list_all_resource_templates().await {
                Ok(list) => all.extend(list.into_iter().map(|r| (live.server.clone(), r))),
                Err(e) => {
                    tracing::warn!(server = %live.server, "resources/templates/list failed: {e}");
                }
            }
        }
        namespace(
            all,
            |t| t.uri_template.as_str(),
            prefixed_uri,
            self.always_prefix(),
        )
        .into_iter()
        .map(|(server, uri, mut t)| {
            t.uri_template = uri;
            (server, t)
        })
        .collect()
    }

    /// The servers that may hold `uri`, best first, with the URI they know it by.
    async fn resource_route(
        &self,
        uri: &str,
        allowed: &(dyn Fn(&str) -> bool + Sync),
    ) -> Vec<(Live, String)> {
        let live: Vec<Live> = self
            .live()
            .into_iter()
            .filter(|l| l.resources && allowed(&l.server))
            .collect();
        if let Some((label, rest)) = uri.split_once('+')
            && let Some(i) = live.iter().position(|l| scheme_label(&l.server) == label)
        {
            let mut live = live;
            return vec![(live.swap_remove(i), rest.to_string())];
        }
        // The server that lists it first, then the others in order.
        let mut owners = Vec::new();
        let mut rest = Vec::new();
        for l in live {
            let listed = l
                .peer
                .list_all_resources()
                .await
                .is_ok_and(|list| list.iter().any(|r| r.uri == uri));
            if listed {
                owners.push((l, uri.to_string()));
            } else {
                rest.push((l, uri.to_string()));
            }
        }
        owners.extend(rest);
        owners
    }

    /// `resources/read` of the exposed `uri` on the server that holds it.
    pub async fn read_resource(
        &self,
        uri: &str,
        allowed: &(dyn Fn(&str) -> bool + Sync),
    ) -> Result<ReadResourceResult, ProxyError> {
        let mut last = ProxyError::NotFound(uri.to_string());
        for (live, own) in self.resource_route(uri, allowed).await {
            match live
                .peer
                .read_resource(ReadResourceRequestParams::new(own.clone()))
                .await
            {
                Ok(result) if own == uri => return Ok(result),
                Ok(result) => return Ok(rename_contents(result, &own, uri)),
                Err(e) => last = upstream(&live.server, e),
            }
        }
        Err(last)
    }

    /// Forwards `resources/subscribe` (`subscribe`) or `resources/unsubscribe` of the exposed
    /// `uri` to the server that holds it, when it supports subscriptions. Returns the server
    /// and its own URI (to match its `resources/updated`).
    pub async fn subscribe_resource(
        &self,
        uri: &str,
        subscribe: bool,
        allowed: &(dyn Fn(&str) -> bool + Sync),
    ) -> Result<(String, String), ProxyError> {
        let route = self.resource_route(uri, allowed).await;
        let Some((live, own)) = route.into_iter().find(|(l, _)| l.subscribe) else {
            return Err(ProxyError::NotFound(uri.to_string()));
        };
        let sent = if subscribe {
            live.peer
                .subscribe(SubscribeRequestParams::new(own.clone()))
                .await
        } else {
            live.peer
                .unsubscribe(UnsubscribeRequestParams::new(own.clone()))
                .await
        };
        sent.map_err(|e| upstream(&live.server, e))?;
        Ok((live.server, own))
    }

    /// The exposed URI of a server's own `uri` (for its `resources/updated`): prefixed as
    /// its listing would be. `prefixed` says whether the client subscribed by the prefixed
    /// form.
    pub fn exposed_uri(server: &str, uri: &str, prefixed: bool) -> String {
        if prefixed {
            prefixed_uri(server, uri)
        } else {
            uri.to_string()
        }
    }

    pub(super) async fn prompts_of(
        &self,
        allowed: &(dyn Fn(&str) -> bool + Sync),
    ) -> Vec<(String, String, Prompt, Peer<RoleClient>)> {
        let mut all = Vec::new();
        let mut peers = HashMap::new();
        for live in self
            .live()
            .into_iter()
            .filter(|l| l.prompts && allowed(&l.server))
        {
            match live.peer.list_all_prompts().await {
                Ok(list) => {
                    all.extend(list.into_iter().map(|p| (live.server.clone(), p)));
                    peers.insert(live.server.clone(), live.peer.clone());
                }
                Err(e) => tracing::warn!(server = %live.server, "prompts/list failed: {e}"),
            }
        }
        namespace(
            all,
            |p| p.name.as_str(),
            prefixed_prompt,
            self.always_prefix(),
        )
        .into_iter()
        .filter_map(|(server, name, prompt)| {
            let peer = peers.get(&server)?.clone();
            Some((server, name, prompt, peer))
        })
        .collect()
    }

    /// The prompts of the ready servers `allowed` lets through, under their exposed names.
    pub async fn list_prompts(
        &self,
        allowed: &(dyn Fn(&str) -> bool + Sync),
    ) -> Vec<(String, Prompt)> {
        self.prompts_of(allowed)
            .await
            .into_iter()
            .map(|(server, name, mut prompt, _)| {
                prompt.name = name;
                (server, prompt)
            })
            .collect()
    }

    /// `prompts/get` of the prompt exposed as `name`.
    pub async fn get_prompt(
        &self,
        name: &str,
        arguments: Option<JsonObject>,
        allowed: &(dyn Fn(&str) -> bool + Sync),
    ) -> Result<GetPromptResult, ProxyError> {
        let found = self
            .prompts_of(allowed)
            .await
            .into_iter()
            .find(|(_, exposed, _, _)| exposed == name);
        let Some((server, _, prompt, peer)) = found else {
            return Err(ProxyError::NotFound(name.to_string()));
        };
        let mut params = GetPromptRequestParams::new(prompt.name);
        if let Some(arguments) = arguments {
            params = params.with_arguments(arguments);
        }
        peer.get_prompt(params)
            .await
            .map_err(|e| upstream(&server, e))
    }
}

impl super::Shared {
    /// The ready servers, with what each said it offers.
    pub(super) fn live(&self) -> Vec<Live> {
        self.slots
            .iter()
            .filter_map(|slot| {
                let status = slot.status();
                let peer = status.peer.filter(|_| status.state == "ready")?;
                let caps = peer.peer_info().map(|i| i.capabilities.clone());
                let resources = caps.as_ref().and_then(|c| c.resources.clone());
                Some(Live {
                    server: slot.config.name.clone(),
                    resources: resources.is_some(),
                    subscribe: resources.and_then(|r| r.subscribe) == Some(true),
                    prompts: caps.as_ref().is_some_and(|c| c.prompts.is_some()),
                    logging: caps.as_ref().is_some_and(|c| c.logging.is_some()),
                    completions: caps.is_some_and(|c| c.completions.is_some()),
                    peer,
                })
            })
            .collect()
    }
}

/// A read result whose contents name the server's own URI `own`, renamed to `exposed`.
fn rename_contents(result: ReadResourceResult, own: &str, exposed: &str) -> ReadResourceResult {
    let Ok(mut value) = serde_json::to_value(&result) else {
        return result;
    };
    if let Some(contents) = value.get_mut("contents").and_then(Value::as_array_mut) {
        for item in contents {
            if item.get("uri").and_then(Value::as_str) == Some(own) {
                item["uri"] = Value::String(exposed.to_string());
            }
        }
    }
    serde_json::from_value(value).unwrap_or(result)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scheme_labels_keep_the_uri_valid() {
        assert_eq!(scheme_label("everything"), "everything");
        assert_eq!(scheme_label("my_server"), "my-server");
        assert_eq!(scheme_label("9lives"), "s9lives");
        assert_eq!(
            prefixed_uri("my_server", "test://a/1"),
            "my-server+test://a/1"
        );
    }

    #[test]
    fn only_shared_names_get_the_server_prefix_unless_always() {
        let items = vec![
            ("a".to_string(), "x".to_string()),
            ("b".to_string(), "x".to_string()),
            ("b".to_string(), "y".to_string()),
        ];
        let named = namespace(items.clone(), |s| s.as_str(), prefixed_prompt, false);
        let names: Vec<_> = named.iter().map(|(_, n, _)| n.as_str()).collect();
        assert_eq!(names, ["a__x", "b__x", "y"]);
        let named = namespace(items, |s| s.as_str(), prefixed_prompt, true);
        let names: Vec<_> = named.iter().map(|(_, n, _)| n.as_str()).collect();
        assert_eq!(names, ["a__x", "b__x", "b__y"]);
    }

    #[test]
    fn a_prefixed_read_answers_with_the_uri_the_client_asked_for() {
        let result: ReadResourceResult = serde_json::from_value(serde_json::json!({
            "contents": [{"uri": "test://a", "text": "hi"}, {"uri": "test://other", "text": "x"}]
        }))
        .unwrap();
        let renamed =
            serde_json::to_value(rename_contents(result, "test://a", "fx+test://a")).unwrap();
        assert_eq!(renamed["contents"][0]["uri"], "fx+test://a");
        assert_eq!(renamed["contents"][1]["uri"], "test://other");
    }

    #[test]
    fn changes_count_tool_and_server_changes_apart() {
        let spec = |name: &str| ToolSpec {
            name: name.into(),
            server: "s".into(),
            tool: name.into(),
            description: String::new(),
            input_schema: serde_json::json!({"type": "object"}),
        };
        let mut c = Changes::default();
        assert!(c.note(&[], &[spec("a")], vec!["s"], vec![]));
        assert_eq!((c.tools, c.servers), (1, 1));
        assert!(!c.note(&[spec("a")], &[spec("a")], vec!["s"], vec![]));
        assert!(c.note(&[spec("a")], &[], vec![], vec![]));
        assert_eq!((c.tools, c.servers), (2, 2));
    }
}
