//! OpenAI's `type: "mcp"` tool in a chat completions request, and the approvals that answer
//! its calls, translated into the proto (`McpServerTool`, `Approval`). The field names and
//! shapes are OpenAI's: `server_label`, `server_url`, `headers`, `allowed_tools` (a list or
//! `{"tool_names": [...]}`), `require_approval` (`"always"`, `"never"` or
//! `{"always": {"tool_names": [...]}, "never": {"tool_names": [...]}}`), `server_description`.

use serde_json::{Map, Value};

use crate::{http::ApiError, pb};

fn bad(field: String, message: impl Into<String>) -> ApiError {
    ApiError::invalid(Some(field.clone()), format!("{field}: {}", message.into()))
}

fn names(v: &Value, field: String) -> Result<Vec<String>, ApiError> {
    let list = match v {
        Value::Array(_) => v,
        Value::Object(o) => o.get("tool_names").unwrap_or(&Value::Null),
        _ => &Value::Null,
    };
    let Value::Array(items) = list else {
        return Err(bad(
            field,
            "expected a list of tool names or {\"tool_names\": [...]}",
        ));
    };
    items
        .iter()
        .map(|n| n.as_str().map(str::to_string))
        .collect::<Option<Vec<_>>>()
        .ok_or_else(|| bad(field, "tool names must be strings"))
}

/// The `mcp` entry `tools[i]` (its fields besides `type`).
pub fn server(fields: &Map<String, Value>, i: usize) -> Result<pb::McpServerTool, ApiError> {
    let at = |k: &str| format!("tools[{i}].{k}");
    let string = |k: &str| -> Result<Option<String>, ApiError> {
        match fields.get(k) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(bad(at(k), "must be a string")),
        }
    };
    let label = string("server_label")?
        .filter(|l| !l.is_empty())
        .ok_or_else(|| bad(at("server_label"), "is required"))?;
    let headers = match fields.get("headers") {
        None | Some(Value::Null) => Default::default(),
        Some(Value::Object(h)) => h
            .iter()
            .map(|(k, v)| v.as_str().map(|v| (k.clone(), v.to_string())))
            .collect::<Option<_>>()
            .ok_or_else(|| bad(at("headers"), "header values must be strings"))?,
        Some(_) => return Err(bad(at("headers"), "must be an object of strings")),
    };
    let allowed_tools = match fields.get("allowed_tools") {
        None | Some(Value::Null) => None,
        Some(v) => Some(pb::ToolNames {
            tool_names: names(v, at("allowed_tools"))?,
        }),
    };
    let require_approval = match fields.get("require_approval") {
        None | Some(Value::Null) => pb::ApprovalPolicy::default(),
        Some(Value::String(s)) if s == "always" => pb::ApprovalPolicy {
            mode: pb::ApprovalMode::Always.into(),
            ..Default::default()
        },
        Some(Value::String(s)) if s == "never" => pb::ApprovalPolicy {
            mode: pb::ApprovalMode::Never.into(),
            ..Default::default()
        },
        Some(Value::Object(o)) => {
            let list = |k: &str| -> Result<Vec<String>, ApiError> {
                o.get(k).map_or(Ok(Vec::new()), |v| {
                    names(v, format!("tools[{i}].require_approval.{k}"))
                })
            };
            let (always, never) = (list("always")?, list("never")?);
            // Only `always` listed: the rest need none; otherwise OpenAI's default holds.
            let mode = if never.is_empty() && !always.is_empty() {
                pb::ApprovalMode::Never
            } else {
                pb::ApprovalMode::Always
            };
            pb::ApprovalPolicy {
                mode: mode.into(),
                always,
                never,
            }
        }
        Some(_) => {
            return Err(bad(
                at("require_approval"),
                "expected \"always\", \"never\" or {\"always\": {...}, \"never\": {...}}",
            ));
        }
    };
    for key in fields.keys() {
        if !matches!(
            key.as_str(),
            "server_label"
                | "server_url"
                | "headers"
                | "allowed_tools"
                | "require_approval"
                | "server_description"
                | "authorization"
                | "connector_id"
        ) {
            return Err(bad(at(key), "is not a field of an mcp tool"));
        }
    }
    if fields.contains_key("connector_id") {
        return Err(bad(
            at("connector_id"),
            "OpenAI connectors are not available here; name a server by server_label (and server_url)",
        ));
    }
    let mut headers: std::collections::HashMap<String, String> = headers;
    if let Some(token) = string("authorization")? {
        headers.insert("Authorization".into(), format!("Bearer {token}"));
    }
    Ok(pb::McpServerTool {
        server_label: label,
        server_url: string("server_url")?,
        headers,
        allowed_tools,
        require_approval: Some(require_approval),
        server_description: string("server_description")?,
    })
}

/// Where the proto's repeated fields came from in the OpenAI request, so an error naming
/// `mcp_servers[j]` or `approvals[k]` names the client's own `tools[i]` or `messages[i]`
/// (and `params.x` the request's top-level `x`).
#[derive(Debug, Clone, Default)]
pub struct FieldMap {
    /// The `tools` index of each `mcp` entry, in order.
    pub mcp: Vec<usize>,
    /// The `messages` index of each approval, in order.
    pub approvals: Vec<usize>,
}

