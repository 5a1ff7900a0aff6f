//! The upstream SSE decoder (`llm::sse::decode`: framing + chunk assembly): any bytes, cut
//! into chunks at fuzzer-chosen places, give events or one error, never a panic or a hang.
#![no_main]

use bytes::Bytes;
use futures::StreamExt;
use libfuzzer_sys::fuzz_target;
use mcp_chat::llm::{LlmError, sse};

fuzz_target!(|data: &[u8]| {
    // The first byte chooses the chunk size, so splits land inside lines and characters.
    let Some((&size, body)) = data.split_first() else {
        return;
    };
    let size = usize::from(size % 17) + 1;
    let chunks: Vec<Result<Bytes, LlmError>> = body
        .chunks(size)
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect();
    let events = sse::decode(futures::stream::iter(chunks));
    let collected: Vec<_> = futures::executor::block_on(events.collect());
    // At most one error, and it is the last item.
    if let Some(i) = collected.iter().position(Result::is_err) {
        assert_eq!(i + 1, collected.len(), "events after an error");
    }
});
