//! What the model may call in a turn: the operator's MCP tools, or only the servers the
//! request names (operator servers by label, remote ones by URL, connected for this turn),
//! narrowed by `allowed_tools` and by the caller's key, beside the client's own tools; and
//! which calls wait for approval.

use std::{collections::HashMap, sync::Arc};

use super::{Offer, Turn};
use crate::{error::CoreError, mcp::ToolSpec};

impl Turn<'_> {
    /// Connects the remote servers the request names (`server_url`), checked against the
    /// operator's policy and the caller's key; `None` when it names none.
    pub(super) async fn connect_request_servers(
        &self,
    ) -> Result<Option<Arc<crate::mcp::request_hub::RequestHub>>, CoreError> {
        use crate::mcp::request_servers::RequestServerError;
        let remote: Vec<_> = self
            .request
            .mcp_servers
            .iter()
            .filter(|s| s.url.is_some())
            .collect();
        if remote.is_empty() {
            return Ok(None);
        }
        let invalid = |field: String, reason: String| CoreError::InvalidArgument { field, reason };
        let mut servers = Vec::with_capacity(remote.len());
        for server in remote {
            let url = server.url.as_deref().unwrap_or_default();
            let field = |part: &str| format!("{}.{part}", server.field);
            if self
                .request
                .access
                .as_ref()
                .is_some_and(|a| !a.request_servers)
            {
                return Err(invalid(
                    field("server_url"),
                    "this API key may not name remote MCP servers".into(),
                ));
            }
            let Some(client) = &self.inner.request_servers else {
                return Err(invalid(
                    field("server_url"),
                    "per-request remote MCP servers are off on this service (mcp.request_servers); name a configured server by server_label alone".into(),
                ));
            };
            if self
                .inner
                .hub
                .servers()
                .iter()
                .any(|s| s.name == server.label)
            {
                return Err(invalid(
                    field("server_label"),
                    format!(
                        "{:?} is the name of a configured server; give the remote server another label",
                        server.label
                    ),
                ));
            }
            let connected = client
                .connect(
                    &server.label,
                    url,
                    &server.headers,
                    server.allowed_tools.as_deref(),
                )
                .await;
            match connected {
                Ok(s) => servers.push(s),
                Err(RequestServerError::Refused(why)) => {
                    return Err(invalid(field("server_url"), why.to_string()));
                }
                Err(e @ RequestServerError::Header { .. }) => {
                    return Err(invalid(field("headers"), e.to_string()));
                }
                Err(e) => return Err(invalid(field("server_url"), e.to_string())),
            }
        }
        Ok(Some(Arc::new(crate::mcp::request_hub::RequestHub::new(
            self.inner.hub.clone(),
            servers,
            self.inner.tool_prefix,
        ))))
    }

    /// The tools offered: MCP tools (minus names a client tool shadows) and client tools.
    /// Without `mcp` entries in the request, every operator tool; with them, only the named
    /// servers' tools (narrowed by `allowed_tools`), some waiting for approval.
    pub(super) fn offer(&self) -> Result<Offer, CoreError> {
        let client = self.request.client_tools.clone();
        let all = self.hub.tools();
        let access = self.request.access.as_deref();
        // A tool the caller's key may not use is as absent as one no server offers.
        let shadowed = |t: &ToolSpec| {
            client.iter().any(|c| c.name == t.name)
                || access.is_some_and(|a| !a.allows_tool(&t.server, &t.tool, &t.name))
        };
        let mut mcp = HashMap::new();
        let mut needs_approval = HashMap::new();
        if self.request.mcp_servers.is_empty() {
            mcp.extend(
                all.iter()
                    .filter(|t| !shadowed(t))
                    .map(|t| (t.name.clone(), t.clone())),
            );
        }
        for server in &self.request.mcp_servers {
            let visible =
                server.url.is_some() || access.is_none_or(|a| a.allows_server(&server.label));
            if !visible || !self.hub.servers().iter().any(|s| s.name == server.label) {
                return Err(CoreError::InvalidArgument {
                    field: format!("{}.server_label", server.field),
                    reason: format!(
                        "no MCP server {:?} is configured (without server_url the label names a server of servers_config.json; ListTools lists them)",
                        server.label
                    ),
                });
            }
            let allowed = |tool: &str| {
                server
                    .allowed_tools
                    .as_ref()
                    .is_none_or(|names| names.iter().any(|n| n == tool))
            };
            for t in all.iter().filter(|t| t.server == server.label) {
                if !allowed(&t.tool) || shadowed(t) {
                    continue;
                }
                if server.approval.requires(&t.tool) {
                    needs_approval.insert(t.name.clone(), server.label.clone());
                }
                mcp.insert(t.name.clone(), t.clone());
            }
        }
        Ok(Offer {
            mcp,
            client,
            needs_approval,
        })
    }
}
