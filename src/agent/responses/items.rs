//! Agent events → output items and the typed events of a streamed response. One
//! assembler serves both a stream and a whole response (which is the stream collected), so
//! the two always agree. Each round's text is its own `message` item, between the tool
//! items of the rounds; item ids derive from the call ids (`mcp_…`, `fc_…`; an approval
//! request's id is the call id itself, which the caller's `mcp_approval_response` names).

use std::collections::{HashMap, HashSet};

use super::{
    ItemStatus, ListedTool, OutputItem, ResponseEvent, ResponseFailure, ResponseObject,
    ResponseStatus, ResponseUsage,
};
use crate::{
    agent::{AgentEvent, Finish, TurnUsage, turn::ROUND_SEPARATOR},
    error::CoreError,
};

/// An item an event is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ItemRef {
    pub item_id: String,
    pub index: usize,
}

/// A text of an item: a delta, or the whole text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TextRef {
    pub item_id: String,
    pub index: usize,
    pub content_index: usize,
    pub text: String,
}

/// What the assembler knows when the response is finished.
pub(super) struct Finished {
    pub object: ResponseObject,
    pub store: bool,
    /// The session the turn was stored in, and its length after it.
    pub session: Option<String>,
    pub session_len: Option<usize>,
    /// The servers listed so far in the conversation.
    pub listed: Vec<String>,
}

pub(super) struct Assembler {
    object: ResponseObject,
    listed: Vec<String>,
    approved: HashSet<String>,
    open_message: Option<usize>,
    calls: HashMap<String, usize>,
}

fn new_id(prefix: &str) -> String {
    format!("{prefix}_{}", uuid::Uuid::new_v4().simple())
}

fn usage(u: &TurnUsage) -> ResponseUsage {
    ResponseUsage {
        input_tokens: u.usage.prompt_tokens,
        output_tokens: u.usage.completion_tokens,
        total_tokens: u.usage.total_tokens,
        cached_tokens: u.usage.prompt_details.map_or(0, |d| d.cached_tokens),
        reasoning_tokens: u.usage.completion_details.map_or(0, |d| d.reasoning_tokens),
        estimated: u.estimated,
    }
}

/// OpenAI's code for a response that failed on our side or upstream (the message says
/// which); its list of codes has no finer one for these.
fn error_code(_: &CoreError) -> &'static str {
    "server_error"
}

impl Assembler {
    pub(super) fn new(
        object: ResponseObject,
        listed: Vec<String>,
        approved: HashSet<String>,
    ) -> Self {
        Self {
            object,
            listed,
            approved,
            open_message: None,
            calls: HashMap::new(),
        }
    }

    pub(super) fn start(&self) -> Vec<ResponseEvent> {
        vec![
            ResponseEvent::Created(Box::new(self.object.clone())),
            ResponseEvent::InProgress(Box::new(self.object.clone())),
        ]
    }

    fn add(&mut self, item: OutputItem, out: &mut Vec<ResponseEvent>) -> usize {
        let index = self.object.output.len();
        out.push(ResponseEvent::ItemAdded {
            index,
            item: item.clone(),
        });
        self.object.output.push(item);
        index
    }

    fn item_ref(&self, index: usize) -> ItemRef {
        ItemRef {
            item_id: self.object.output[index].id().to_string(),
            index,
        }
    }

    fn text_ref(&self, index: usize, text: String) -> TextRef {
        TextRef {
            item_id: self.object.output[index].id().to_string(),
            index,
            content_index: 0,
            text,
        }
    }

    fn done(&self, index: usize, out: &mut Vec<ResponseEvent>) {
        out.push(ResponseEvent::ItemDone {
            index,
            item: self.object.output[index].clone(),
        });
    }

    fn close_message(&mut self, status: ItemStatus, out: &mut Vec<ResponseEvent>) {
        let Some(index) = self.open_message.take() else {
            return;
        };
        let text = match &mut self.object.output[index] {
            OutputItem::Message {
                text, status: s, ..
            } => {
                *s = status;
                text.clone()
            }
            _ => return,
        };
        out.push(ResponseEvent::TextDone(self.text_ref(index, text.clone())));
        out.push(ResponseEvent::PartDone(self.text_ref(index, text)));
        self.done(index, out);
    }

