//! The gRPC edge: `mcpchat.v1.ChatService` over the agent core. The HTTP gateway calls
//! [`ChatApi`] in process, so whatever the product can do is reachable here first; auth and
//! deadlines therefore live in these methods, not in a tonic interceptor.

pub mod convert;
pub mod observe;
pub mod status;

use std::{
    pin::Pin,
    sync::Arc,
    time::{Duration, Instant},
};

use futures::Stream;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status, metadata::MetadataMap};

use crate::{agent::Agent, auth::ApiKeys, error::CoreError, pb, sessions::SessionId};

/// The ChatService implementation. Cheap to clone; shared by the gRPC server and the gateway.
#[derive(Clone)]
pub struct ChatApi {
    inner: Arc<Inner>,
}

struct Inner {
    agent: Agent,
    keys: ApiKeys,
    /// Process start (Unix seconds): the `created` of every model.
    created: i64,
}

type EventStream = Pin<Box<dyn Stream<Item = Result<pb::ChatEvent, Status>> + Send>>;
type ResponseEventStream = Pin<Box<dyn Stream<Item = Result<pb::ResponseEvent, Status>> + Send>>;

impl ChatApi {
    pub fn new(agent: Agent, keys: ApiKeys) -> Self {
        let created = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
        Self {
            inner: Arc::new(Inner {
                agent,
                keys,
                created,
            }),
        }
    }

    /// Waits for the MCP servers' first starts (a turn that arrives while they start gets
    /// their tools, not a tool-less answer), within the caller's deadline; returns the
    /// servers that are not ready.
    async fn settle(&self, deadline: Option<Instant>) -> Arc<[String]> {
        let settle = self.inner.agent.hub().settle();
        let degraded = match deadline {
            None => settle.await,
            Some(at) => tokio::time::timeout_at(at.into(), settle)
                .await
                .unwrap_or_else(|_| Arc::from(Vec::new())),
        };
        if !degraded.is_empty() {
            tracing::warn!(
                servers = %degraded.join(","),
                "answering without the tools of MCP servers that are not ready"
            );
        }
        degraded
    }

    /// Starts a response for a caller: checked, under the caller's key, after the servers'
    /// first starts.
    async fn start_response(
        &self,
        request: Request<pb::CreateResponseRequest>,
    ) -> Result<
        (
            crate::agent::responses::ResponseStream,
            CancellationToken,
            Option<(Instant, Duration)>,
            Arc<[String]>,
        ),
        Status,
    > {
        let access = self.authorize(request.metadata())?;
        let deadline = deadline(request.metadata());
        let mut request = convert::responses_request(request.into_inner())?;
        count_key(access.as_deref());
        request.access = access;
        let degraded = self.settle(deadline.map(|(at, _)| at)).await;
        let cancel = CancellationToken::new();
        let start = self.inner.agent.create_response(request, cancel.clone());
        let stream = match deadline {
            None => start.await?,
            Some((at, _)) => tokio::time::timeout_at(at.into(), start)
                .await
                .map_err(|_| {
                    cancel.cancel();
                    Status::from(CoreError::DeadlineExceeded)
                })??,
        };
        Ok((stream, cancel, deadline, degraded))
    }

    /// The caller's key name (`None` without keys): whose stored responses it may read.
    fn key_name(&self, metadata: &MetadataMap) -> Result<Option<String>, Status> {
        Ok(self.authorize(metadata)?.map(|a| a.name.clone()))
    }

    /// The caller's key: its access scope (`None`: full access), or UNAUTHENTICATED.
    fn authorize(
        &self,
        metadata: &MetadataMap,
    ) -> Result<Option<Arc<crate::config::KeyAccess>>, Status> {
        let header = metadata.get("authorization").and_then(|v| v.to_str().ok());
        self.inner.keys.check(header).map_err(|e| {
            pb::status::status(
                tonic::Code::Unauthenticated,
                "invalid_api_key",
                e.to_string(),
                None,
            )
        })
    }
}

/// A session id in the caller's key's namespace (see [`SessionId::scoped`]); unchanged
/// without keys.
fn scope(id: Option<SessionId>, owner: Option<&str>) -> Option<SessionId> {
    match owner {
        Some(owner) => id.map(|id| id.scoped(owner)),
        None => id,
    }
}

/// A stored session id back in the caller's terms.
fn unscope(id: &mut Option<String>, owner: Option<&str>) {
    if let (Some(stored), Some(owner)) = (id.as_mut(), owner) {
        *stored = SessionId::unscoped(stored, owner).to_string();
    }
}

