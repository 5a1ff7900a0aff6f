//! A turn's tool results into the conversation: a server-side call's outcome (with the note
//! for a declined request for input), and the caller's decisions on calls that waited for
//! approval (`agent/approvals.rs`): approved ones run exactly as stored, denied or expired
//! ones get a result saying so.

use super::{Offer, Turn, caller};
use crate::{
    agent::{ExecutedCall, approvals, prompt_tools},
    config::ToolMode,
    error::CoreError,
    llm::CompletionRequest,
    model::{Message, Role, ToolCall},
};

impl Turn<'_> {
    /// A server-side call's outcome into the conversation and the executed list (a note is
    /// added when the server's request for input was declined).
    pub(super) fn push_result(
        &self,
        upstream: &mut CompletionRequest,
        executed: &mut Vec<ExecutedCall>,
        mode: ToolMode,
        call: &ToolCall,
        mut outcome: crate::mcp::ToolOutcome,
    ) {
        if self.caller.take_declined(&outcome.server) {
            outcome.text.push_str("\n\n");
            outcome.text.push_str(caller::DECLINED_NOTE);
        }
        upstream.messages.push(match mode {
            ToolMode::Native => Message::tool_result(&call.id, &outcome.text),
            ToolMode::Prompt => Message::new(
                Role::User,
                prompt_tools::result_message(&call.name, outcome.ok, &outcome.text),
            ),
        });
        executed.push(ExecutedCall {
            id: call.id.clone(),
            name: call.name.clone(),
            server: outcome.server,
            tool: outcome.tool,
            arguments: call.arguments.clone(),
            ok: outcome.ok,
            result: outcome.text,
            duration: outcome.duration,
        });
    }

    /// The caller's decisions on calls that waited for approval: each approved call runs
    /// (exactly as stored), each denied or expired one gets a result saying so.
    pub(super) async fn resume_approvals(
        &self,
        upstream: &mut CompletionRequest,
        offer: &Offer,
        mode: ToolMode,
        executed: &mut Vec<ExecutedCall>,
    ) -> Result<(), CoreError> {
        let mut run = Vec::new();
        for (index, decision) in self.request.approvals.iter().enumerate() {
            let resolution = approvals::resolve(
                self.inner.sessions.as_ref(),
                &upstream.messages,
                decision,
                index,
            )
            .await?;
            match resolution {
                approvals::Resolution::Run(call) => run.push(call),
                approvals::Resolution::Skip(text) => {
                    upstream.messages.push(match mode {
                        ToolMode::Native => Message::tool_result(&decision.call_id, &text),
                        ToolMode::Prompt => Message::new(Role::User, text),
                    });
                }
            }
        }
        let results = self.execute(&run, offer).await?;
        for (call, outcome) in run.iter().zip(results) {
            self.push_result(upstream, executed, mode, call, outcome);
        }
        Ok(())
    }
}
