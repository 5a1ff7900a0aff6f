//! proto ↔ core conversions, the one place they live. Parsing a `ChatRequest` validates
//! it ("parse, don't validate"): what comes out is an `AgentRequest` the core can trust,
//! and every rejection names its field.

mod request;
mod response;
mod responses;

pub use request::{agent_request, elicitation_answer, message_from_pb, message_to_pb, session_id};
pub use response::{
    event_to_pb, response_to_pb, server_to_pb, session_to_pb, tool_to_pb, usage_to_pb,
};
pub use responses::{
    input_entry_to_pb, response_event_to_pb, response_object_to_pb, responses_request,
};

#[cfg(test)]
mod tests {
    use prost_types::value::Kind;

    use super::*;
    use crate::{
        error::CoreError,
        model::{Message, ReasoningEffort, Role, ServiceTier, ToolCall, ToolChoice, Verbosity},
        pb::{self, json::json_to_prost},
    };
    use serde_json::json;

    fn user(text: &str) -> pb::Message {
        pb::Message {
            role: pb::Role::User.into(),
            content: text.into(),
            ..Default::default()
        }
    }

    fn field_of(err: CoreError) -> String {
        match err {
            CoreError::InvalidArgument { field, .. } => field,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn validation_names_the_field() {
        let base = || pb::ChatRequest {
            messages: vec![user("hi")],
            ..Default::default()
        };
        let mut empty = base();
        empty.messages.clear();
        assert_eq!(
            field_of(agent_request(empty, false).unwrap_err()),
            "messages"
        );

        let mut no_role = base();
        no_role.messages.push(pb::Message {
            content: "x".into(),
            ..Default::default()
        });
        assert_eq!(
            field_of(agent_request(no_role, false).unwrap_err()),
            "messages[1].role"
        );

        let mut bad_role = base();
        bad_role.messages[0].role = 42;
        assert_eq!(
            field_of(agent_request(bad_role, false).unwrap_err()),
            "messages[0].role"
        );

        let mut tool = base();
        tool.messages.push(pb::Message {
            role: pb::Role::Tool.into(),
            content: "r".into(),
            ..Default::default()
        });
        assert_eq!(
            field_of(agent_request(tool, false).unwrap_err()),
            "messages[1].tool_call_id"
        );

        for (params, field) in [
            (
                pb::GenerationParams {
                    temperature: Some(2.5),
                    ..Default::default()
                },
                "params.temperature",
            ),
            (
                pb::GenerationParams {
                    temperature: Some(-0.1),
                    ..Default::default()
                },
                "params.temperature",
            ),
            (
                pb::GenerationParams {
                    max_tokens: Some(0),
                    ..Default::default()
                },
                "params.max_tokens",
            ),
            (
                pb::GenerationParams {
                    top_p: Some(1.5),
                    ..Default::default()
                },
                "params.top_p",
            ),
            (
                pb::GenerationParams {
                    stop: vec!["a".into(); 5],
                    ..Default::default()
                },
                "params.stop",
            ),
        ] {
            let mut r = base();
            r.params = Some(params);
            assert_eq!(field_of(agent_request(r, false).unwrap_err()), field);
        }

        let many: std::collections::HashMap<String, String> =
            (0..17).map(|i| (format!("k{i}"), "v".into())).collect();
        for (params, field) in [
            (
                pb::GenerationParams {
                    metadata: many,
                    ..Default::default()
                },
                "params.metadata",
            ),
            (
                pb::GenerationParams {
                    metadata: [("k".repeat(65), "v".into())].into(),
                    ..Default::default()
                },
                "params.metadata",
            ),
            (
                pb::GenerationParams {
                    metadata: [("k".into(), "é".repeat(513))].into(),
                    ..Default::default()
                },
                "params.metadata",
            ),
            (
                pb::GenerationParams {
                    logit_bias: [("50256".into(), 101)].into(),
                    ..Default::default()
                },
                "params.logit_bias",
            ),
            (
                pb::GenerationParams {
                    logit_bias: [("not-a-token".into(), 1)].into(),
                    ..Default::default()
                },
                "params.logit_bias",
            ),
            (
                pb::GenerationParams {
                    reasoning_effort: 42,
                    ..Default::default()
                },
                "params.reasoning_effort",
            ),
            (
                pb::GenerationParams {
                    service_tier: 42,
                    ..Default::default()
                },
                "params.service_tier",
            ),
            (
                pb::GenerationParams {
                    verbosity: 42,
                    ..Default::default()
                },
                "params.verbosity",
            ),
        ] {
            let mut r = base();
            r.params = Some(params);
            assert_eq!(field_of(agent_request(r, false).unwrap_err()), field);
        }

        let mut bad_tool = base();
        bad_tool.tools.push(pb::ToolDefinition {
            name: "has space".into(),
            ..Default::default()
        });
        assert_eq!(
            field_of(agent_request(bad_tool, false).unwrap_err()),
            "tools[0].name"
        );
    }

    #[test]
    fn a_valid_request_converts() {
        let schema =
            json!({"type": "object", "properties": {"city": {"type": "string", "maxLength": 64}}});
        let Kind::StructValue(s) = json_to_prost(&schema).kind.unwrap() else {
            panic!()
        };
        let r = pb::ChatRequest {
            model: "m".into(),
            messages: vec![
                pb::Message {
                    role: pb::Role::Developer.into(),
                    content: "sys".into(),
                    ..Default::default()
                },
                user("hi"),
            ],
            params: Some(pb::GenerationParams {
                temperature: Some(0.5),
                max_tokens: Some(10),
                ..Default::default()
            }),
            tools: vec![pb::ToolDefinition {
                name: "get_weather".into(),
                description: "w".into(),
                parameters: Some(s),
                strict: None,
            }],
            tool_choice: Some(pb::ToolChoice {
                choice: Some(pb::tool_choice::Choice::Mode(
                    pb::ToolChoiceMode::Required.into(),
                )),
            }),
            ..Default::default()
        };
        let mut r = r;
        let p = r.params.as_mut().unwrap();
        p.logit_bias = [("50256".into(), -100)].into();
        p.metadata = [("k".repeat(64), "é".repeat(512))].into();
        p.set_reasoning_effort(pb::generation_params::ReasoningEffort::Minimal);
        p.set_service_tier(pb::generation_params::ServiceTier::Priority);
        p.set_verbosity(pb::generation_params::Verbosity::High);
        let a = agent_request(r, false).unwrap();
        assert_eq!(a.params.logit_bias.get("50256"), Some(&-100));
        assert_eq!(a.params.metadata.len(), 1, "the limits are inclusive");
        assert_eq!(
            (
                a.params.reasoning_effort.map(ReasoningEffort::as_str),
                a.params.service_tier.map(ServiceTier::as_str),
                a.params.verbosity.map(Verbosity::as_str)
            ),
            (Some("minimal"), Some("priority"), Some("high"))
        );
        assert_eq!(a.model.as_deref(), Some("m"));
        assert_eq!(a.messages[0].role, Role::System);
        assert_eq!(a.params.temperature, Some(0.5));
        assert_eq!(
            a.client_tools[0].parameters, schema,
            "integers survive the Struct round trip"
        );
        assert_eq!(a.tool_choice, Some(ToolChoice::Required));
    }

    #[test]
    fn messages_round_trip() {
        let m = Message {
            tool_calls: vec![ToolCall {
                id: "c".into(),
                name: "f".into(),
                arguments: "{}".into(),
            }],
            ..Message::new(Role::Assistant, "x")
        };
        assert_eq!(message_from_pb(message_to_pb(&m), &"m").unwrap(), m);
        let t = Message::tool_result("c", "r");
        assert_eq!(message_from_pb(message_to_pb(&t), &"m").unwrap(), t);
    }
}
