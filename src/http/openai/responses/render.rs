//! OpenAI's Responses shapes rendered from the service's proto: the `response` object,
//! its output and input items, and each stream event as its `type` and JSON data.

use serde_json::{Map, Value, json};

use crate::pb::{self, output_item::Item, response_event::Event};

fn status_or(s: &str, default: &'static str) -> Value {
    Value::String(if s.is_empty() {
        default.to_string()
    } else {
        s.to_string()
    })
}

fn struct_json(s: Option<&prost_types::Struct>) -> Value {
    s.cloned().map_or_else(
        || json!({"type": "object", "properties": {}}),
        pb::json::struct_to_json,
    )
}

pub fn output_item(item: &pb::OutputItem) -> Value {
    match &item.item {
        Some(Item::McpListTools(l)) => json!({
            "type": "mcp_list_tools", "id": l.id, "server_label": l.server_label,
            "tools": l.tools.iter().map(|t| json!({
                "name": t.name, "description": t.description,
                "input_schema": struct_json(t.input_schema.as_ref()), "annotations": null,
            })).collect::<Vec<_>>(),
            "error": l.error,
        }),
        Some(Item::McpCall(c)) => json!({
            "type": "mcp_call", "id": c.id, "server_label": c.server_label, "name": c.name,
            "arguments": c.arguments, "output": c.output,
            "error": c.error.as_ref().map(|e| json!({
                "type": "mcp_tool_execution_error",
                "content": [{"type": "text", "text": e}],
            })),
            "status": status_or(&c.status, "completed"),
            "approval_request_id": c.approval_request_id,
        }),
        Some(Item::McpApprovalRequest(a)) => json!({
            "type": "mcp_approval_request", "id": a.id, "server_label": a.server_label,
            "name": a.name, "arguments": a.arguments,
        }),
        Some(Item::FunctionCall(f)) => json!({
            "type": "function_call", "id": f.id, "call_id": f.call_id, "name": f.name,
            "arguments": f.arguments, "status": status_or(&f.status, "completed"),
        }),
        Some(Item::Message(m)) => json!({
            "type": "message", "id": m.id, "role": "assistant",
            "status": status_or(&m.status, "completed"),
            "content": if m.status == "in_progress" && m.text.is_empty() {
                Vec::new()
            } else {
                vec![text_part(&m.text)]
            },
        }),
        None => Value::Null,
    }
}

fn text_part(text: &str) -> Value {
    json!({"type": "output_text", "text": text, "annotations": [], "logprobs": []})
}

fn tool_json(t: &pb::ToolDefinition) -> Value {
    json!({
        "type": "function", "name": t.name, "description": t.description,
        "parameters": t.parameters.clone().map(pb::json::struct_to_json),
        "strict": t.strict.unwrap_or(false),
    })
}

fn mcp_json(s: &pb::McpServerTool) -> Value {
    let mut o = Map::new();
    o.insert("type".into(), "mcp".into());
    o.insert("server_label".into(), s.server_label.clone().into());
    if let Some(url) = &s.server_url {
        o.insert("server_url".into(), url.clone().into());
    }
    if let Some(allowed) = &s.allowed_tools {
        o.insert("allowed_tools".into(), json!(allowed.tool_names));
    }
    // Headers are credentials: never echoed.
    let policy = s.require_approval.clone().unwrap_or_default();
    let approval = match policy.mode() {
        pb::ApprovalMode::Never if policy.always.is_empty() => json!("never"),
        pb::ApprovalMode::Never => json!({"always": {"tool_names": policy.always}}),
        _ if policy.never.is_empty() => json!("always"),
        _ => json!({"never": {"tool_names": policy.never}}),
    };
    o.insert("require_approval".into(), approval);
    if let Some(d) = &s.server_description {
        o.insert("server_description".into(), d.clone().into());
    }
    Value::Object(o)
}

