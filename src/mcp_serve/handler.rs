//! The rmcp `ServerHandler` of one `/mcp` session, answering from the hub: `tools/list` and
//! `tools/call` (every offered tool the caller's key allows, under its exposed name, with
//! its server's schemas and annotations), `resources/*` and `prompts/*` of the servers that
//! offer them, subscriptions forwarded. A caller's `progressToken` gets the server's
//! `notifications/progress` back; a caller's `notifications/cancelled` cancels the call on the
//! server (rmcp cancels the request's token). `logging/setLevel` sets the session's level
//! (the servers are asked for the most verbose level a session wants, `mcp/logging.rs`);
//! `completion/complete` goes to the server that owns the prompt or template. After
//! `initialized` a watcher sends the session `list_changed` when what its key may list
//! changes, `resources/updated` for what it subscribed to, and the log messages of the
//! servers its key may use at or above its level.

#![allow(deprecated)] // resources/subscribe and logging are legacy-only in the 2026-07-28 revision.

use std::{
    collections::HashSet,
    sync::{Arc, Mutex, OnceLock},
};

use axum::http::request::Parts;
use rmcp::{
    ErrorData, RoleServer, ServerHandler,
    model::{
        CallToolRequestParams, CallToolResponse, CompleteRequestParams, CompleteResult,
        GetPromptRequestParams, GetPromptResponse, Implementation, InitializeRequestParams,
        InitializeResult, ListPromptsResult, ListResourceTemplatesResult, ListResourcesResult,
        ListToolsResult, PaginatedRequestParams, ProgressNotificationParam,
        ReadResourceRequestParams, ReadResourceResponse, ServerCapabilities, ServerConfig,
        SetLevelRequestParams, SubscribeRequestParams, Tool, UnsubscribeRequestParams,
    },
    service::{NotificationContext, Peer, RequestContext},
};
use tokio_util::sync::{CancellationToken, DropGuard};

use super::{chat, guard::Principal};
use crate::{
    grpc::ChatApi,
    mcp::{
        McpHub,
        logging::{LogSession, passes},
        progress::{Progress, ProgressSink},
        proxy::{HubEvent, ProxyError},
    },
};

/// One subscription: the server, its own URI, and the URI the client subscribed by.
type Subscription = (String, String, String);

/// The handler of one session (rmcp makes one per session).
pub struct HubServer {
    hub: Arc<McpHub>,
    /// The gRPC service, for the `chat` tool (`None`: not offered).
    chat: Option<ChatApi>,
    /// The caller that opened the session; later requests must come with the same key.
    owner: OnceLock<Principal>,
    subscriptions: Arc<Mutex<HashSet<Subscription>>>,
    /// The session's log level.
    log: Arc<LogSession>,
    /// Stops the session's watcher when the session ends.
    stop: CancellationToken,
    _stop_on_drop: DropGuard,
}

impl HubServer {
    pub fn new(hub: Arc<McpHub>, chat: Option<ChatApi>) -> Self {
        let stop = CancellationToken::new();
        Self {
            log: Arc::new(hub.log_session()),
            hub,
            chat,
            owner: OnceLock::new(),
            subscriptions: Arc::default(),
            _stop_on_drop: stop.clone().drop_guard(),
            stop,
        }
    }

    /// The caller of a request (set by `guard.rs`), checked against the session's owner.
    fn principal(&self, context: &RequestContext<RoleServer>) -> Result<Principal, ErrorData> {
        let principal = context
            .extensions
            .get::<Parts>()
            .and_then(|p| p.extensions.get::<Principal>())
            .cloned()
            .unwrap_or_default();
        if let Some(owner) = self.owner.get()
            && owner.name() != principal.name()
        {
            return Err(ErrorData::invalid_request(
                "this session was opened with another API key",
                None,
            ));
        }
        Ok(principal)
    }
}

/// The tools `principal` may list.
fn tools_for(hub: &McpHub, principal: &Principal) -> Vec<Tool> {
    hub.offered_tools()
        .into_iter()
        .filter(|t| principal.allows_tool(&t.spec.server, &t.spec.tool, &t.spec.name))
        .map(|t| t.tool)
        .collect()
}

fn proxy_error(e: ProxyError) -> ErrorData {
    match e {
        ProxyError::UnknownTool(_) => ErrorData::invalid_params(e.to_string(), None),
        ProxyError::NotFound(_) => ErrorData::resource_not_found(e.to_string(), None),
        ProxyError::Upstream { error, .. } => error,
        ProxyError::Failed { .. } => ErrorData::internal_error(e.to_string(), None),
    }
}

