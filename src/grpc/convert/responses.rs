//! The Responses API's proto ↔ core: `CreateResponseRequest` → `ResponsesRequest`
//! (checked field by field), and responses, their items and events back. The request
//! fields a response echoes (instructions, tools, tool choice, params, user) travel through
//! the core as an encoded `ResponseObject` holding only those, stored with the response.

use prost::Message as _;

use super::request::{invalid, params, request_server, tool_choice, tool_def};
use crate::{
    agent::responses::{
        InputEntry, InputItem, InputRole, ItemStatus, OutputItem, ResponseEvent, ResponseObject,
        ResponsesRequest, TextRef,
    },
    error::CoreError,
    pb,
};

/// OpenAI's limits on `metadata`.
const MAX_METADATA: usize = 16;
const MAX_METADATA_KEY: usize = 64;
const MAX_METADATA_VALUE: usize = 512;

fn input_entry(item: pb::InputItem, i: usize) -> Result<InputEntry, CoreError> {
    let field = |f: &str| format!("input[{i}].{f}");
    let Some(kind) = item.item else {
        return Err(invalid(format!("input[{i}]"), "has no item"));
    };
    let (prefix, entry) = match kind {
        pb::input_item::Item::Message(m) => {
            let role = match pb::Role::try_from(m.role) {
                Ok(pb::Role::User) => InputRole::User,
                Ok(pb::Role::System) => InputRole::System,
                Ok(pb::Role::Developer) => InputRole::Developer,
                Ok(pb::Role::Assistant) => InputRole::Assistant,
                Ok(pb::Role::Tool) => {
                    return Err(invalid(
                        field("role"),
                        "a tool result is a function_call_output item",
                    ));
                }
                _ => return Err(invalid(field("role"), "is required")),
            };
            (
                "msg",
                InputItem::Message {
                    role,
                    text: m.content,
                },
            )
        }
        pb::input_item::Item::FunctionCall(c) => (
            "fc",
            InputItem::FunctionCall {
                call_id: c.call_id,
                name: c.name,
                arguments: c.arguments,
            },
        ),
        pb::input_item::Item::FunctionCallOutput(o) => (
            "fco",
            InputItem::FunctionCallOutput {
                call_id: o.call_id,
                output: o.output,
            },
        ),
        pb::input_item::Item::McpApprovalResponse(a) => (
            "mcpa",
            InputItem::McpApprovalResponse {
                approval_request_id: a.approval_request_id,
                approve: a.approve,
                reason: a.reason,
            },
        ),
    };
    let id = if item.id.is_empty() {
        format!("{prefix}_{}", uuid::Uuid::new_v4().simple())
    } else {
        item.id
    };
    Ok(InputEntry { id, item: entry })
}

/// Checks and converts a `CreateResponseRequest`.
pub fn responses_request(r: pb::CreateResponseRequest) -> Result<ResponsesRequest, CoreError> {
    let input = r
        .input
        .into_iter()
        .enumerate()
        .map(|(i, item)| input_entry(item, i))
        .collect::<Result<Vec<_>, _>>()?;
    if r.metadata.len() > MAX_METADATA {
        return Err(invalid(
            "metadata",
            format!(
                "has {} pairs; at most {MAX_METADATA} are allowed",
                r.metadata.len()
            ),
        ));
    }
    for (k, v) in &r.metadata {
        if k.chars().count() > MAX_METADATA_KEY {
            return Err(invalid(
                format!("metadata.{k}"),
                format!("keys are at most {MAX_METADATA_KEY} characters"),
            ));
        }
        if v.chars().count() > MAX_METADATA_VALUE {
            return Err(invalid(
                format!("metadata.{k}"),
                format!("values are at most {MAX_METADATA_VALUE} characters"),
            ));
        }
    }
    let client_tools = r
        .tools
        .iter()
        .cloned()
        .enumerate()
        .map(|(i, t)| tool_def(t, &super::request::Indexed("tools", i)))
        .collect::<Result<Vec<_>, _>>()?;
    let mut mcp_servers = Vec::with_capacity(r.mcp_servers.len());
    for (i, s) in r.mcp_servers.iter().cloned().enumerate() {
        let server = request_server(s, &format!("mcp_servers[{i}]"))?;
        if mcp_servers
            .iter()
            .any(|o: &crate::agent::RequestServer| o.label == server.label)
        {
            return Err(invalid(
                format!("{}.server_label", server.field),
                format!("{:?} is named twice", server.label),
            ));
        }
        mcp_servers.push(server);
    }
    let choice = tool_choice(r.tool_choice.clone())?;
    let gen_params = params(r.params.clone().unwrap_or_default(), r.user.clone())?;
    if let Some(previous) = &r.previous_response_id
        && previous.is_empty()
    {
        return Err(invalid("previous_response_id", "must not be empty"));
    }
    let echo = pb::ResponseObject {
        instructions: r.instructions.clone(),
        tools: r.tools,
        mcp_servers: r.mcp_servers,
        tool_choice: r.tool_choice,
        params: r.params,
        user: r.user,
        ..Default::default()
    }
    .encode_to_vec();
    Ok(ResponsesRequest {
        model: Some(r.model).filter(|m| !m.is_empty()),
        input,
        instructions: r.instructions,
        client_tools,
        mcp_servers,
        tool_choice: choice,
        params: gen_params,
        store: r.store.unwrap_or(true),
        previous_response_id: r.previous_response_id,
        metadata: r.metadata.into_iter().collect(),
        echo,
        access: None,
    })
}