fn tool_choice_json(c: Option<&pb::ToolChoice>) -> Value {
    match c.and_then(|c| c.choice.as_ref()) {
        Some(pb::tool_choice::Choice::Function(name)) => json!({"type": "function", "name": name}),
        Some(pb::tool_choice::Choice::Mode(m)) => match pb::ToolChoiceMode::try_from(*m) {
            Ok(pb::ToolChoiceMode::None) => json!("none"),
            Ok(pb::ToolChoiceMode::Required) => json!("required"),
            _ => json!("auto"),
        },
        None => json!("auto"),
    }
}

fn text_config(p: &pb::GenerationParams) -> Value {
    use pb::response_format::Format;
    let format = match p.response_format.as_ref().and_then(|f| f.format.as_ref()) {
        Some(Format::JsonObject(_)) => json!({"type": "json_object"}),
        Some(Format::JsonSchema(s)) => json!({
            "type": "json_schema", "name": s.name, "description": s.description,
            "schema": s.schema.clone().map(pb::json::struct_to_json), "strict": s.strict,
        }),
        _ => json!({"type": "text"}),
    };
    json!({ "format": format })
}

/// The `response` object.
pub fn response(r: &pb::ResponseObject) -> Value {
    let params = r.params.clone().unwrap_or_default();
    let mut tools: Vec<Value> = r.tools.iter().map(tool_json).collect();
    tools.extend(r.mcp_servers.iter().map(mcp_json));
    let output_text: String = r
        .output
        .iter()
        .filter_map(|i| match &i.item {
            Some(Item::Message(m)) => Some(m.text.as_str()),
            _ => None,
        })
        .collect();
    let usage = r.usage.as_ref().map(|u| {
        json!({
            "input_tokens": u.input_tokens,
            "input_tokens_details": {"cached_tokens": u.cached_tokens, "cache_write_tokens": 0},
            "output_tokens": u.output_tokens,
            "output_tokens_details": {"reasoning_tokens": u.reasoning_tokens},
            "total_tokens": u.total_tokens,
        })
    });
    json!({
        "id": r.id,
        "object": "response",
        "created_at": r.created_at,
        "completed_at": r.completed_at,
        "status": status_or(&r.status, "in_progress"),
        "model": r.model,
        "output": r.output.iter().map(output_item).collect::<Vec<_>>(),
        "output_text": output_text,
        "usage": usage,
        "error": r.error.as_ref().map(|e| json!({"code": e.code, "message": e.message})),
        "incomplete_details": r.incomplete_reason.as_ref().map(|reason| json!({"reason": reason})),
        "previous_response_id": r.previous_response_id,
        "instructions": r.instructions,
        "metadata": r.metadata,
        "tools": tools,
        "tool_choice": tool_choice_json(r.tool_choice.as_ref()),
        "parallel_tool_calls": params.parallel_tool_calls.unwrap_or(true),
        "temperature": params.temperature,
        "top_p": params.top_p,
        "max_output_tokens": params.max_tokens,
        "text": text_config(&params),
        "store": r.store,
        "user": r.user,
        "background": false,
        "truncation": "disabled",
    })
}

/// A stored input item.
pub fn input_item(item: &pb::InputItem) -> Value {
    use pb::input_item::Item as In;
    match &item.item {
        Some(In::Message(m)) => {
            let role = match pb::Role::try_from(m.role) {
                Ok(pb::Role::System) => "system",
                Ok(pb::Role::Developer) => "developer",
                Ok(pb::Role::Assistant) => "assistant",
                _ => "user",
            };
            let part = if role == "assistant" {
                text_part(&m.content)
            } else {
                json!({"type": "input_text", "text": m.content})
            };
            json!({"type": "message", "id": item.id, "role": role, "status": "completed", "content": [part]})
        }
        Some(In::FunctionCall(f)) => json!({
            "type": "function_call", "id": item.id, "call_id": f.call_id, "name": f.name,
            "arguments": f.arguments, "status": "completed",
        }),
        Some(In::FunctionCallOutput(o)) => json!({
            "type": "function_call_output", "id": item.id, "call_id": o.call_id,
            "output": o.output, "status": "completed",
        }),
        Some(In::McpApprovalResponse(a)) => json!({
            "type": "mcp_approval_response", "id": item.id,
            "approval_request_id": a.approval_request_id, "approve": a.approve, "reason": a.reason,
        }),
        None => Value::Null,
    }
}

