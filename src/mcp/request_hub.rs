//! One request's view of the tools: the operator's hub plus the request's own servers
//! (`request_servers.rs`), behind the same [`ToolHub`] trait, so the agent loop runs a turn
//! on it unchanged.
//!
//! The hub's tools keep the names it gave them. The request servers' tools are named once,
//! when the view is built, beside the hub's names then ([`naming::extend_index`]: own name
//! unless taken, else `label__tool`), and keep those names for the request; a hub tool that
//! appears later under a name a request tool holds is not offered to this request. A call
//! goes to the request server that owns the name, anything else to the hub.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use tokio_util::sync::CancellationToken;

use super::{
    ServerState, ToolHub, ToolOutcome, ToolSpec, asks::Caller, naming,
    request_servers::RequestServer,
};
use crate::config::ToolPrefix;

/// A hub snapshot and the combined list made from it.
type Combined = Option<(Arc<[ToolSpec]>, Arc<[ToolSpec]>)>;

/// The hub and a request's own servers as one [`ToolHub`]; close it when the request ends.
pub struct RequestHub {
    hub: Arc<dyn ToolHub>,
    servers: Vec<RequestServer>,
    /// The request servers' tools, named once.
    own: Arc<[ToolSpec]>,
    /// Exposed name -> (server position, the tool's own name).
    routes: HashMap<String, (usize, String)>,
    /// The hub snapshot last combined, and the combination.
    combined: Mutex<Combined>,
}

impl RequestHub {
    /// Names the tools of `servers` beside `hub`'s current tools under `prefix`
    /// (`mcp.tool_prefix`). Labels should be unique and not a hub server's name (the edge
    /// checks); routing is by exposed name either way.
    pub fn new(hub: Arc<dyn ToolHub>, servers: Vec<RequestServer>, prefix: ToolPrefix) -> Self {
        let listed: Vec<_> = servers.iter().map(|s| (s.label(), s.tools())).collect();
        let own = naming::extend_index(&hub.tools(), &listed, prefix);
        let mut routes = HashMap::new();
        let mut at = 0;
        for (i, server) in servers.iter().enumerate() {
            for spec in &own[at..at + server.tools().len()] {
                routes.insert(spec.name.clone(), (i, spec.tool.clone()));
            }
            at += server.tools().len();
        }
        Self {
            hub,
            servers,
            own: own.into(),
            routes,
            combined: Mutex::new(None),
        }
    }

    /// The request's own servers.
    pub fn request_servers(&self) -> &[RequestServer] {
        &self.servers
    }

    /// Closes every request server's connection.
    pub async fn close(&self) {
        futures::future::join_all(self.servers.iter().map(RequestServer::close)).await;
    }

    fn route(&self, name: &str) -> Option<(&RequestServer, &str)> {
        let (i, tool) = self.routes.get(name)?;
        Some((self.servers.get(*i)?, tool.as_str()))
    }
}

#[async_trait::async_trait]
impl ToolHub for RequestHub {
    fn tools(&self) -> Arc<[ToolSpec]> {
        let hub = self.hub.tools();
        let mut cache = self.combined.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((seen, combined)) = cache.as_ref()
            && Arc::ptr_eq(seen, &hub)
        {
            return combined.clone();
        }
        let combined: Arc<[ToolSpec]> = hub
            .iter()
            .filter(|t| !self.routes.contains_key(&t.name))
            .chain(self.own.iter())
            .cloned()
            .collect();
        *cache = Some((hub, combined.clone()));
        combined
    }

    async fn call(
        &self,
        name: &str,
        arguments: serde_json::Value,
        cancel: CancellationToken,
    ) -> ToolOutcome {
        match self.route(name) {
            Some((server, tool)) => server.call(tool, arguments, cancel, None).await,
            None => self.hub.call(name, arguments, cancel).await,
        }
    }

    async fn call_as(
        &self,
        name: &str,
        arguments: serde_json::Value,
        cancel: CancellationToken,
        caller: Arc<dyn Caller>,
    ) -> ToolOutcome {
        match self.route(name) {
            Some((server, tool)) => server.call(tool, arguments, cancel, Some(caller)).await,
            None => self.hub.call_as(name, arguments, cancel, caller).await,
        }
    }

    /// The hub's servers, then the request's (always `ready`: they are connected before
    /// the turn starts).
    fn servers(&self) -> Vec<ServerState> {
        let mut states = self.hub.servers();
        states.extend(self.servers.iter().map(|s| ServerState {
            name: s.label().to_string(),
            transport: s.transport(),
            state: "ready",
            error: None,
            restarts: 0,
            required: false,
            tool_count: s.tools().len(),
        }));
        states
    }

    async fn settle(&self) -> Arc<[String]> {
        self.hub.settle().await
    }
}