/// A sink that sends a call's progress to the client as `notifications/progress` with the
/// client's own token, in order (a task per call that ends when the call drops the sink),
/// and the task, to wait for before the result goes out (so no report follows it).
fn progress_to(
    peer: Peer<RoleServer>,
    token: rmcp::model::ProgressToken,
) -> (ProgressSink, tokio::task::JoinHandle<()>) {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Progress>();
    let task = tokio::spawn(async move {
        while let Some(p) = rx.recv().await {
            let mut param = ProgressNotificationParam::new(token.clone(), p.progress);
            param.total = p.total;
            param.message = p.message;
            if let Err(e) = peer.notify_progress(param).await {
                tracing::debug!("cannot send progress to the MCP client: {e}");
                break;
            }
        }
    });
    let sink: ProgressSink = Arc::new(move |p| {
        let _ = tx.send(p);
    });
    (sink, task)
}

/// Tells the session what changed until it ends.
async fn watch(
    hub: Arc<McpHub>,
    principal: Principal,
    peer: Peer<RoleServer>,
    subscriptions: Arc<Mutex<HashSet<Subscription>>>,
    log: Arc<LogSession>,
    stop: CancellationToken,
) {
    let mut changes = hub.changes();
    let mut events = hub.events();
    let mut seen = changes.borrow_and_update().clone();
    let mut listed = tools_for(&hub, &principal);
    loop {
        let sent = tokio::select! {
            () = stop.cancelled() => return,
            r = changes.changed() => {
                if r.is_err() {
                    return;
                }
                let now = changes.borrow_and_update().clone();
                let mut sent = Ok(());
                if now.tools != seen.tools {
                    let tools = tools_for(&hub, &principal);
                    if tools != listed {
                        listed = tools;
                        sent = peer.notify_tool_list_changed().await;
                    }
                }
                if now.servers != seen.servers && sent.is_ok() {
                    sent = peer.notify_resource_list_changed().await;
                    if sent.is_ok() {
                        sent = peer.notify_prompt_list_changed().await;
                    }
                }
                seen = now;
                sent
            }
            e = events.recv() => match e {
                Ok(HubEvent::ResourceUpdated { server, uri }) => {
                    let exposed: Vec<String> = subscriptions
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .iter()
                        .filter(|(s, own, _)| *s == server && *own == uri)
                        .map(|(_, _, exposed)| exposed.clone())
                        .collect();
                    let mut sent = Ok(());
                    for uri in exposed {
                        sent = peer
                            .notify_resource_updated(rmcp::model::ResourceUpdatedNotificationParam::new(uri))
                            .await;
                    }
                    sent
                }
                Ok(HubEvent::ResourcesChanged) => peer.notify_resource_list_changed().await,
                Ok(HubEvent::PromptsChanged) => peer.notify_prompt_list_changed().await,
                Ok(HubEvent::Log { server, message }) => {
                    if principal.allows_server(&server) && passes(message.level, log.level()) {
                        peer.notify_logging_message(message).await
                    } else {
                        Ok(())
                    }
                }
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => Ok(()),
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
            },
        };
        if let Err(e) = sent {
            tracing::debug!("the MCP session is gone: {e}");
            return;
        }
    }
}

impl ServerHandler for HubServer {
    fn get_info(&self) -> ServerConfig {
        let capabilities = ServerCapabilities::builder()
            .enable_logging()
            .enable_completions()
            .enable_tools()
            .enable_tool_list_changed()
            .enable_resources()
            .enable_resources_subscribe()
            .enable_resources_list_changed()
            .enable_prompts()
            .enable_prompts_list_changed()
            .build();
        InitializeResult::new(capabilities)
            .with_server_info(Implementation::new("mcp-chat", env!("CARGO_PKG_VERSION")))
            .with_instructions(
                "mcp-chat: the tools, resources and prompts of the MCP servers it runs, \
                 under one endpoint.",
            )
    }