fn status(s: ItemStatus) -> String {
    s.as_str().to_string()
}

pub fn output_item_to_pb(item: OutputItem) -> pb::OutputItem {
    use pb::output_item::Item;
    let item = match item {
        OutputItem::McpListTools {
            id,
            server_label,
            tools,
        } => Item::McpListTools(pb::McpListTools {
            id,
            server_label,
            tools: tools
                .into_iter()
                .map(|t| pb::McpListedTool {
                    name: t.name,
                    description: t.description,
                    input_schema: super::response::json_struct(&t.input_schema),
                })
                .collect(),
            error: None,
        }),
        OutputItem::McpCall {
            id,
            server_label,
            name,
            arguments,
            output,
            error,
            status: s,
            approval_request_id,
        } => Item::McpCall(pb::McpCall {
            id,
            server_label,
            name,
            arguments,
            output,
            error,
            status: status(s),
            approval_request_id,
        }),
        OutputItem::McpApprovalRequest {
            id,
            server_label,
            name,
            arguments,
        } => Item::McpApprovalRequest(pb::McpApprovalRequest {
            id,
            server_label,
            name,
            arguments,
        }),
        OutputItem::FunctionCall {
            id,
            call_id,
            name,
            arguments,
            status: s,
        } => Item::FunctionCall(pb::FunctionCallItem {
            id,
            call_id,
            name,
            arguments,
            status: status(s),
        }),
        OutputItem::Message {
            id,
            text,
            status: s,
        } => Item::Message(pb::OutputMessage {
            id,
            text,
            status: status(s),
        }),
    };
    pb::OutputItem { item: Some(item) }
}

pub fn response_object_to_pb(o: ResponseObject) -> pb::ResponseObject {
    // The echoed request fields, as the edge encoded them (empty when unreadable).
    let mut out = pb::ResponseObject::decode(o.echo.as_slice()).unwrap_or_default();
    out.id = o.id;
    out.created_at = o.created_at;
    out.completed_at = o.completed_at;
    out.status = o.status.as_str().to_string();
    out.model = o.model;
    out.output = o.output.into_iter().map(output_item_to_pb).collect();
    out.usage = o.usage.map(|u| pb::ResponseUsage {
        input_tokens: u.input_tokens,
        output_tokens: u.output_tokens,
        total_tokens: u.total_tokens,
        estimated: u.estimated,
        cached_tokens: u.cached_tokens,
        reasoning_tokens: u.reasoning_tokens,
    });
    out.previous_response_id = o.previous_response_id;
    out.incomplete_reason = o.incomplete_reason;
    out.error = o.error.map(|e| pb::ResponseError {
        code: e.code,
        message: e.message,
    });
    out.metadata = o.metadata.into_iter().collect();
    out.store = o.store;
    out
}