/// Counts a turn under its named key (`key_turns_total`).
fn count_key(access: Option<&crate::config::KeyAccess>) {
    if let Some(access) = access {
        crate::telemetry::metrics::metrics()
            .key_turns
            .get_or_create(&crate::telemetry::metrics::KeyLabels {
                key: access.name.clone(),
            })
            .inc();
    }
}

/// Names the not-ready servers in `metadata` (see [`pb::DEGRADED`]).
fn mark_degraded(metadata: &mut MetadataMap, degraded: &[String]) {
    if degraded.is_empty() {
        return;
    }
    if let Ok(value) = tonic::metadata::AsciiMetadataValue::try_from(degraded.join(",")) {
        metadata.insert(pb::DEGRADED, value);
    }
}

/// The client's `grpc-timeout`, less a margin so our own deadline answer (DEADLINE_EXCEEDED,
/// tools cancelled) goes out before tonic's timer drops the call.
fn deadline(metadata: &MetadataMap) -> Option<(Instant, Duration)> {
    let raw = metadata.get("grpc-timeout")?.to_str().ok()?;
    let (digits, unit) = raw.split_at(raw.len().checked_sub(1)?);
    let n: u64 = digits.parse().ok()?;
    let timeout = match unit {
        "H" => Duration::from_secs(n.saturating_mul(3600)),
        "M" => Duration::from_secs(n.saturating_mul(60)),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    };
    let margin = (timeout / 20).min(Duration::from_millis(50));
    Some((Instant::now() + timeout - margin, margin / 2))
}

#[tonic::async_trait]
impl pb::chat_service_server::ChatService for ChatApi {
    async fn chat(
        &self,
        request: Request<pb::ChatRequest>,
    ) -> Result<Response<pb::ChatResponse>, Status> {
        let access = self.authorize(request.metadata())?;
        let deadline = deadline(request.metadata());
        let mut request = convert::agent_request(request.into_inner(), false)?;
        count_key(access.as_deref());
        let owner = access.as_ref().map(|a| a.name.clone());
        request.session = scope(request.session, owner.as_deref());
        request.access = access;
        let degraded = self.settle(deadline.map(|(at, _)| at)).await;
        let cancel = CancellationToken::new();
        let run = self.inner.agent.chat(request, cancel.clone());
        let response = by_deadline(run, cancel, deadline).await?;
        let mut response = convert::response_to_pb(response);
        unscope(&mut response.session_id, owner.as_deref());
        let mut response = Response::new(response);
        mark_degraded(response.metadata_mut(), &degraded);
        Ok(response)
    }

    type StreamChatStream = EventStream;

    async fn stream_chat(
        &self,
        request: Request<pb::ChatRequest>,
    ) -> Result<Response<Self::StreamChatStream>, Status> {
        let access = self.authorize(request.metadata())?;
        let deadline = deadline(request.metadata());
        let mut request = convert::agent_request(request.into_inner(), false)?;
        count_key(access.as_deref());
        let owner = access.as_ref().map(|a| a.name.clone());
        request.session = scope(request.session, owner.as_deref());
        request.access = access;
        let deadline = deadline.map(|(at, _)| at);
        let degraded = self.settle(deadline).await;
        let cancel = CancellationToken::new();
        let rx = self.inner.agent.stream(request, cancel.clone())?;
        let mut response: Response<Self::StreamChatStream> =
            Response::new(Box::pin(event_stream(rx, cancel, deadline, owner)));
        mark_degraded(response.metadata_mut(), &degraded);
        Ok(response)
    }

    async fn list_models(
        &self,
        request: Request<pb::ListModelsRequest>,
    ) -> Result<Response<pb::ListModelsResponse>, Status> {
        let access = self.authorize(request.metadata())?;
        let table = self.inner.agent.models();
        let models = table
            .all()
            .iter()
            .filter(|m| access.as_ref().is_none_or(|a| a.allows_model(&m.id)))
            .map(|m| pb::Model {
                id: m.id.clone(),
                upstream_model: m.upstream_model.clone(),
                tool_mode: m.tool_mode.as_str().to_string(),
                context_window: m.context_window,
                created: self.inner.created,
                owned_by: "mcp-chat".to_string(),
            })
            .collect();
        Ok(Response::new(pb::ListModelsResponse {
            models,
            default_model: table.default_id().to_string(),
        }))
    }

    async fn list_tools(
        &self,
        request: Request<pb::ListToolsRequest>,
    ) -> Result<Response<pb::ListToolsResponse>, Status> {
        let access = self.authorize(request.metadata())?;
        let hub = self.inner.agent.hub();
        let tools = hub
            .tools()
            .iter()
            .filter(|t| {
                access
                    .as_ref()
                    .is_none_or(|a| a.allows_tool(&t.server, &t.tool, &t.name))
            })
            .map(convert::tool_to_pb)
            .collect();
        let servers = hub
            .servers()
            .iter()
            .filter(|s| access.as_ref().is_none_or(|a| a.allows_server(&s.name)))
            .map(convert::server_to_pb)
            .collect();
        Ok(Response::new(pb::ListToolsResponse { tools, servers }))
    }

