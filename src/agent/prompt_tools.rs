//! Prompt-mode tool calling, for models without function calling: the tools are described
//! in the system prompt, the model answers `{"tool": …, "arguments": …}`, and the reply is
//! parsed robustly (bare JSON, a fenced code block, or JSON after prose). Prose that merely
//! mentions JSON is not a call: the object must name a known tool and end the reply.

use serde_json::Value;

use crate::{
    mcp::ToolSpec,
    model::{Message, Role, ToolDef},
};

/// A call found in a reply.
#[derive(Debug, Clone, PartialEq)]
pub struct PromptCall {
    pub tool: String,
    pub arguments: Value,
}

/// The instructions appended to the system prompt.
pub fn instructions(mcp: &[ToolSpec], client: &[ToolDef]) -> String {
    let mut out = String::from("You can use these tools:\n");
    let mut describe = |name: &str, description: &str, schema: &Value| {
        out.push_str(&format!(
            "\n- {name}: {description}\n  arguments (JSON Schema): {schema}\n"
        ));
    };
    for t in mcp {
        describe(&t.name, &t.description, &t.input_schema);
    }
    for t in client {
        describe(&t.name, &t.description, &t.parameters);
    }
    out.push_str(
        "\nTo use a tool, reply with only this JSON object and nothing else:\n\
         {\"tool\": \"<tool name>\", \"arguments\": {<arguments>}}\n\
         The tool's result will follow in the next message; then answer the user in plain \
         language. When no tool is needed, answer directly.",
    );
    out
}

/// The text sent back to the model with a tool's result.
pub fn result_message(tool: &str, ok: bool, text: &str) -> String {
    if ok {
        format!("Result of the tool {tool}:\n{text}")
    } else {
        format!("The tool {tool} failed:\n{text}")
    }
}

/// A conversation in the form a prompt-mode upstream understands: an assistant message's
/// `tool_calls` become the JSON calls it would have written, and each `tool` result (a
/// client's answer to a call) becomes a user message, as the loop writes its own. Such an
/// upstream never saw a tool call, so it would refuse (or misread) the native forms.
pub fn to_prompt_form(messages: &mut [Message]) {
    let mut names = std::collections::HashMap::new();
    for m in messages.iter_mut() {
        if m.role == Role::Assistant && !m.tool_calls.is_empty() {
            let mut text = std::mem::take(&mut m.content);
            for call in std::mem::take(&mut m.tool_calls) {
                let arguments: Value = serde_json::from_str(&call.arguments)
                    .unwrap_or(Value::String(call.arguments.clone()));
                if !text.is_empty() {
                    text.push('\n');
                }
                text.push_str(
                    &serde_json::json!({"tool": call.name, "arguments": arguments}).to_string(),
                );
                names.insert(call.id, call.name);
            }
            m.content = text;
        } else if m.role == Role::Tool {
            let id = m.tool_call_id.take().unwrap_or_default();
            let tool = names.get(&id).map_or("requested", String::as_str);
            m.content = result_message(tool, true, &m.content);
            m.role = Role::User;
        }
    }
}

/// Finds a tool call in `reply`; `known` says which tool names exist.
pub fn parse(reply: &str, known: impl Fn(&str) -> bool) -> Option<PromptCall> {
    let trimmed = reply.trim();
    // Try every '{' as the start of the call object; the object must end the reply
    // (optionally followed by a closing code fence).
    for (start, _) in trimmed.match_indices('{') {
        let candidate = &trimmed[start..];
        let mut stream = serde_json::Deserializer::from_str(candidate).into_iter::<Value>();
        let Some(Ok(value)) = stream.next() else {
            continue;
        };
        let rest = candidate[stream.byte_offset()..].trim();
        if !(rest.is_empty() || rest == "```") {
            continue;
        }
        if let Some(call) = as_call(value, &known) {
            return Some(call);
        }
    }
    None
}

fn as_call(value: Value, known: &impl Fn(&str) -> bool) -> Option<PromptCall> {
    let Value::Object(mut map) = value else {
        return None;
    };
    let tool = match map.remove("tool").or_else(|| map.remove("name")) {
        Some(Value::String(s)) => s,
        _ => return None,
    };
    if !known(&tool) {
        return None;
    }
    let arguments = match map.remove("arguments").or_else(|| map.remove("args")) {
        None | Some(Value::Null) => Value::Object(Default::default()),
        Some(Value::String(s)) => serde_json::from_str(&s).ok()?,
        Some(v @ Value::Object(_)) => v,
        Some(_) => return None,
    };
    Some(PromptCall { tool, arguments })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn known(name: &str) -> bool {
        matches!(name, "list_tables" | "read_query")
    }

    #[test]
    fn bare_json_is_a_call() {
        let c = parse(
            r#"{"tool": "read_query", "arguments": {"query": "SELECT 1"}}"#,
            known,
        )
        .unwrap();
        assert_eq!(c.tool, "read_query");
        assert_eq!(c.arguments, json!({"query": "SELECT 1"}));
    }

    #[test]
    fn fenced_block_is_a_call() {
        let reply = "```json\n{\"tool\": \"list_tables\", \"arguments\": {}}\n```";
        assert_eq!(parse(reply, known).unwrap().tool, "list_tables");
    }

    #[test]
    fn json_after_prose_is_a_call() {
        let reply = "Let me look at the tables first.\n\n{\"tool\": \"list_tables\"}";
        let c = parse(reply, known).unwrap();
        assert_eq!(c.tool, "list_tables");
        assert_eq!(c.arguments, json!({}));
    }

    #[test]
    fn string_arguments_are_parsed() {
        let c = parse(
            r#"{"tool": "read_query", "arguments": "{\"query\": \"x\"}"}"#,
            known,
        )
        .unwrap();
        assert_eq!(c.arguments, json!({"query": "x"}));
    }

    #[test]
    fn prose_that_mentions_json_is_not_a_call() {
        for reply in [
            "You could send {\"tool\": \"list_tables\"} to list them, but I already know the answer.",
            "The config is {\"a\": 1}.",
            "JSON objects look like {\"key\": \"value\"}",
            "{\"tool\": \"format_disk\", \"arguments\": {}}",
            "Just prose, no braces.",
            "{\"tool\": 5}",
        ] {
            assert_eq!(parse(reply, known), None, "{reply}");
        }
    }
}
