//! The conversation types the core, the session store and the upstream client share:
//! [`Message`] and its [`Role`], [`ToolCall`], the offered [`ToolDef`]s and [`ToolChoice`],
//! [`GenParams`] (with [`ReasoningEffort`], [`ServiceTier`], [`Verbosity`]) and [`Usage`].
//!
//! A neutral module: it imports nothing of the crate, so `sessions/` can store messages and
//! `llm/` can send them without either depending on the other. No wire shapes here — the
//! edges (`grpc/convert/`, `http/openai/`) and the upstream DTOs (`llm/request.rs`,
//! `llm/wire.rs`) convert to and from these.

/// Who wrote a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    System,
    User,
    Assistant,
    Tool,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::System => "system",
            Self::User => "user",
            Self::Assistant => "assistant",
            Self::Tool => "tool",
        }
    }
}

/// One message of a conversation.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    pub role: Role,
    pub content: String,
    pub name: Option<String>,
    /// For `Role::Tool`: the call this answers.
    pub tool_call_id: Option<String>,
    /// For `Role::Assistant`: the calls the model made.
    pub tool_calls: Vec<ToolCall>,
}

impl Message {
    pub fn new(role: Role, content: impl Into<String>) -> Self {
        Self {
            role,
            content: content.into(),
            name: None,
            tool_call_id: None,
            tool_calls: Vec::new(),
        }
    }
    pub fn tool_result(call_id: impl Into<String>, content: impl Into<String>) -> Self {
        Self {
            tool_call_id: Some(call_id.into()),
            ..Self::new(Role::Tool, content)
        }
    }
}

/// A function call made by the model, complete (arguments are the JSON text it sent).
#[derive(Debug, Clone, PartialEq)]
pub struct ToolCall {
    pub id: String,
    pub name: String,
    pub arguments: String,
}

/// A function offered to the model.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolDef {
    pub name: String,
    pub description: String,
    /// JSON Schema of the arguments (an object schema).
    pub parameters: serde_json::Value,
    pub strict: Option<bool>,
}

/// How the model may use the offered tools.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ToolChoice {
    None,
    Auto,
    Required,
    Function(String),
}

/// Generation parameters passed through to the upstream (unset = upstream default).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct GenParams {
    pub temperature: Option<f32>,
    pub top_p: Option<f32>,
    pub max_tokens: Option<u32>,
    /// `max_tokens` goes upstream as `max_completion_tokens` (the name the caller used, as
    /// reasoning models refuse `max_tokens`; or what the model entry forces).
    pub as_max_completion_tokens: bool,
    pub stop: Vec<String>,
    pub seed: Option<i64>,
    pub presence_penalty: Option<f32>,
    pub frequency_penalty: Option<f32>,
    /// OpenAI `response_format` object, passed as is.
    pub response_format: Option<serde_json::Value>,
    pub parallel_tool_calls: Option<bool>,
    pub user: Option<String>,
    /// Token id → bias (-100..100), passed as is (empty: not sent).
    pub logit_bias: std::collections::BTreeMap<String, i32>,
    pub reasoning_effort: Option<ReasoningEffort>,
    pub service_tier: Option<ServiceTier>,
    /// Pairs stored with the upstream's completion (empty: not sent).
    pub metadata: std::collections::BTreeMap<String, String>,
    pub verbosity: Option<Verbosity>,
}

/// A closed set of values the upstream takes as lowercase strings.
macro_rules! wire_values {
    ($(#[$doc:meta])* $name:ident { $($variant:ident = $text:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum $name {
            $($variant),+
        }

        impl $name {
            /// The value as the upstream spells it.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(Self::$variant => $text),+
                }
            }
        }
    };
}

wire_values! {
    /// How hard a reasoning model thinks (OpenAI `reasoning_effort`).
    ReasoningEffort { None = "none", Minimal = "minimal", Low = "low", Medium = "medium", High = "high", Xhigh = "xhigh" }
}

wire_values! {
    /// The processing tier asked of the upstream (OpenAI `service_tier`).
    ServiceTier { Auto = "auto", Default = "default", Flex = "flex", Scale = "scale", Priority = "priority" }
}

wire_values! {
    /// How long the answer is (OpenAI `verbosity`).
    Verbosity { Low = "low", Medium = "medium", High = "high" }
}

/// Token counts as the upstream reported them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    pub prompt_tokens: u32,
    pub completion_tokens: u32,
    pub total_tokens: u32,
    /// The prompt's breakdown, when the upstream reported one.
    pub prompt_details: Option<PromptTokensDetails>,
    /// The completion's breakdown, when the upstream reported one.
    pub completion_details: Option<CompletionTokensDetails>,
}

/// Parts of the prompt tokens (OpenAI `prompt_tokens_details`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PromptTokensDetails {
    pub cached_tokens: u32,
    pub audio_tokens: u32,
}

/// Parts of the completion tokens (OpenAI `completion_tokens_details`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CompletionTokensDetails {
    pub reasoning_tokens: u32,
    pub audio_tokens: u32,
    pub accepted_prediction_tokens: u32,
    pub rejected_prediction_tokens: u32,
}

impl Usage {
    /// Adds another call's usage; a breakdown is summed over the calls that reported one.
    pub fn add(&mut self, other: Usage) {
        self.prompt_tokens = self.prompt_tokens.saturating_add(other.prompt_tokens);
        self.completion_tokens = self
            .completion_tokens
            .saturating_add(other.completion_tokens);
        self.total_tokens = self.total_tokens.saturating_add(other.total_tokens);
        if let Some(o) = other.prompt_details {
            let d = self.prompt_details.get_or_insert_default();
            d.cached_tokens = d.cached_tokens.saturating_add(o.cached_tokens);
            d.audio_tokens = d.audio_tokens.saturating_add(o.audio_tokens);
        }
        if let Some(o) = other.completion_details {
            let d = self.completion_details.get_or_insert_default();
            d.reasoning_tokens = d.reasoning_tokens.saturating_add(o.reasoning_tokens);
            d.audio_tokens = d.audio_tokens.saturating_add(o.audio_tokens);
            d.accepted_prediction_tokens = d
                .accepted_prediction_tokens
                .saturating_add(o.accepted_prediction_tokens);
            d.rejected_prediction_tokens = d
                .rejected_prediction_tokens
                .saturating_add(o.rejected_prediction_tokens);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage_details_are_summed_over_the_calls_that_report_them() {
        let plain = Usage {
            prompt_tokens: 5,
            completion_tokens: 1,
            total_tokens: 6,
            ..Usage::default()
        };
        let detailed = Usage {
            prompt_details: Some(PromptTokensDetails {
                cached_tokens: 4,
                audio_tokens: 0,
            }),
            completion_details: Some(CompletionTokensDetails {
                reasoning_tokens: 3,
                ..CompletionTokensDetails::default()
            }),
            ..plain
        };
        let mut total = Usage::default();
        total.add(plain);
        assert_eq!(total.prompt_details, None, "none reported: none returned");
        total.add(detailed);
        total.add(detailed);
        assert_eq!(total.prompt_tokens, 15);
        assert_eq!(total.prompt_details.unwrap().cached_tokens, 8);
        assert_eq!(total.completion_details.unwrap().reasoning_tokens, 6);
    }
}