    async fn get_session(
        &self,
        request: Request<pb::GetSessionRequest>,
    ) -> Result<Response<pb::Session>, Status> {
        let owner = self.key_name(request.metadata())?;
        let id = convert::session_id(&request.get_ref().session_id)?;
        let client_id = id.as_str().to_string();
        let id = scope(Some(id), owner.as_deref()).unwrap_or_else(SessionId::generate);
        let session = self.inner.agent.session(&id).await.map_err(|e| match e {
            CoreError::SessionNotFound(_) => CoreError::SessionNotFound(client_id.clone()),
            other => other,
        })?;
        let pending = self.inner.agent.pending_approvals(&id).await?;
        let mut session = convert::session_to_pb(session, pending);
        session.id = client_id;
        Ok(Response::new(session))
    }

    async fn answer_elicitation(
        &self,
        request: Request<pb::AnswerElicitationRequest>,
    ) -> Result<Response<pb::AnswerElicitationResponse>, Status> {
        self.authorize(request.metadata())?;
        let (id, reply) = convert::elicitation_answer(request.into_inner())?;
        self.inner.agent.answer_elicitation(&id, reply).await?;
        Ok(Response::new(pb::AnswerElicitationResponse {}))
    }

    async fn create_response(
        &self,
        request: Request<pb::CreateResponseRequest>,
    ) -> Result<Response<pb::ResponseObject>, Status> {
        let (stream, cancel, deadline, degraded) = self.start_response(request).await?;
        let collect = crate::agent::responses::collect(stream);
        let object = by_deadline(collect, cancel, deadline).await?;
        let mut response = Response::new(convert::response_object_to_pb(object));
        mark_degraded(response.metadata_mut(), &degraded);
        Ok(response)
    }

    type StreamResponseStream = ResponseEventStream;

    async fn stream_response(
        &self,
        request: Request<pb::CreateResponseRequest>,
    ) -> Result<Response<Self::StreamResponseStream>, Status> {
        let (stream, cancel, deadline, degraded) = self.start_response(request).await?;
        let mut response: Response<Self::StreamResponseStream> = Response::new(Box::pin(
            response_stream(stream, cancel, deadline.map(|(at, _)| at)),
        ));
        mark_degraded(response.metadata_mut(), &degraded);
        Ok(response)
    }

    async fn get_response(
        &self,
        request: Request<pb::GetResponseRequest>,
    ) -> Result<Response<pb::ResponseObject>, Status> {
        let key = self.key_name(request.metadata())?;
        let object = self
            .inner
            .agent
            .response(&request.get_ref().response_id, key.as_deref())
            .await?;
        Ok(Response::new(convert::response_object_to_pb(object)))
    }

    async fn delete_response(
        &self,
        request: Request<pb::GetResponseRequest>,
    ) -> Result<Response<pb::DeleteResponseResponse>, Status> {
        let key = self.key_name(request.metadata())?;
        self.inner
            .agent
            .delete_response(&request.get_ref().response_id, key.as_deref())
            .await?;
        Ok(Response::new(pb::DeleteResponseResponse {}))
    }

    async fn list_response_input_items(
        &self,
        request: Request<pb::GetResponseRequest>,
    ) -> Result<Response<pb::ResponseInputItems>, Status> {
        let key = self.key_name(request.metadata())?;
        let items = self
            .inner
            .agent
            .response_input(&request.get_ref().response_id, key.as_deref())
            .await?;
        Ok(Response::new(pb::ResponseInputItems {
            items: items.into_iter().map(convert::input_entry_to_pb).collect(),
        }))
    }

    async fn delete_session(
        &self,
        request: Request<pb::DeleteSessionRequest>,
    ) -> Result<Response<pb::DeleteSessionResponse>, Status> {
        let owner = self.key_name(request.metadata())?;
        let id = convert::session_id(&request.get_ref().session_id)?;
        let client_id = id.as_str().to_string();
        let id = scope(Some(id), owner.as_deref()).unwrap_or_else(SessionId::generate);
        self.inner
            .agent
            .delete_session(&id)
            .await
            .map_err(|e| match e {
                CoreError::SessionNotFound(_) => CoreError::SessionNotFound(client_id),
                other => other,
            })?;
        Ok(Response::new(pb::DeleteSessionResponse {}))
    }
}

