//! Shared pieces of the gateway's SSE answers.

use std::pin::Pin;

use futures::{Stream, StreamExt};
use tonic::Status;

use super::ApiError;
use crate::pb::{self, chat_event::Event};

pub type EventStream = Pin<Box<dyn Stream<Item = Result<pb::ChatEvent, Status>> + Send>>;

/// Reads the `start` event and the one after it. An error among them becomes an HTTP error
/// (the headers are not sent yet); otherwise returns them, the session id, and the rest.
pub async fn first_events(
    mut events: EventStream,
) -> Result<(Vec<pb::ChatEvent>, Option<String>, EventStream), ApiError> {
    let mut head = Vec::with_capacity(2);
    let mut session_id = None;
    while let Some(item) = events.next().await {
        let event = item?;
        let is_start = matches!(&event.event, Some(Event::Start(_)));
        if let Some(Event::Start(s)) = &event.event {
            session_id.clone_from(&s.session_id);
        }
        head.push(event);
        if !is_start {
            break;
        }
    }
    Ok((head, session_id, events))
}
