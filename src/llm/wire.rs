//! The upstream's answer shapes (OpenAI chat completions), private to `llm/`.
//!
//! Answers parse into small borrowed structs: a streamed chunk ([`ChunkDto`]) borrows its
//! strings from the event text unless they hold escapes. Unknown fields are ignored everywhere,
//! and `null` is accepted wherever a field may be absent. Requests are `request.rs`'s.

use std::{borrow::Cow, fmt};

use serde::{
    Deserialize, Deserializer,
    de::{self, Visitor},
};

use super::FinishReason;
use crate::model::{CompletionTokensDetails, PromptTokensDetails, Usage};

/// A string that borrows from the input when it holds no escapes.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct Text<'a>(pub Cow<'a, str>);

impl<'de: 'a, 'a> Deserialize<'de> for Text<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = Text<'a>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Text(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Text(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
                Ok(Text(Cow::Owned(v)))
            }
        }
        d.deserialize_str(V(std::marker::PhantomData))
    }
}

/// `null` or absent → the type's default.
fn null_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// One `chat.completion.chunk` (or a mid-stream `{"error": …}`).
#[derive(Debug, Deserialize)]
pub(crate) struct ChunkDto<'a> {
    #[serde(borrow, default, deserialize_with = "null_default")]
    pub choices: Vec<ChunkChoiceDto<'a>>,
    #[serde(default)]
    pub usage: Option<UsageDto>,
    #[serde(default)]
    pub error: Option<ErrorField>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct ChunkChoiceDto<'a> {
    #[serde(default, deserialize_with = "null_default")]
    pub index: u32,
    #[serde(borrow, default)]
    pub delta: Option<DeltaDto<'a>>,
    #[serde(borrow, default)]
    pub finish_reason: Option<Text<'a>>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct DeltaDto<'a> {
    #[serde(borrow, default)]
    pub content: Option<Text<'a>>,
    #[serde(borrow, default)]
    pub refusal: Option<Text<'a>>,
    #[serde(borrow, default, deserialize_with = "null_default")]
    pub tool_calls: Vec<ToolCallDeltaDto<'a>>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct ToolCallDeltaDto<'a> {
    #[serde(default)]
    pub index: Option<u32>,
    #[serde(borrow, default)]
    pub id: Option<Text<'a>>,
    #[serde(borrow, default)]
    pub function: Option<FunctionDeltaDto<'a>>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct FunctionDeltaDto<'a> {
    #[serde(borrow, default)]
    pub name: Option<Text<'a>>,
    #[serde(borrow, default)]
    pub arguments: Option<Text<'a>>,
}

#[derive(Debug, Clone, Copy, Default, Deserialize)]
pub(crate) struct UsageDto {
    #[serde(default, deserialize_with = "null_default")]
    pub prompt_tokens: u32,
    #[serde(default, deserialize_with = "null_default")]
    pub completion_tokens: u32,
    #[serde(default, deserialize_with = "null_default")]
    pub total_tokens: u32,
    #[serde(default)]
    pub prompt_tokens_details: Option<PromptDetailsDto>,
    #[serde(default)]
    pub completion_tokens_details: Option<CompletionDetailsDto>,
}

#[derive(Debug, Clone, Copy, Default, Deserialize)]
pub(crate) struct PromptDetailsDto {
    #[serde(default, deserialize_with = "null_default")]
    pub cached_tokens: u32,
    #[serde(default, deserialize_with = "null_default")]
    pub audio_tokens: u32,
}

#[derive(Debug, Clone, Copy, Default, Deserialize)]
pub(crate) struct CompletionDetailsDto {
    #[serde(default, deserialize_with = "null_default")]
    pub reasoning_tokens: u32,
    #[serde(default, deserialize_with = "null_default")]
    pub audio_tokens: u32,
    #[serde(default, deserialize_with = "null_default")]
    pub accepted_prediction_tokens: u32,
    #[serde(default, deserialize_with = "null_default")]
    pub rejected_prediction_tokens: u32,
}

impl From<UsageDto> for Usage {
    fn from(u: UsageDto) -> Self {
        Self {
            prompt_tokens: u.prompt_tokens,
            completion_tokens: u.completion_tokens,
            total_tokens: u.total_tokens,
            prompt_details: u.prompt_tokens_details.map(|d| PromptTokensDetails {
                cached_tokens: d.cached_tokens,
                audio_tokens: d.audio_tokens,
            }),
            completion_details: u
                .completion_tokens_details
                .map(|d| CompletionTokensDetails {
                    reasoning_tokens: d.reasoning_tokens,
                    audio_tokens: d.audio_tokens,
                    accepted_prediction_tokens: d.accepted_prediction_tokens,
                    rejected_prediction_tokens: d.rejected_prediction_tokens,
                }),
        }
    }
}

/// A whole (non-streamed) `chat.completion`.
#[derive(Debug, Deserialize)]
pub(crate) struct CompletionDto {
    #[serde(default, deserialize_with = "null_default")]
    pub choices: Vec<ChoiceDto>,
    #[serde(default)]
    pub usage: Option<UsageDto>,
    #[serde(default)]
    pub error: Option<ErrorField>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct ChoiceDto {
    pub message: MessageDto,
    #[serde(default)]
    pub finish_reason: Option<String>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct MessageDto {
    #[serde(default)]
    pub content: Option<String>,
    #[serde(default)]
    pub refusal: Option<String>,
    #[serde(default, deserialize_with = "null_default")]
    pub tool_calls: Vec<ToolCallDto>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct ToolCallDto {
    #[serde(default)]
    pub id: Option<String>,
    pub function: FunctionDto,
}

#[derive(Debug, Deserialize)]
pub(crate) struct FunctionDto {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub arguments: Option<String>,
}

/// The `error` member of an error body: OpenAI's object, or a bare string (Ollama, proxies).
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(crate) enum ErrorField {
    Object {
        #[serde(default)]
        message: Option<String>,
        #[serde(default, rename = "type")]
        kind: Option<String>,
        #[serde(default)]
        code: Option<Code>,
        /// The request parameter the upstream refuses, when it names one.
        #[serde(default)]
        param: Option<String>,
    },
    Text(String),
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(crate) enum Code {
    Text(String),
    Number(i64),
}

impl ErrorField {
    pub fn message(&self) -> &str {
        match self {
            Self::Object {
                message: Some(m), ..
            } => m,
            Self::Object { .. } => "(no message)",
            Self::Text(t) => t,
        }
    }

    /// The request parameter the error names (`param`), when there is one.
    pub fn param(&self) -> Option<String> {
        match self {
            Self::Object { param, .. } => param.clone().filter(|p| !p.is_empty()),
            Self::Text(_) => None,
        }
    }

    /// The error's `code`, else its `type`.
    pub fn code(&self) -> Option<String> {
        match self {
            Self::Object {
                code: Some(Code::Text(c)),
                ..
            } => Some(c.clone()),
            Self::Object {
                code: Some(Code::Number(n)),
                ..
            } => Some(n.to_string()),
            Self::Object { kind, .. } => kind.clone(),
            Self::Text(_) => None,
        }
    }
}

/// An error status body: `{"error": …}` (OpenAI) or `{"message": …}` (vLLM, others).
#[derive(Debug, Deserialize)]
pub(crate) struct ErrorBodyDto {
    #[serde(default)]
    pub error: Option<ErrorField>,
    #[serde(default)]
    pub message: Option<String>,
    #[serde(default, rename = "type")]
    pub kind: Option<String>,
}

pub(crate) fn finish_reason(s: &str) -> FinishReason {
    match s {
        "stop" => FinishReason::Stop,
        "length" => FinishReason::Length,
        "tool_calls" | "function_call" => FinishReason::ToolCalls,
        "content_filter" => FinishReason::ContentFilter,
        other => FinishReason::Other(other.to_owned()),
    }
}
