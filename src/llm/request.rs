//! The request body of `POST /chat/completions`, serialized straight from the core types by
//! reference ([`ChatBody`]): no intermediate `serde_json::Value`, no copies of the messages.
//! Unset parameters are omitted so the upstream's defaults apply.

use serde::{Serialize, Serializer, ser::SerializeMap};

use super::CompletionRequest;
use crate::model::{Message, ToolCall, ToolChoice, ToolDef};

/// The body of `POST /chat/completions`, borrowed from the core request.
pub(crate) struct ChatBody<'a> {
    pub request: &'a CompletionRequest,
    pub stream: bool,
    /// With `stream`: ask for the usage in a last chunk (`stream_options`).
    pub stream_usage: bool,
}

impl Serialize for ChatBody<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let r = self.request;
        let p = &r.params;
        let mut map = s.serialize_map(None)?;
        map.serialize_entry("model", &r.model)?;
        map.serialize_entry("messages", &Seq(&r.messages, WireMessage))?;
        // OpenAI rejects `tool_choice` and `parallel_tool_calls` without `tools`.
        if !r.tools.is_empty() {
            map.serialize_entry("tools", &Seq(&r.tools, wire_tool))?;
            if let Some(choice) = &r.tool_choice {
                map.serialize_entry("tool_choice", &WireToolChoice(choice))?;
            }
            if let Some(parallel) = p.parallel_tool_calls {
                map.serialize_entry("parallel_tool_calls", &parallel)?;
            }
        }
        if let Some(v) = p.temperature {
            map.serialize_entry("temperature", &v)?;
        }
        if let Some(v) = p.top_p {
            map.serialize_entry("top_p", &v)?;
        }
        if let Some(v) = p.max_tokens {
            let name = if p.as_max_completion_tokens {
                "max_completion_tokens"
            } else {
                "max_tokens"
            };
            map.serialize_entry(name, &v)?;
        }
        if !p.stop.is_empty() {
            map.serialize_entry("stop", &p.stop)?;
        }
        if let Some(v) = p.seed {
            map.serialize_entry("seed", &v)?;
        }
        if let Some(v) = p.presence_penalty {
            map.serialize_entry("presence_penalty", &v)?;
        }
        if let Some(v) = p.frequency_penalty {
            map.serialize_entry("frequency_penalty", &v)?;
        }
        if let Some(v) = &p.response_format {
            map.serialize_entry("response_format", v)?;
        }
        if let Some(v) = &p.user {
            map.serialize_entry("user", v)?;
        }
        if !p.logit_bias.is_empty() {
            map.serialize_entry("logit_bias", &p.logit_bias)?;
        }
        if let Some(v) = p.reasoning_effort {
            map.serialize_entry("reasoning_effort", v.as_str())?;
        }
        if let Some(v) = p.service_tier {
            map.serialize_entry("service_tier", v.as_str())?;
        }
        if !p.metadata.is_empty() {
            map.serialize_entry("metadata", &p.metadata)?;
        }
        if let Some(v) = p.verbosity {
            map.serialize_entry("verbosity", v.as_str())?;
        }
        if self.stream {
            map.serialize_entry("stream", &true)?;
            if self.stream_usage {
                map.serialize_entry(
                    "stream_options",
                    &IncludeUsage {
                        include_usage: true,
                    },
                )?;
            }
        }
        map.end()
    }
}

#[derive(Serialize)]
struct IncludeUsage {
    include_usage: bool,
}

/// A slice serialized through a by-reference wrapper, without collecting.
struct Seq<'a, T, W>(&'a [T], fn(&'a T) -> W);

impl<'a, T, W: Serialize> Serialize for Seq<'a, T, W> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.0.iter().map(self.1))
    }
}

struct WireMessage<'a>(&'a Message);

impl Serialize for WireMessage<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let m = self.0;
        let mut map = s.serialize_map(None)?;
        map.serialize_entry("role", m.role.as_str())?;
        if m.content.is_empty() && !m.tool_calls.is_empty() {
            map.serialize_entry("content", &None::<&str>)?;
        } else {
            map.serialize_entry("content", &m.content)?;
        }
        if let Some(name) = &m.name {
            map.serialize_entry("name", name)?;
        }
        if let Some(id) = &m.tool_call_id {
            map.serialize_entry("tool_call_id", id)?;
        }
        if !m.tool_calls.is_empty() {
            map.serialize_entry("tool_calls", &Seq(&m.tool_calls, WireToolCall::from))?;
        }
        map.end()
    }
}

#[derive(Serialize)]
struct WireToolCall<'a> {
    id: &'a str,
    #[serde(rename = "type")]
    kind: &'static str,
    function: WireFunctionCall<'a>,
}

#[derive(Serialize)]
struct WireFunctionCall<'a> {
    name: &'a str,
    arguments: &'a str,
}

impl<'a> From<&'a ToolCall> for WireToolCall<'a> {
    fn from(c: &'a ToolCall) -> Self {
        Self {
            id: &c.id,
            kind: "function",
            function: WireFunctionCall {
                name: &c.name,
                arguments: &c.arguments,
            },
        }
    }
}

#[derive(Serialize)]
struct WireTool<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    function: WireFunction<'a>,
}

#[derive(Serialize)]
struct WireFunction<'a> {
    name: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    description: &'a str,
    parameters: &'a serde_json::Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    strict: Option<bool>,
}

fn wire_tool(t: &ToolDef) -> WireTool<'_> {
    WireTool {
        kind: "function",
        function: WireFunction {
            name: &t.name,
            description: &t.description,
            parameters: &t.parameters,
            strict: t.strict,
        },
    }
}

struct WireToolChoice<'a>(&'a ToolChoice);