impl FieldMap {
    /// `error` with its `param` (and the message's leading field name) in the client's terms.
    pub fn rename(&self, mut error: ApiError) -> ApiError {
        let Some(param) = error.param.clone() else {
            return error;
        };
        let renamed = [
            ("mcp_servers[", "tools", &self.mcp),
            ("approvals[", "messages", &self.approvals),
        ]
        .into_iter()
        .find_map(|(prefix, to, positions)| {
            let rest = param.strip_prefix(prefix)?;
            let (index, tail) = rest.split_once(']')?;
            let original = positions.get(index.parse::<usize>().ok()?)?;
            Some(format!("{to}[{original}]{tail}"))
        })
        // The generation parameters sit at the top of an OpenAI request.
        .or_else(|| param.strip_prefix("params.").map(str::to_owned));
        if let Some(renamed) = renamed {
            if let Some(rest) = error.message.strip_prefix(param.as_str()) {
                error.message = format!("{renamed}{rest}");
            }
            error.param = Some(renamed);
        }
        error
    }
}

/// An approval: `{"approve": bool, "reason"?: string}` on a tool message, or a
/// Responses-style `mcp_approval_response` item.
pub fn approval(
    call_id: Option<String>,
    approve: Option<bool>,
    reason: Option<String>,
    field: &str,
) -> Result<pb::Approval, ApiError> {
    let tool_call_id = call_id.filter(|id| !id.is_empty()).ok_or_else(|| {
        bad(
            format!("{field}.tool_call_id"),
            "is required with an approval",
        )
    })?;
    let approve =
        approve.ok_or_else(|| bad(format!("{field}.approve"), "is required (true or false)"))?;
    Ok(pb::Approval {
        tool_call_id,
        approve,
        reason,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(v: Value) -> Result<pb::McpServerTool, ApiError> {
        server(v.as_object().unwrap(), 2)
    }

    #[test]
    fn every_openai_shape_is_read() {
        let t = parse(
            json!({"server_label": "fx", "allowed_tools": ["add"], "require_approval": "never"}),
        )
        .unwrap();
        assert_eq!(t.allowed_tools.unwrap().tool_names, ["add"]);
        assert_eq!(t.require_approval.unwrap().mode(), pb::ApprovalMode::Never);
        let t = parse(
            json!({"server_label": "fx", "allowed_tools": {"tool_names": ["a", "b"]},
            "require_approval": {"never": {"tool_names": ["a"]}}}),
        )
        .unwrap();
        assert_eq!(t.allowed_tools.unwrap().tool_names, ["a", "b"]);
        let policy = t.require_approval.unwrap();
        assert_eq!(
            (policy.mode(), policy.never.as_slice()),
            (pb::ApprovalMode::Always, &["a".to_string()][..])
        );
        let t = parse(
            json!({"server_label": "fx", "require_approval": {"always": {"tool_names": ["rm"]}}}),
        )
        .unwrap();
        assert_eq!(t.require_approval.unwrap().mode(), pb::ApprovalMode::Never);
        let t = parse(json!({"server_label": "r", "server_url": "https://x.example/mcp", "headers": {"X-K": "v"}})).unwrap();
        assert_eq!(t.server_url.as_deref(), Some("https://x.example/mcp"));
        assert_eq!(
            t.require_approval.unwrap().mode(),
            pb::ApprovalMode::Unspecified
        );
    }

    #[test]
    fn service_errors_name_the_clients_fields() {
        let map = FieldMap {
            mcp: vec![2, 5],
            approvals: vec![4],
        };
        let renamed = map.rename(ApiError::invalid(
            Some("mcp_servers[1].server_url".into()),
            "mcp_servers[1].server_url: host x is not allowed",
        ));
        assert_eq!(renamed.param.as_deref(), Some("tools[5].server_url"));
        assert_eq!(
            renamed.message,
            "tools[5].server_url: host x is not allowed"
        );
        let renamed = map.rename(ApiError::invalid(
            Some("approvals[0]".into()),
            "approvals[0]: changed",
        ));
        assert_eq!(renamed.param.as_deref(), Some("messages[4]"));
        let other = map.rename(ApiError::invalid(Some("messages".into()), "m"));
        assert_eq!(other.param.as_deref(), Some("messages"));
    }

    #[test]
    fn bad_entries_name_their_field() {
        for (v, field) in [
            (json!({}), "tools[2].server_label"),
            (json!({"server_label": 3}), "tools[2].server_label"),
            (
                json!({"server_label": "a", "allowed_tools": "x"}),
                "tools[2].allowed_tools",
            ),
            (
                json!({"server_label": "a", "require_approval": "sometimes"}),
                "tools[2].require_approval",
            ),
            (
                json!({"server_label": "a", "headers": {"k": 1}}),
                "tools[2].headers",
            ),
            (
                json!({"server_label": "a", "colour": "red"}),
                "tools[2].colour",
            ),
        ] {
            let e = parse(v.clone()).unwrap_err();
            assert_eq!(e.param.as_deref(), Some(field), "{v}");
        }
    }
}
