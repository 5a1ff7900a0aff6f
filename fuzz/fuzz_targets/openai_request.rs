//! The OpenAI request path of the gateway: JSON text → `CompletionRequest` (the gateway's
//! parser) → proto request → the core's validated request. Errors are fine; panics are not.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mcp_chat::{
    grpc::convert,
    http::{extract, openai::request::CompletionRequest},
};

fuzz_target!(|data: &[u8]| {
    let Ok(request) = extract::parse::<CompletionRequest>(data) else {
        return;
    };
    let Ok(proto) = request.into_proto(None) else {
        return;
    };
    let _ = convert::agent_request(proto.clone(), false);
    let _ = convert::agent_request(proto, true);
});