fn text(t: TextRef) -> pb::TextEvent {
    pb::TextEvent {
        item_id: t.item_id,
        output_index: u32::try_from(t.index).unwrap_or(u32::MAX),
        content_index: u32::try_from(t.content_index).unwrap_or(u32::MAX),
        text: t.text,
    }
}

fn item_ref(r: crate::agent::responses::ItemRef) -> pb::ItemEvent {
    pb::ItemEvent {
        item_id: r.item_id,
        output_index: u32::try_from(r.index).unwrap_or(u32::MAX),
    }
}

/// A response event with its sequence number.
pub fn response_event_to_pb(event: ResponseEvent, sequence_number: u64) -> pb::ResponseEvent {
    use pb::response_event::Event;
    let item_event = |index: usize, item: OutputItem| pb::OutputItemEvent {
        output_index: u32::try_from(index).unwrap_or(u32::MAX),
        item: Some(output_item_to_pb(item)),
    };
    let event = match event {
        ResponseEvent::Created(o) => Event::Created(response_object_to_pb(*o)),
        ResponseEvent::InProgress(o) => Event::InProgress(response_object_to_pb(*o)),
        ResponseEvent::ItemAdded { index, item } => Event::OutputItemAdded(item_event(index, item)),
        ResponseEvent::ItemDone { index, item } => Event::OutputItemDone(item_event(index, item)),
        ResponseEvent::PartAdded(t) => Event::ContentPartAdded(text(t)),
        ResponseEvent::PartDone(t) => Event::ContentPartDone(text(t)),
        ResponseEvent::TextDelta(t) => Event::OutputTextDelta(text(t)),
        ResponseEvent::TextDone(t) => Event::OutputTextDone(text(t)),
        ResponseEvent::ListToolsInProgress(r) => Event::McpListToolsInProgress(item_ref(r)),
        ResponseEvent::ListToolsCompleted(r) => Event::McpListToolsCompleted(item_ref(r)),
        ResponseEvent::McpCallInProgress(r) => Event::McpCallInProgress(item_ref(r)),
        ResponseEvent::McpCallCompleted(r) => Event::McpCallCompleted(item_ref(r)),
        ResponseEvent::McpCallFailed(r) => Event::McpCallFailed(item_ref(r)),
        ResponseEvent::McpArgumentsDelta(t) => Event::McpCallArgumentsDelta(text(t)),
        ResponseEvent::McpArgumentsDone(t) => Event::McpCallArgumentsDone(text(t)),
        ResponseEvent::FunctionArgumentsDelta(t) => Event::FunctionCallArgumentsDelta(text(t)),
        ResponseEvent::FunctionArgumentsDone(t) => Event::FunctionCallArgumentsDone(text(t)),
        ResponseEvent::Completed(o) => Event::Completed(response_object_to_pb(*o)),
        ResponseEvent::Incomplete(o) => Event::Incomplete(response_object_to_pb(*o)),
        ResponseEvent::Failed(o, _) => Event::Failed(response_object_to_pb(*o)),
    };
    pb::ResponseEvent {
        sequence_number,
        event: Some(event),
    }
}

/// A stored input item as proto.
pub fn input_entry_to_pb(e: InputEntry) -> pb::InputItem {
    use pb::input_item::Item;
    let item = match e.item {
        InputItem::Message { role, text } => Item::Message(pb::Message {
            role: match role {
                InputRole::User => pb::Role::User,
                InputRole::System => pb::Role::System,
                InputRole::Developer => pb::Role::Developer,
                InputRole::Assistant => pb::Role::Assistant,
            }
            .into(),
            content: text,
            ..Default::default()
        }),
        InputItem::FunctionCall {
            call_id,
            name,
            arguments,
        } => Item::FunctionCall(pb::FunctionCallItem {
            id: e.id.clone(),
            call_id,
            name,
            arguments,
            status: "completed".into(),
        }),
        InputItem::FunctionCallOutput { call_id, output } => {
            Item::FunctionCallOutput(pb::FunctionCallOutput { call_id, output })
        }
        InputItem::McpApprovalResponse {
            approval_request_id,
            approve,
            reason,
        } => Item::McpApprovalResponse(pb::McpApprovalResponse {
            approval_request_id,
            approve,
            reason,
        }),
    };
    pb::InputItem {
        id: e.id,
        item: Some(item),
    }
}
