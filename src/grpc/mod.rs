//! The gRPC edge: `mcpchat.v1.ChatService` over the agent core, plus the standard health
//! and reflection services. The HTTP gateway calls [`ChatApi`] in process, so whatever the
//! product can do is reachable here first.

use std::sync::Arc;

use tonic::{Request, Response, Status};

use crate::{Config, pb};

/// The ChatService implementation. Cheap to clone; shared by the gRPC server and the gateway.
#[derive(Clone)]
pub struct ChatApi {
    config: Arc<Config>,
    /// Process start (Unix seconds): the `created` of every model.
    created: i64,
}

impl ChatApi {
    pub fn new(config: Arc<Config>) -> Self {
        let created = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
        Self { config, created }
    }

    pub fn config(&self) -> &Config {
        &self.config
    }
}

type EventStream =
    std::pin::Pin<Box<dyn futures::Stream<Item = Result<pb::ChatEvent, Status>> + Send>>;

#[tonic::async_trait]
impl pb::chat_service_server::ChatService for ChatApi {
    async fn chat(
        &self,
        _request: Request<pb::ChatRequest>,
    ) -> Result<Response<pb::ChatResponse>, Status> {
        Err(Status::unimplemented("Chat is not implemented yet"))
    }

    type StreamChatStream = EventStream;

    async fn stream_chat(
        &self,
        _request: Request<pb::ChatRequest>,
    ) -> Result<Response<Self::StreamChatStream>, Status> {
        Err(Status::unimplemented("StreamChat is not implemented yet"))
    }

    async fn list_models(
        &self,
        _request: Request<pb::ListModelsRequest>,
    ) -> Result<Response<pb::ListModelsResponse>, Status> {
        let config = &self.config;
        let models = config
            .effective_models()
            .into_iter()
            .map(|m| pb::Model {
                upstream_model: m.upstream_model.clone().unwrap_or_else(|| m.id.clone()),
                id: m.id,
                tool_mode: m.tool_mode.as_str().to_string(),
                context_window: m.context_window,
                created: self.created,
                owned_by: "mcp-chat".to_string(),
            })
            .collect();
        Ok(Response::new(pb::ListModelsResponse {
            models,
            default_model: config.upstream.default_model.clone(),
        }))
    }

    async fn list_tools(
        &self,
        _request: Request<pb::ListToolsRequest>,
    ) -> Result<Response<pb::ListToolsResponse>, Status> {
        Err(Status::unimplemented("ListTools is not implemented yet"))
    }

    async fn get_session(
        &self,
        _request: Request<pb::GetSessionRequest>,
    ) -> Result<Response<pb::Session>, Status> {
        Err(Status::unimplemented("GetSession is not implemented yet"))
    }

    async fn delete_session(
        &self,
        _request: Request<pb::DeleteSessionRequest>,
    ) -> Result<Response<pb::DeleteSessionResponse>, Status> {
        Err(Status::unimplemented(
            "DeleteSession is not implemented yet",
        ))
    }
}