/// A stream event: its SSE `event` name and its data.
pub fn event(e: &pb::ResponseEvent) -> Option<(&'static str, Value)> {
    let seq = e.sequence_number;
    let item_ref = |kind: &'static str, r: &pb::ItemEvent| {
        (
            kind,
            json!({"type": kind, "item_id": r.item_id, "output_index": r.output_index, "sequence_number": seq}),
        )
    };
    let text = |kind: &'static str, t: &pb::TextEvent, key: &str| {
        let mut o = json!({"type": kind, "item_id": t.item_id, "output_index": t.output_index, "sequence_number": seq});
        o[key] = Value::String(t.text.clone());
        (kind, o)
    };
    let object = |kind: &'static str, r: &pb::ResponseObject| {
        (
            kind,
            json!({"type": kind, "response": response(r), "sequence_number": seq}),
        )
    };
    let item = |kind: &'static str, i: &pb::OutputItemEvent| {
        (
            kind,
            json!({
                "type": kind, "output_index": i.output_index,
                "item": i.item.as_ref().map_or(Value::Null, output_item), "sequence_number": seq,
            }),
        )
    };
    let part = |kind: &'static str, t: &pb::TextEvent| {
        (
            kind,
            json!({
                "type": kind, "item_id": t.item_id, "output_index": t.output_index,
                "content_index": t.content_index, "part": text_part(&t.text), "sequence_number": seq,
            }),
        )
    };
    let output_text = |kind: &'static str, t: &pb::TextEvent, key: &str| {
        let mut o = json!({
            "type": kind, "item_id": t.item_id, "output_index": t.output_index,
            "content_index": t.content_index, "logprobs": [], "sequence_number": seq,
        });
        o[key] = Value::String(t.text.clone());
        (kind, o)
    };
    Some(match e.event.as_ref()? {
        Event::Created(r) => object("response.created", r),
        Event::InProgress(r) => object("response.in_progress", r),
        Event::Completed(r) => object("response.completed", r),
        Event::Failed(r) => object("response.failed", r),
        Event::Incomplete(r) => object("response.incomplete", r),
        Event::OutputItemAdded(i) => item("response.output_item.added", i),
        Event::OutputItemDone(i) => item("response.output_item.done", i),
        Event::ContentPartAdded(t) => part("response.content_part.added", t),
        Event::ContentPartDone(t) => part("response.content_part.done", t),
        Event::OutputTextDelta(t) => output_text("response.output_text.delta", t, "delta"),
        Event::OutputTextDone(t) => output_text("response.output_text.done", t, "text"),
        Event::McpListToolsInProgress(r) => item_ref("response.mcp_list_tools.in_progress", r),
        Event::McpListToolsCompleted(r) => item_ref("response.mcp_list_tools.completed", r),
        Event::McpListToolsFailed(r) => item_ref("response.mcp_list_tools.failed", r),
        Event::McpCallInProgress(r) => item_ref("response.mcp_call.in_progress", r),
        Event::McpCallCompleted(r) => item_ref("response.mcp_call.completed", r),
        Event::McpCallFailed(r) => item_ref("response.mcp_call.failed", r),
        Event::McpCallArgumentsDelta(t) => text("response.mcp_call_arguments.delta", t, "delta"),
        Event::McpCallArgumentsDone(t) => text("response.mcp_call_arguments.done", t, "arguments"),
        Event::FunctionCallArgumentsDelta(t) => {
            text("response.function_call_arguments.delta", t, "delta")
        }
        Event::FunctionCallArgumentsDone(t) => {
            text("response.function_call_arguments.done", t, "arguments")
        }
        Event::Error(err) => (
            "error",
            json!({"type": "error", "code": err.code, "message": err.message, "param": null, "sequence_number": seq}),
        ),
    })
}