    fn text(&mut self, mut text: String, out: &mut Vec<ResponseEvent>) {
        let index = match self.open_message {
            Some(index) => index,
            None => {
                // A later round's text starts with the separator a chat joins rounds with;
                // here each round is its own item.
                let has_message = self
                    .object
                    .output
                    .iter()
                    .any(|i| matches!(i, OutputItem::Message { .. }));
                if has_message && let Some(rest) = text.strip_prefix(ROUND_SEPARATOR) {
                    text = rest.to_string();
                }
                let index = self.add(
                    OutputItem::Message {
                        id: new_id("msg"),
                        text: String::new(),
                        status: ItemStatus::InProgress,
                    },
                    out,
                );
                out.push(ResponseEvent::PartAdded(
                    self.text_ref(index, String::new()),
                ));
                self.open_message = Some(index);
                index
            }
        };
        if text.is_empty() {
            return;
        }
        if let OutputItem::Message { text: all, .. } = &mut self.object.output[index] {
            all.push_str(&text);
        }
        out.push(ResponseEvent::TextDelta(self.text_ref(index, text)));
    }

    /// One agent event in; the response events out, and the finished response after the
    /// last one (`Done` or an error).
    pub(super) fn push(
        &mut self,
        event: Result<AgentEvent, CoreError>,
    ) -> (Vec<ResponseEvent>, Option<Finished>) {
        let mut out = Vec::new();
        let event = match event {
            Ok(event) => event,
            Err(e) => {
                self.close_message(ItemStatus::Incomplete, &mut out);
                self.object.status = ResponseStatus::Failed;
                self.object.error = Some(ResponseFailure {
                    code: error_code(&e).to_string(),
                    message: e.to_string(),
                });
                let finished = self.finished(None, None);
                out.push(ResponseEvent::Failed(
                    Box::new(self.object.clone()),
                    Box::new(e),
                ));
                return (out, Some(finished));
            }
        };
        match event {
            // OpenAI's Responses stream has no event for these.
            AgentEvent::Start { .. }
            | AgentEvent::ElicitationRequired(_)
            | AgentEvent::ToolCallProgress { .. } => {}
            AgentEvent::ToolsListed(servers) => {
                for server in servers {
                    if self.listed.contains(&server.label) {
                        continue;
                    }
                    self.close_message(ItemStatus::Completed, &mut out);
                    let index = self.add(
                        OutputItem::McpListTools {
                            id: new_id("mcpl"),
                            server_label: server.label.clone(),
                            tools: Vec::new(),
                        },
                        &mut out,
                    );
                    out.push(ResponseEvent::ListToolsInProgress(self.item_ref(index)));
                    if let OutputItem::McpListTools { tools, .. } = &mut self.object.output[index] {
                        *tools = server
                            .tools
                            .into_iter()
                            .map(|t| ListedTool {
                                name: t.tool,
                                description: t.description,
                                input_schema: t.input_schema,
                            })
                            .collect();
                    }
                    out.push(ResponseEvent::ListToolsCompleted(self.item_ref(index)));
                    self.done(index, &mut out);
                    self.listed.push(server.label);
                }
            }
            AgentEvent::Content(text) => self.text(text, &mut out),
            AgentEvent::ToolCallStarted {
                id,
                server,
                tool,
                arguments,
                ..
            } => {
                self.close_message(ItemStatus::Completed, &mut out);
                let approval_request_id = self.approved.contains(&id).then(|| id.clone());
                let index = self.add(
                    OutputItem::McpCall {
                        id: format!("mcp_{id}"),
                        server_label: server,
                        name: tool,
                        arguments: String::new(),
                        output: None,
                        error: None,
                        status: ItemStatus::InProgress,
                        approval_request_id,
                    },
                    &mut out,
                );
                out.push(ResponseEvent::McpArgumentsDelta(
                    self.text_ref(index, arguments.clone()),
                ));
                out.push(ResponseEvent::McpArgumentsDone(
                    self.text_ref(index, arguments.clone()),
                ));
                if let OutputItem::McpCall { arguments: a, .. } = &mut self.object.output[index] {
                    *a = arguments;
                }
                out.push(ResponseEvent::McpCallInProgress(self.item_ref(index)));
                self.calls.insert(id, index);
            }
            AgentEvent::ToolCallFinished { id, ok, result, .. } => {
                if let Some(&index) = self.calls.get(&id) {
                    if let OutputItem::McpCall {
                        output,
                        error,
                        status,
                        ..
                    } = &mut self.object.output[index]
                    {
                        if ok {
                            *output = Some(result);
                            *status = ItemStatus::Completed;
                        } else {
                            *error = Some(result);
                            *status = ItemStatus::Failed;
                        }
                    }
                    out.push(if ok {
                        ResponseEvent::McpCallCompleted(self.item_ref(index))
                    } else {
                        ResponseEvent::McpCallFailed(self.item_ref(index))
                    });
                    self.done(index, &mut out);
                }
            }
            AgentEvent::ApprovalRequired(request) => {
                self.close_message(ItemStatus::Completed, &mut out);
                let index = self.add(
                    OutputItem::McpApprovalRequest {
                        id: request.id,
                        server_label: request.server_label,
                        name: request.name,
                        arguments: request.arguments,
                    },
                    &mut out,
                );
                self.done(index, &mut out);
            }
            AgentEvent::ClientToolCall(call) => {
                self.close_message(ItemStatus::Completed, &mut out);
                let index = self.add(
                    OutputItem::FunctionCall {
                        id: format!("fc_{}", call.id),
                        call_id: call.id,
                        name: call.name,
                        arguments: String::new(),
                        status: ItemStatus::InProgress,
                    },
                    &mut out,
                );
                out.push(ResponseEvent::FunctionArgumentsDelta(
                    self.text_ref(index, call.arguments.clone()),
                ));
                out.push(ResponseEvent::FunctionArgumentsDone(
                    self.text_ref(index, call.arguments.clone()),
                ));
                if let OutputItem::FunctionCall {
                    arguments, status, ..
                } = &mut self.object.output[index]
                {
                    *arguments = call.arguments;
                    *status = ItemStatus::Completed;
                }
                self.done(index, &mut out);
            }
            AgentEvent::Usage(u) => self.object.usage = Some(usage(&u)),
            AgentEvent::Done(response) => {
                let (status, reason) = match &response.finish {
                    Finish::Length => (ResponseStatus::Incomplete, Some("max_output_tokens")),
                    Finish::ContentFilter => (ResponseStatus::Incomplete, Some("content_filter")),
                    Finish::IterationLimit => (ResponseStatus::Incomplete, Some("max_messages")),
                    Finish::Stop | Finish::ToolCalls | Finish::Other(_) => {
                        (ResponseStatus::Completed, None)
                    }
                };
                let item_status = if status == ResponseStatus::Completed {
                    ItemStatus::Completed
                } else {
                    ItemStatus::Incomplete
                };
                self.close_message(item_status, &mut out);
                self.object.usage = Some(usage(&response.usage));
                self.object.status = status;
                self.object.incomplete_reason = reason.map(str::to_string);
                if status == ResponseStatus::Completed {
                    self.object.completed_at = Some(super::now_secs());
                }
                let finished =
                    self.finished(response.session_id.clone(), Some(response.session_len));
                out.push(if status == ResponseStatus::Completed {
                    ResponseEvent::Completed(Box::new(self.object.clone()))
                } else {
                    ResponseEvent::Incomplete(Box::new(self.object.clone()))
                });
                return (out, Some(finished));
            }
        }
        (out, None)
    }

