//! Turns in a session: lock the session (serialising requests on it, also across
//! replicas), prepend its stored history, run the turn, and store the turn whole — the new
//! messages and everything the agent produced for them — or nothing when it fails or is
//! cancelled.

use std::sync::Arc;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::{AgentEvent, AgentRequest, AgentResponse, Inner, ModelRoute, turn::Turn};
use crate::{error::CoreError, model::Message};

pub(super) async fn run(
    inner: &Inner,
    route: Arc<ModelRoute>,
    mut request: AgentRequest,
    cancel: CancellationToken,
    events: Option<&mpsc::Sender<Result<AgentEvent, CoreError>>>,
) -> Result<AgentResponse, CoreError> {
    let Some(id) = request.session.clone() else {
        return Turn::new(inner, route, request, cancel, events).run().await;
    };
    let store = &inner.sessions;
    let lock = tokio::select! {
        biased;
        () = cancel.cancelled() => return Err(CoreError::Cancelled),
        lock = store.lock(&id, inner.lock_timeout) => lock?,
    };
    let history = store
        .load(&id)
        .await?
        .map(|s| s.messages)
        .unwrap_or_default();
    let new: Vec<Message> = std::mem::replace(&mut request.messages, history);
    request.messages.extend(new.iter().cloned());

    let model = route.id.clone();
    // A lock lost mid-turn (a shared store's lease that could not be renewed) stops the turn
    // at once, before more output goes out; it could not be stored anyway.
    let lost = lock.lost();
    let turn_cancel = cancel.child_token();
    let response = tokio::select! {
        response = Turn::new(inner, route, request, turn_cancel.clone(), events).run() => response?,
        () = lost.cancelled() => {
            turn_cancel.cancel();
            return Err(crate::sessions::SessionError::LockLost { id }.into());
        }
    };

    let mut turn = new;
    turn.extend(response.new_messages.iter().cloned());
    store.append_turn(&lock, &model, &turn).await?;
    drop(lock);
    Ok(response)
}
