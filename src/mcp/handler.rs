//! The rmcp client handler of one server connection: what the client declares in
//! `initialize` (the protocol version and the capabilities), and what it answers when the
//! server asks: `tools/list_changed` is forwarded to the supervisor; `elicitation/create`
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
        FormElicitationCapability, Implementation, ProtocolVersion, UrlElicitationCapability,
    },
    service::{NotificationContext, RequestContext},
};
use tokio::sync::Notify;

use super::asks::{self, Callers};

#[derive(Clone)]
pub struct Handler {
    pub server: Arc<str>,
    pub list_changed: Arc<Notify>,
    /// The callers of the calls in flight on this server.
    pub callers: Arc<Callers>,
    /// Whether the server may ask for completions (`"sampling": false` turns it off).
    pub sampling: bool,
}

impl ClientHandler for Handler {
    async fn on_tool_list_changed(&self, _context: NotificationContext<RoleClient>) {
        tracing::debug!(server = %self.server, "tools/list_changed");
        self.list_changed.notify_one();
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