    fn finished(&self, session: Option<String>, session_len: Option<usize>) -> Finished {
        Finished {
            object: self.object.clone(),
            store: self.object.store,
            session,
            session_len,
            listed: self.listed.clone(),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::{
        agent::{AgentResponse, ListedServer, approvals::ApprovalRequest},
        mcp::ToolSpec,
        model::{Message, Role, ToolCall, Usage},
    };

    fn object() -> ResponseObject {
        ResponseObject {
            id: "resp_1".into(),
            created_at: 0,
            completed_at: None,
            status: ResponseStatus::InProgress,
            model: "m".into(),
            output: Vec::new(),
            usage: None,
            previous_response_id: None,
            incomplete_reason: None,
            error: None,
            metadata: BTreeMap::new(),
            store: true,
            echo: Vec::new(),
        }
    }

    fn done(finish: Finish) -> AgentEvent {
        AgentEvent::Done(Box::new(AgentResponse {
            id: "chatcmpl-1".into(),
            model: "m".into(),
            session_id: Some("s".into()),
            created: 0,
            message: Message::new(Role::Assistant, ""),
            finish,
            usage: TurnUsage {
                usage: Usage {
                    prompt_tokens: 7,
                    completion_tokens: 3,
                    total_tokens: 10,
                    prompt_details: Some(crate::model::PromptTokensDetails {
                        cached_tokens: 4,
                        audio_tokens: 0,
                    }),
                    completion_details: None,
                },
                estimated: false,
            },
            executed: Vec::new(),
            new_messages: Vec::new(),
            approval_requests: Vec::new(),
            session_len: 6,
            refusal: None,
        }))
    }

    fn spec(tool: &str) -> ToolSpec {
        ToolSpec {
            name: tool.into(),
            server: "fx".into(),
            tool: tool.into(),
            description: String::new(),
            input_schema: serde_json::json!({"type": "object"}),
        }
    }

    fn names(events: &[ResponseEvent]) -> Vec<&'static str> {
        events
            .iter()
            .map(|e| match e {
                ResponseEvent::ItemAdded { .. } => "added",
                ResponseEvent::ItemDone { .. } => "done",
                ResponseEvent::PartAdded(_) => "part+",
                ResponseEvent::PartDone(_) => "part-",
                ResponseEvent::TextDelta(_) => "delta",
                ResponseEvent::TextDone(_) => "text",
                ResponseEvent::ListToolsInProgress(_) => "list…",
                ResponseEvent::ListToolsCompleted(_) => "listed",
                ResponseEvent::McpCallInProgress(_) => "call…",
                ResponseEvent::McpCallCompleted(_) => "called",
                ResponseEvent::McpCallFailed(_) => "call failed",
                ResponseEvent::McpArgumentsDelta(_) => "args",
                ResponseEvent::McpArgumentsDone(_) => "args done",
                ResponseEvent::FunctionArgumentsDelta(_) => "fargs",
                ResponseEvent::FunctionArgumentsDone(_) => "fargs done",
                ResponseEvent::Completed(_) => "completed",
                ResponseEvent::Incomplete(_) => "incomplete",
                ResponseEvent::Failed(..) => "failed",
                ResponseEvent::Created(_) => "created",
                ResponseEvent::InProgress(_) => "in progress",
            })
            .collect()
    }

    fn feed(a: &mut Assembler, events: Vec<AgentEvent>) -> (Vec<ResponseEvent>, Option<Finished>) {
        let mut out = Vec::new();
        let mut finished = None;
        for e in events {
            let (events, f) = a.push(Ok(e));
            out.extend(events);
            finished = finished.or(f);
        }
        (out, finished)
    }

    #[test]
    fn rounds_become_items_in_order_with_each_rounds_text_its_own_message() {
        let mut a = Assembler::new(object(), vec!["seen".into()], HashSet::new());
        let (events, finished) = feed(
            &mut a,
            vec![
                AgentEvent::ToolsListed(vec![
                    ListedServer {
                        label: "fx".into(),
                        tools: vec![spec("add")],
                    },
                    ListedServer {
                        label: "seen".into(),
                        tools: vec![spec("x")],
                    },
                ]),
                AgentEvent::Content("Let me add.".into()),
                AgentEvent::ToolCallStarted {
                    id: "c1".into(),
                    name: "add".into(),
                    server: "fx".into(),
                    tool: "add".into(),
                    arguments: "{}".into(),
                },
                AgentEvent::ToolCallFinished {
                    id: "c1".into(),
                    name: "add".into(),
                    ok: false,
                    result: "boom".into(),
                    duration: std::time::Duration::ZERO,
                },
                AgentEvent::Content(format!("{ROUND_SEPARATOR}It failed.")),
                done(Finish::Stop),
            ],
        );
        assert_eq!(
            names(&events),
            [
                "added",
                "list…",
                "listed",
                "done", // mcp_list_tools of fx only
                "added",
                "part+",
                "delta",
                "text",
                "part-",
                "done", // the first round's text
                "added",
                "args",
                "args done",
                "call…",
                "call failed",
                "done",
                "added",
                "part+",
                "delta",
                "text",
                "part-",
                "done",
                "completed",
            ]
        );
        let finished = finished.unwrap();
        let kinds: Vec<_> = finished
            .object
            .output
            .iter()
            .map(|i| match i {
                OutputItem::McpListTools { server_label, .. } => format!("list {server_label}"),
                OutputItem::Message { text, .. } => format!("text {text}"),
                OutputItem::McpCall { error, status, .. } => format!("call {error:?} {status:?}"),
                other => format!("{other:?}"),
            })
            .collect();
        assert_eq!(
            kinds,
            [
                "list fx",
                "text Let me add.",
                "call Some(\"boom\") Failed",
                "text It failed."
            ]
        );
        assert_eq!(finished.listed, ["seen", "fx"]);
        assert_eq!(finished.session_len, Some(6));
        let usage = finished.object.usage.unwrap();
        assert_eq!(
            (
                usage.total_tokens,
                usage.cached_tokens,
                usage.reasoning_tokens
            ),
            (10, 4, 0)
        );
        assert_eq!(finished.object.status, ResponseStatus::Completed);
    }

    #[test]
    fn approvals_client_calls_limits_and_errors() {
        let mut a = Assembler::new(object(), Vec::new(), HashSet::from(["c0".to_string()]));
        let (_, finished) = feed(
            &mut a,
            vec![
                AgentEvent::ToolCallStarted {
                    id: "c0".into(),
                    name: "add".into(),
                    server: "fx".into(),
                    tool: "add".into(),
                    arguments: "{}".into(),
                },
                AgentEvent::ApprovalRequired(ApprovalRequest {
                    id: "c1".into(),
                    server_label: "fx".into(),
                    name: "rm".into(),
                    function_name: "rm".into(),
                    arguments: "{}".into(),
                    expires_at_ms: 0,
                }),
                AgentEvent::ClientToolCall(ToolCall {
                    id: "c2".into(),
                    name: "f".into(),
                    arguments: "{\"x\":1}".into(),
                }),
                done(Finish::IterationLimit),
            ],
        );
        let object = finished.unwrap().object;
        assert!(matches!(
            &object.output[0],
            OutputItem::McpCall { approval_request_id: Some(id), status: ItemStatus::InProgress, .. } if id == "c0"
        ));
        assert!(
            matches!(&object.output[1], OutputItem::McpApprovalRequest { id, .. } if id == "c1")
        );
        assert!(matches!(
            &object.output[2],
            OutputItem::FunctionCall { call_id, arguments, status: ItemStatus::Completed, .. }
                if call_id == "c2" && arguments == "{\"x\":1}"
        ));
        assert_eq!(object.status, ResponseStatus::Incomplete);
        assert_eq!(object.incomplete_reason.as_deref(), Some("max_messages"));

        let mut a = Assembler::new(object.clone(), Vec::new(), HashSet::new());
        let (_, _) = a.push(Ok(AgentEvent::Content("partial".into())));
        let (events, finished) = a.push(Err(CoreError::Cancelled));
        assert!(
            matches!(events.last(), Some(ResponseEvent::Failed(_, e)) if matches!(**e, CoreError::Cancelled))
        );
        let object = finished.unwrap().object;
        assert_eq!(object.status, ResponseStatus::Failed);
        assert_eq!(object.error.unwrap().code, "server_error");
        assert!(matches!(
            object.output.last(),
            Some(OutputItem::Message { status: ItemStatus::Incomplete, text, .. }) if text == "partial"
        ));
    }
}