impl Serialize for WireToolChoice<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct Named<'a> {
            #[serde(rename = "type")]
            kind: &'static str,
            function: NameOnly<'a>,
        }
        #[derive(Serialize)]
        struct NameOnly<'a> {
            name: &'a str,
        }
        match self.0 {
            ToolChoice::None => s.serialize_str("none"),
            ToolChoice::Auto => s.serialize_str("auto"),
            ToolChoice::Required => s.serialize_str("required"),
            ToolChoice::Function(name) => Named {
                kind: "function",
                function: NameOnly { name },
            }
            .serialize(s),
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;
    use crate::model::{GenParams, Role};

    fn body(request: &CompletionRequest, stream: bool) -> Value {
        let body = ChatBody {
            request,
            stream,
            stream_usage: true,
        };
        serde_json::from_slice(&serde_json::to_vec(&body).unwrap()).unwrap()
    }

    fn request() -> CompletionRequest {
        CompletionRequest {
            model: "m".into(),
            messages: vec![Message::new(Role::User, "hi")],
            tools: Vec::new(),
            tool_choice: None,
            params: GenParams::default(),
        }
    }

    #[test]
    fn minimal_request_omits_unset_params() {
        assert_eq!(
            body(&request(), false),
            json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]})
        );
    }

    #[test]
    fn streaming_asks_for_usage() {
        let b = body(&request(), true);
        assert_eq!(b["stream"], json!(true));
        assert_eq!(b["stream_options"], json!({"include_usage": true}));
    }

    #[test]
    fn stream_options_only_where_the_model_allows_them() {
        let request = request();
        let body = ChatBody {
            request: &request,
            stream: true,
            stream_usage: false,
        };
        let b: Value = serde_json::from_slice(&serde_json::to_vec(&body).unwrap()).unwrap();
        assert_eq!(b["stream"], json!(true));
        assert!(b.get("stream_options").is_none(), "{b}");
    }

    #[test]
    fn params_tools_and_tool_history() {
        let mut r = request();
        r.messages = vec![
            Message::new(Role::System, "be brief"),
            Message {
                tool_calls: vec![ToolCall {
                    id: "call_1".into(),
                    name: "f".into(),
                    arguments: "{\"a\":1}".into(),
                }],
                ..Message::new(Role::Assistant, "")
            },
            Message::tool_result("call_1", "42"),
        ];
        r.tools = vec![ToolDef {
            name: "f".into(),
            description: String::new(),
            parameters: json!({"type": "object"}),
            strict: Some(true),
        }];
        r.tool_choice = Some(ToolChoice::Function("f".into()));
        r.params = GenParams {
            temperature: Some(0.5),
            max_tokens: Some(10),
            stop: vec!["END".into()],
            seed: Some(7),
            parallel_tool_calls: Some(false),
            response_format: Some(json!({"type": "json_object"})),
            user: Some("u".into()),
            ..GenParams::default()
        };
        assert_eq!(
            body(&r, false),
            json!({
                "model": "m",
                "messages": [
                    {"role": "system", "content": "be brief"},
                    {"role": "assistant", "content": null, "tool_calls": [
                        {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{\"a\":1}"}}
                    ]},
                    {"role": "tool", "content": "42", "tool_call_id": "call_1"},
                ],
                "tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}, "strict": true}}],
                "tool_choice": {"type": "function", "function": {"name": "f"}},
                "parallel_tool_calls": false,
                "temperature": 0.5,
                "max_tokens": 10,
                "stop": ["END"],
                "seed": 7,
                "response_format": {"type": "json_object"},
                "user": "u",
            })
        );
    }

    #[test]
    fn passthrough_params_go_upstream() {
        let mut r = request();
        r.params = GenParams {
            logit_bias: [("50256".to_string(), -100), ("15".to_string(), 3)].into(),
            reasoning_effort: Some(crate::model::ReasoningEffort::Low),
            service_tier: Some(crate::model::ServiceTier::Flex),
            metadata: [("team".to_string(), "search".to_string())].into(),
            verbosity: Some(crate::model::Verbosity::Medium),
            ..GenParams::default()
        };
        let b = body(&r, false);
        assert_eq!(b["logit_bias"], json!({"15": 3, "50256": -100}));
        assert_eq!(b["reasoning_effort"], "low");
        assert_eq!(b["service_tier"], "flex");
        assert_eq!(b["metadata"], json!({"team": "search"}));
        assert_eq!(b["verbosity"], "medium");
        let plain = body(&request(), false);
        for name in [
            "logit_bias",
            "reasoning_effort",
            "service_tier",
            "metadata",
            "verbosity",
        ] {
            assert!(plain.get(name).is_none(), "{name} unset is not sent");
        }
    }

    #[test]
    fn tool_choice_variants() {
        let mut r = request();
        r.tools = vec![ToolDef {
            name: "f".into(),
            description: "does f".into(),
            parameters: json!({"type": "object"}),
            strict: None,
        }];
        for (choice, wire) in [
            (ToolChoice::None, json!("none")),
            (ToolChoice::Auto, json!("auto")),
            (ToolChoice::Required, json!("required")),
        ] {
            r.tool_choice = Some(choice);
            let b = body(&r, false);
            assert_eq!(b["tool_choice"], wire);
            assert_eq!(b["tools"][0]["function"]["description"], "does f");
            assert!(b["tools"][0]["function"].get("strict").is_none());
        }
    }

    #[test]
    fn tool_choice_without_tools_is_not_sent() {
        let mut r = request();
        r.tool_choice = Some(ToolChoice::Auto);
        r.params.parallel_tool_calls = Some(true);
        let b = body(&r, false);
        assert!(b.get("tool_choice").is_none() && b.get("parallel_tool_calls").is_none());
        assert!(b.get("tools").is_none());
    }
}
