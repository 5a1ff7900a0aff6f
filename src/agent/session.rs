//! Turns in a session: lock the session (serialising requests on it, also across
//! replicas), prepend its stored history, run the turn, and store the turn whole — the new
//! messages and everything the agent produced for them — or nothing when it fails or is
//! cancelled.
//!
//! A [`Continuation`] (a stored response continued by `previous_response_id`) picks up a
//! session at a given length: under that session's lock, when the session still has that
//! many messages the turn goes on in it; when it has moved on (the same response continued
//! twice), the turn forks: the history up to that point and the turn are stored in a new
//! session.

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use super::{AgentRequest, AgentResponse, EventSender, Inner, ModelRoute, turn::Turn};
use crate::{error::CoreError, model::Message, sessions::SessionId};

/// Where a turn picks up a stored conversation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Continuation {
    pub from: SessionId,
    /// How many of its messages are the history.
    pub len: usize,
    /// Store the turn (a response with `store: false` reads the history only).
    pub write: bool,
}

pub(super) async fn run(
    inner: &Inner,
    route: Arc<ModelRoute>,
    mut request: AgentRequest,
    cancel: CancellationToken,
    events: Option<&EventSender>,
) -> Result<AgentResponse, CoreError> {
    // The session paths are boxed: each holds a turn and more (the lock, the history), and
    // inline they would make this future, which every stateless turn and every stream's
    // task carries, twice the size of the turn it runs.
    if let Some(from) = request.continues.take() {
        return Box::pin(continued(inner, route, request, from, cancel, events)).await;
    }
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
    Box::pin(locked(inner, route, request, new, id, lock, cancel, events)).await
}

/// A turn on `lock`'s session `id`, whose request holds the history then `new`; stores
/// `new` and what the turn produced.
#[allow(clippy::too_many_arguments)]
async fn locked(
    inner: &Inner,
    route: Arc<ModelRoute>,
    request: AgentRequest,
    new: Vec<Message>,
    id: SessionId,
    lock: crate::sessions::SessionLock,
    cancel: CancellationToken,
    events: Option<&EventSender>,
) -> Result<AgentResponse, CoreError> {
    let store = &inner.sessions;

    let model = route.id.clone();
    // A lock lost mid-turn (a shared store's lease that could not be renewed) stops the turn
    // at once, before more output goes out; it could not be stored anyway.
    let lost = lock.lost();
    let turn_cancel = cancel.child_token();
    let mut response = tokio::select! {
        response = Turn::new(inner, route, request, turn_cancel.clone(), events).run() => response?,
        () = lost.cancelled() => {
            turn_cancel.cancel();
            return Err(crate::sessions::SessionError::LockLost { id }.into());
        }
    };

    let mut turn = new;
    turn.extend(response.new_messages.iter().cloned());
    response.session_len = store.append_turn(&lock, &model, &turn).await?;
    drop(lock);
    Ok(response)
}

/// A turn that continues `from` (see [`Continuation`]).
async fn continued(
    inner: &Inner,
    route: Arc<ModelRoute>,
    mut request: AgentRequest,
    from: Continuation,
    cancel: CancellationToken,
    events: Option<&EventSender>,
) -> Result<AgentResponse, CoreError> {
    let store = &inner.sessions;
    let lock = tokio::select! {
        biased;
        () = cancel.cancelled() => return Err(CoreError::Cancelled),
        lock = store.lock(&from.from, inner.lock_timeout) => lock?,
    };
    let mut history = store
        .load(&from.from)
        .await?
        .map(|s| s.messages)
        .unwrap_or_default();
    if history.len() < from.len {
        // The conversation expired or was deleted under the stored response.
        return Err(CoreError::SessionNotFound(from.from.as_str().to_string()));
    }
    let new: Vec<Message> = std::mem::take(&mut request.messages);
    if !from.write {
        drop(lock);
        history.truncate(from.len);
        history.extend(new);
        request.messages = history;
        request.session = None;
        return Turn::new(inner, route, request, cancel, events).run().await;
    }
    if history.len() == from.len {
        request.messages = history;
        request.messages.extend(new.iter().cloned());
        request.session = Some(from.from.clone());
        return locked(inner, route, request, new, from.from, lock, cancel, events).await;
    }
    // The conversation went on past this point: fork it into a new session.
    drop(lock);
    history.truncate(from.len);
    let fork = SessionId::generate();
    let lock = store.lock(&fork, inner.lock_timeout).await?;
    let mut stored = history.clone();
    stored.extend(new.iter().cloned());
    history.extend(new);
    request.messages = history;
    request.session = Some(fork.clone());
    locked(inner, route, request, stored, fork, lock, cancel, events).await
}
