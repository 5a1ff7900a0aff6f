//! Incremental decoding of a `chat.completion.chunk` SSE body into [`LlmEvent`]s.
//!
//! Glues the body's byte stream, the SSE framing ([`FrameDecoder`]) and the pure chunk
//! [`Assembler`]. The byte stream's own failures (idle or total timeout, a broken connection)
//! come out unchanged; an `error:` field line (llama.cpp) becomes [`LlmError::Stream`].

use bytes::Bytes;
use futures::{FutureExt, Stream, StreamExt};

use super::{
    LlmError, LlmEvent,
    answer::error_message,
    assemble::{Assembler, Step},
    frame::{Frame, FrameDecoder},
};

/// The events of one streamed answer: `Content` as it arrives, then one `Done` (or one error).
/// The stream ends after `Done` or an error; dropping it drops `bytes`.
pub fn decode<S>(bytes: S) -> impl Stream<Item = Result<LlmEvent, LlmError>> + Send
where
    S: Stream<Item = Result<Bytes, LlmError>> + Send + 'static,
{
    let state = Some((Box::pin(bytes), FrameDecoder::new(), Assembler::new()));
    futures::stream::unfold(state, |state| async move {
        let (mut bytes, mut frames, mut asm) = state?;
        loop {
            let data = match frames.next_frame() {
                Ok(Some(Frame::Data(data))) => data,
                Ok(Some(Frame::Error(value))) => {
                    return Some((
                        Err(LlmError::Stream(error_message(value.as_bytes()).0)),
                        None,
                    ));
                }
                Err(message) => return Some((Err(LlmError::BadResponse(message.into())), None)),
                Ok(None) => match bytes.next().await {
                    Some(Ok(chunk)) => {
                        frames.push(&chunk);
                        continue;
                    }
                    Some(Err(e)) => return Some((Err(e), None)),
                    None => return Some((asm.finish(false).map(LlmEvent::Done), None)),
                },
            };
            match asm.push(&data) {
                Ok(Step::Nothing) => {}
                Ok(Step::Content(text)) => {
                    return Some((Ok(LlmEvent::Content(text)), Some((bytes, frames, asm))));
                }
                Ok(Step::Done) => {
                    // Read the body's end if it is already here, so the connection goes back
                    // to the pool; never wait for it.
                    let _ = bytes.next().now_or_never();
                    return Some((asm.finish(true).map(LlmEvent::Done), None));
                }
                Err(e) => return Some((Err(e), None)),
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::{
        llm::{Completion, FinishReason},
        model::ToolCall,
    };

    fn collect(chunks: Vec<Vec<u8>>) -> Vec<Result<LlmEvent, LlmError>> {
        let bytes = futures::stream::iter(chunks.into_iter().map(|c| Ok(Bytes::from(c))));
        futures::executor::block_on(decode(bytes).collect())
    }

    /// The events' texts joined, and the final completion.
    fn outcome(events: Vec<Result<LlmEvent, LlmError>>) -> (String, Result<Completion, LlmError>) {
        let mut text = String::new();
        for e in events {
            match e {
                Ok(LlmEvent::Content(t)) => text.push_str(&t),
                Ok(LlmEvent::Done(c)) => return (text, Ok(c)),
                Err(e) => return (text, Err(e)),
            }
        }
        (text, Err(LlmError::Stream("no final event".into())))
    }

    /// Splits `body` in two at every byte and in single bytes; every split must decode alike.
    fn assert_all_splits(body: &[u8], check: impl Fn(&str, &Result<Completion, LlmError>)) {
        for at in 0..=body.len() {
            let (text, done) = outcome(collect(vec![body[..at].to_vec(), body[at..].to_vec()]));
            check(&text, &done);
        }
        let (text, done) = outcome(collect(body.iter().map(|b| vec![*b]).collect()));
        check(&text, &done);
    }

    const TEXT_STREAM: &str = concat!(
        ": ping\n\n",
        "data: {\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"}}]}\n\n",
        "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Grüß \"}}]}\r\n\r\n",
        ": keep-alive\r\n",
        "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"dich 👋\"}}]}\r\r",
        "data: {\"choices\":[{\"index\":0,\"delta\":{},\n",
        "data: \"finish_reason\":\"stop\"}]}\n\n",
        "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":1,\"completion_tokens\":2,\"total_tokens\":3}}\n\n",
        "data: [DONE]\n\n",
    );

    #[test]
    fn text_stream_decodes_at_every_split() {
        assert_all_splits(TEXT_STREAM.as_bytes(), |text, done| {
            assert_eq!(text, "Grüß dich 👋");
            let done = done.as_ref().unwrap();
            assert_eq!(done.content, "Grüß dich 👋");
            assert_eq!(done.finish_reason, FinishReason::Stop);
            assert_eq!(done.usage.unwrap().total_tokens, 3);
        });
    }

    #[test]
    fn content_events_come_one_per_delta() {
        let events = collect(vec![TEXT_STREAM.as_bytes().to_vec()]);
        let texts: Vec<_> = events
            .iter()
            .filter_map(|e| match e {
                Ok(LlmEvent::Content(t)) => Some(t.as_str()),
                _ => None,
            })
            .collect();
        assert_eq!(texts, ["Grüß ", "dich 👋"]);
        assert!(matches!(events.last(), Some(Ok(LlmEvent::Done(_)))));
    }

    #[test]
    fn parallel_tool_calls_decode_at_every_split() {
        let body = concat!(
            "data: {\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":null}}]}\n\n",
            "data: {\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"id\":\"call_1\",\"type\":\"function\",\"function\":{\"name\":\"a\",\"arguments\":\"{\\\"q\\\":\"}}]}}]}\n\n",
            "data: {\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":1,\"id\":\"call_2\",\"type\":\"function\",\"function\":{\"name\":\"b\",\"arguments\":\"\"}}]}}]}\n\n",
            "data: {\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\"\\\"é\\\"}\"}}]}}]}\n\n",
            "data: {\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":1,\"function\":{\"arguments\":\"{}\"}}]},\"finish_reason\":\"tool_calls\"}]}\n\n",
            "data: [DONE]\n\n",
        );
        assert_all_splits(body.as_bytes(), |text, done| {
            assert_eq!(text, "");
            let done = done.as_ref().unwrap();
            assert_eq!(done.finish_reason, FinishReason::ToolCalls);
            assert_eq!(
                done.tool_calls,
                [
                    ToolCall {
                        id: "call_1".into(),
                        name: "a".into(),
                        arguments: "{\"q\":\"é\"}".into()
                    },
                    ToolCall {
                        id: "call_2".into(),
                        name: "b".into(),
                        arguments: "{}".into()
                    }
                ]
            );
        });
    }

    #[test]
    fn cut_stream_is_an_error_at_every_split() {
        let body =
            "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"ab\"}}]}\n\ndata: {\"choi";
        assert_all_splits(body.as_bytes(), |_, done| {
            assert!(matches!(done, Err(LlmError::Stream(m)) if m.contains("before it finished")));
        });
    }

    #[test]
    fn finish_reason_then_eof_without_done_is_whole() {
        let body = "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"x\"},\"finish_reason\":\"stop\"}]}\n\n";
        let (_, done) = outcome(collect(vec![body.as_bytes().to_vec()]));
        assert_eq!(done.unwrap().content, "x");
    }

    #[test]
    fn mid_stream_error_ends_the_stream() {
        let body = concat!(
            "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"x\"}}]}\n\n",
            "data: {\"error\":{\"message\":\"boom\",\"type\":\"server_error\"}}\n\n",
            "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"never\"}}]}\n\n",
        );
        let events = collect(vec![body.as_bytes().to_vec()]);
        assert_eq!(events.len(), 2);
        assert!(matches!(&events[1], Err(LlmError::Stream(m)) if m == "boom"));
    }

    #[test]
    fn llama_cpp_error_field_is_a_stream_error() {
        let body = "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"x\"}}]}\n\nerror: {\"code\":400,\"message\":\"the request exceeds the context size\",\"type\":\"exceed_context_size_error\"}\n\n";
        let events = collect(vec![body.as_bytes().to_vec()]);
        assert!(
            matches!(&events[..], [Ok(LlmEvent::Content(_)), Err(LlmError::Stream(m))] if m == "the request exceeds the context size")
        );
    }

    #[test]
    fn byte_stream_errors_come_out_unchanged() {
        let bytes = futures::stream::iter(vec![
            Ok(Bytes::from_static(b"data: {\"choices\":[]}\n\n")),
            Err(LlmError::Timeout {
                phase: "idle",
                after: Duration::from_secs(1),
            }),
        ]);
        let events: Vec<_> = futures::executor::block_on(decode(bytes).collect());
        assert!(matches!(
            events.as_slice(),
            [Err(LlmError::Timeout { phase: "idle", .. })]
        ));
    }
}