    async fn initialize(
        &self,
        request: InitializeRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<InitializeResult, ErrorData> {
        let principal = self.principal(&context)?;
        let _ = self.owner.set(principal);
        context.peer.set_peer_info(request.clone());
        self.negotiate_initialize(&request)
    }

    async fn on_initialized(&self, context: NotificationContext<RoleServer>) {
        let principal = self.owner.get().cloned().unwrap_or_default();
        tokio::spawn(watch(
            self.hub.clone(),
            principal,
            context.peer,
            self.subscriptions.clone(),
            self.log.clone(),
            self.stop.clone(),
        ));
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        let principal = self.principal(&context)?;
        let mut tools = tools_for(&self.hub, &principal);
        if self.chat.is_some() && !tools.iter().any(|t| t.name == chat::NAME) {
            tools.push(chat::definition());
        }
        Ok(ListToolsResult::with_all_items(tools))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let principal = self.principal(&context)?;
        let name = request.name.to_string();
        let offered = self.hub.offered_tools();
        if let Some(api) = &self.chat
            && name == chat::NAME
            && !offered.iter().any(|t| t.spec.name == name)
        {
            let headers = context.extensions.get::<Parts>().map(|p| &p.headers);
            let arguments = request.arguments.unwrap_or_default();
            let result = chat::run(api, &arguments, headers, context.ct.clone()).await;
            return Ok(CallToolResponse::from(result));
        }
        let allowed = offered.iter().any(|t| {
            t.spec.name == name && principal.allows_tool(&t.spec.server, &t.spec.tool, &name)
        });
        if !allowed {
            return Err(proxy_error(ProxyError::UnknownTool(name)));
        }
        let (progress, forwarder) = context
            .meta
            .get_progress_token()
            .map(|token| progress_to(context.peer.clone(), token))
            .unzip();
        let result = self
            .hub
            .call_tool_raw(
                &name,
                request.arguments.unwrap_or_default(),
                context.ct.clone(),
                Some(Arc::new(super::asks::ClientCaller {
                    peer: context.peer.clone(),
                })),
                progress,
            )
            .await;
        // Every progress report goes out before the result.
        if let Some(forwarder) = forwarder {
            let _ = tokio::time::timeout(std::time::Duration::from_secs(2), forwarder).await;
        }
        result.map(CallToolResponse::from).map_err(proxy_error)
    }

    async fn list_resources(
        &self,
        _request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListResourcesResult, ErrorData> {
        let principal = self.principal(&context)?;
        let allowed = |s: &str| principal.allows_server(s);
        let listed = self.hub.list_resources(&allowed).await;
        Ok(ListResourcesResult::with_all_items(
            listed.into_iter().map(|(_, r)| r).collect(),
        ))
    }

    async fn list_resource_templates(
        &self,
        _request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListResourceTemplatesResult, ErrorData> {
        let principal = self.principal(&context)?;
        let allowed = |s: &str| principal.allows_server(s);
        let listed = self.hub.list_resource_templates(&allowed).await;
        Ok(ListResourceTemplatesResult::with_all_items(
            listed.into_iter().map(|(_, t)| t).collect(),
        ))
    }

    async fn read_resource(
        &self,
        request: ReadResourceRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<ReadResourceResponse, ErrorData> {
        let principal = self.principal(&context)?;
        let allowed = |s: &str| principal.allows_server(s);
        self.hub
            .read_resource(&request.uri, &allowed)
            .await
            .map(ReadResourceResponse::from)
            .map_err(proxy_error)
    }

    async fn subscribe(
        &self,
        request: SubscribeRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        let principal = self.principal(&context)?;
        let allowed = |s: &str| principal.allows_server(s);
        let (server, own) = self
            .hub
            .subscribe_resource(&request.uri, true, &allowed)
            .await
            .map_err(proxy_error)?;
        self.subscriptions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert((server, own, request.uri));
        Ok(())
    }

    async fn unsubscribe(
        &self,
        request: UnsubscribeRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        let principal = self.principal(&context)?;
        let allowed = |s: &str| principal.allows_server(s);
        let (server, own) = self
            .hub
            .subscribe_resource(&request.uri, false, &allowed)
            .await
            .map_err(proxy_error)?;
        self.subscriptions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&(server, own, request.uri));
        Ok(())
    }

    async fn list_prompts(
        &self,
        _request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListPromptsResult, ErrorData> {
        let principal = self.principal(&context)?;
        let allowed = |s: &str| principal.allows_server(s);
        let listed = self.hub.list_prompts(&allowed).await;
        Ok(ListPromptsResult::with_all_items(
            listed.into_iter().map(|(_, p)| p).collect(),
        ))
    }

    async fn get_prompt(
        &self,
        request: GetPromptRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<GetPromptResponse, ErrorData> {
        let principal = self.principal(&context)?;
        let allowed = |s: &str| principal.allows_server(s);
        self.hub
            .get_prompt(&request.name, request.arguments, &allowed)
            .await
            .map(GetPromptResponse::from)
            .map_err(|e| match e {
                // An unknown prompt is invalid params (the spec's error for it).
                ProxyError::NotFound(_) => ErrorData::invalid_params(e.to_string(), None),
                other => proxy_error(other),
            })
    }

    async fn set_level(
        &self,
        request: SetLevelRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        self.principal(&context)?;
        self.log.set(request.level).await;
        Ok(())
    }

    async fn complete(
        &self,
        request: CompleteRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CompleteResult, ErrorData> {
        let principal = self.principal(&context)?;
        let allowed = |s: &str| principal.allows_server(s);
        self.hub
            .complete(request, &allowed)
            .await
            .map_err(|e| match e {
                // An unknown prompt or template is invalid params, as for prompts/get.
                ProxyError::NotFound(_) => ErrorData::invalid_params(e.to_string(), None),
                other => proxy_error(other),
            })
    }
}
