//! The rmcp client handler of one server connection: what the client declares in
//! `initialize` (the protocol version and the capabilities), and what it answers when the
//! server asks: `tools/list_changed` is forwarded to the supervisor; `notifications/progress`
//! to the sink of its call (`progress.rs`); `resources/updated`, the resource and prompt
//! `list_changed` and log messages (`notifications/message`, `logging.rs`) to the hub's
//! events (`proxy.rs`); `elicitation/create`
//! and `sampling/createMessage` go to the [`Caller`](super::asks::Caller) of the call in
//! progress (`asks.rs`), and are declined or refused when there is none.

// Sampling is deprecated in the 2026-07-28 revision (SEP-2577); servers of 2025 still use it.
#![allow(deprecated)]

use std::sync::Arc;

use rmcp::{
    ClientHandler, ErrorData, RoleClient,
    model::{
        ClientCapabilities, ClientConfig, CreateMessageRequestParams, CreateMessageResult,
        ElicitRequestParams, ElicitResult, ElicitationAction, ElicitationCapability,
        FormElicitationCapability, Implementation, LoggingMessageNotificationParam,
        ProgressNotificationParam, ProtocolVersion, ResourceUpdatedNotificationParam,
        UrlElicitationCapability,
    },
    service::{NotificationContext, RequestContext},
};
use tokio::sync::{Notify, broadcast};

use super::{
    asks::{self, Callers},
    progress::ProgressRoutes,
    proxy::HubEvent,
};

#[derive(Clone)]
pub struct Handler {
    pub server: Arc<str>,
    pub list_changed: Arc<Notify>,
    /// The callers of the calls in flight on this server.
    pub callers: Arc<Callers>,
    /// Whether the server may ask for completions (`"sampling": false` turns it off).
    pub sampling: bool,
    /// The progress sinks of the calls in flight on this server.
    pub progress: Arc<ProgressRoutes>,
    /// What MCP clients of mcp-chat hear of this server's resources and prompts.
    pub events: broadcast::Sender<HubEvent>,
}

impl ClientHandler for Handler {
    async fn on_tool_list_changed(&self, _context: NotificationContext<RoleClient>) {
        tracing::debug!(server = %self.server, "tools/list_changed");
        self.list_changed.notify_one();
    }

    async fn on_progress(
        &self,
        params: ProgressNotificationParam,
        _context: NotificationContext<RoleClient>,
    ) {
        if !self.progress.forward(params) {
            tracing::trace!(server = %self.server, "progress for no call in flight");
        }
    }

    async fn on_resource_updated(
        &self,
        params: ResourceUpdatedNotificationParam,
        _context: NotificationContext<RoleClient>,
    ) {
        let _ = self.events.send(HubEvent::ResourceUpdated {
            server: self.server.to_string(),
            uri: params.uri,
        });
    }

    async fn on_resource_list_changed(&self, _context: NotificationContext<RoleClient>) {
        let _ = self.events.send(HubEvent::ResourcesChanged);
    }

    async fn on_prompt_list_changed(&self, _context: NotificationContext<RoleClient>) {
        let _ = self.events.send(HubEvent::PromptsChanged);
    }

    async fn on_logging_message(
        &self,
        params: LoggingMessageNotificationParam,
        _context: NotificationContext<RoleClient>,
    ) {
        let _ = self.events.send(HubEvent::Log {
            server: self.server.to_string(),
            message: super::logging::from_server(&self.server, params),
        });
    }

    fn get_info(&self) -> ClientConfig {
        let elicitation = ElicitationCapability::new()
            .with_form(FormElicitationCapability::new())
            .with_url(UrlElicitationCapability::new());
        let capabilities = ClientCapabilities::builder().enable_elicitation_with(elicitation);
        let capabilities = if self.sampling {
            capabilities.enable_sampling().build()
        } else {
            capabilities.build()
        };
        // `initialize` names the newest revision that has the handshake: from 2026-07-28
        // (rmcp's `LATEST`) the lifecycle moved to per-request `_meta`, so that version in
        // `initialize` is a contradiction conformant servers reject.
        ClientConfig::new(
            capabilities,
            Implementation::new("mcp-chat", env!("CARGO_PKG_VERSION")),
        )
        .with_protocol_version(ProtocolVersion::LATEST_WITH_INITIALIZE)
    }

    async fn create_elicitation(
        &self,
        request: ElicitRequestParams,
        _context: RequestContext<RoleClient>,
    ) -> Result<ElicitResult, ErrorData> {
        let Some(caller) = self.callers.current() else {
            tracing::info!(server = %self.server, "declined an elicitation: no call is in progress");
            return Ok(ElicitResult::new(ElicitationAction::Decline));
        };
        let answer = caller
            .elicit(asks::elicitation_of(&self.server, request))
            .await;
        if let asks::ElicitAnswer::Decline(why) = &answer {
            tracing::info!(server = %self.server, "declined an elicitation: {why}");
        }
        Ok(asks::elicit_result(answer))
    }

    async fn create_message(
        &self,
        request: CreateMessageRequestParams,
        _context: RequestContext<RoleClient>,
    ) -> Result<CreateMessageResult, ErrorData> {
        if !self.sampling {
            return Err(ErrorData::invalid_request(
                "sampling is turned off for this server",
                None,
            ));
        }
        let Some(caller) = self.callers.current() else {
            return Err(ErrorData::invalid_request(
                "no tool call is in progress to sample for",
                None,
            ));
        };
        caller
            .sample(asks::sampling_of(&self.server, request))
            .await
            .map(asks::sampling_result)
            .map_err(|e| ErrorData::internal_error(e, None))
    }
}