/// Runs a whole-answer call's work to its end or to the caller's deadline (then
/// DEADLINE_EXCEEDED, after cancelling the work and letting it tell its tools within the
/// margin). Dropped by the caller (client gone, tonic's own timer), it cancels the work.
async fn by_deadline<T>(
    work: impl std::future::Future<Output = Result<T, CoreError>>,
    cancel: CancellationToken,
    deadline: Option<(Instant, Duration)>,
) -> Result<T, CoreError> {
    let _guard = cancel.clone().drop_guard();
    tokio::pin!(work);
    match deadline {
        None => work.await,
        Some((at, margin)) => tokio::select! {
            result = &mut work => result,
            () = tokio::time::sleep_until(at.into()) => {
                cancel.cancel();
                let _ = tokio::time::timeout(margin, &mut work).await;
                Err(CoreError::DeadlineExceeded)
            }
        },
    }
}

/// The next item of `rx` (`Some(None)`: the stream ended), or `None` once `deadline` passes.
async fn recv_by<T>(
    rx: &mut tokio::sync::mpsc::Receiver<T>,
    deadline: Option<Instant>,
) -> Option<Option<T>> {
    match deadline {
        None => Some(rx.recv().await),
        Some(at) => tokio::time::timeout_at(at.into(), rx.recv()).await.ok(),
    }
}

/// Response events as proto events, numbered; ends with DEADLINE_EXCEEDED when the deadline
/// passes. Dropping the stream drops the receiver, which cancels the turn.
fn response_stream(
    rx: crate::agent::responses::ResponseStream,
    cancel: CancellationToken,
    deadline: Option<Instant>,
) -> impl Stream<Item = Result<pb::ResponseEvent, Status>> + Send {
    struct State {
        rx: crate::agent::responses::ResponseStream,
        _guard: tokio_util::sync::DropGuard,
        _active: crate::telemetry::metrics::GaugeGuard,
        cancel: CancellationToken,
        deadline: Option<Instant>,
        sequence: u64,
        done: bool,
    }
    let state = State {
        rx,
        _guard: cancel.clone().drop_guard(),
        _active: crate::telemetry::metrics::GaugeGuard::new(
            &crate::telemetry::metrics::metrics().active_streams,
        ),
        cancel,
        deadline,
        sequence: 0,
        done: false,
    };
    futures::stream::unfold(state, |mut s| async move {
        if s.done {
            return None;
        }
        let Some(next) = recv_by(&mut s.rx, s.deadline).await else {
            s.cancel.cancel();
            s.done = true;
            return Some((Err(CoreError::DeadlineExceeded.into()), s));
        };
        let event = next?;
        let event = convert::response_event_to_pb(event, s.sequence);
        s.sequence += 1;
        Some((Ok(event), s))
    })
}

/// Agent events as proto events; ends with DEADLINE_EXCEEDED when the deadline passes.
/// Dropping the stream drops the receiver, which cancels the turn.
fn event_stream(
    rx: crate::agent::AgentStream,
    cancel: CancellationToken,
    deadline: Option<Instant>,
    owner: Option<String>,
) -> impl Stream<Item = Result<pb::ChatEvent, Status>> + Send {
    struct State {
        owner: Option<String>,
        rx: crate::agent::AgentStream,
        _guard: tokio_util::sync::DropGuard,
        _active: crate::telemetry::metrics::GaugeGuard,
        cancel: CancellationToken,
        deadline: Option<Instant>,
        done: bool,
    }
    let state = State {
        owner,
        rx,
        _guard: cancel.clone().drop_guard(),
        _active: crate::telemetry::metrics::GaugeGuard::new(
            &crate::telemetry::metrics::metrics().active_streams,
        ),
        cancel,
        deadline,
        done: false,
    };
    futures::stream::unfold(state, |mut s| async move {
        loop {
            if s.done {
                return None;
            }
            let next = match s.deadline {
                None => Some(s.rx.recv().await),
                Some(at) => tokio::time::timeout_at(at.into(), s.rx.recv()).await.ok(),
            };
            let Some(next) = next else {
                s.cancel.cancel();
                s.done = true;
                return Some((Err(CoreError::DeadlineExceeded.into()), s));
            };
            match next {
                None => return None,
                Some(Ok(event)) => {
                    if let Some(mut event) = convert::event_to_pb(event) {
                        match &mut event.event {
                            Some(pb::chat_event::Event::Start(start)) => {
                                unscope(&mut start.session_id, s.owner.as_deref());
                            }
                            Some(pb::chat_event::Event::Response(r)) => {
                                unscope(&mut r.session_id, s.owner.as_deref());
                            }
                            _ => {}
                        }
                        return Some((Ok(event), s));
                    }
                }
                Some(Err(e)) => {
                    s.done = true;
                    return Some((Err(Status::from(e)), s));
                }
            }
        }
    })
}
