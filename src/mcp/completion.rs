//! `completion/complete` for the MCP clients of mcp-chat: the reference the client names (a
//! prompt under its exposed name, or a resource template under its exposed URI template) is
//! mapped back to the server that offers it and that server's own name for it, and the
//! request is forwarded there. A server that does not offer completions answers with no
//! values, as the specification allows; an unknown prompt or template is an error.

use rmcp::model::{CompleteRequestParams, CompleteResult, CompletionInfo, Reference};

use super::{
    McpHub,
    proxy::{Live, ProxyError, prefixed_uri, upstream},
};

impl McpHub {
    /// Forwards `completion/complete` to the server that owns what `request` refers to.
    pub async fn complete(
        &self,
        mut request: CompleteRequestParams,
        allowed: &(dyn Fn(&str) -> bool + Sync),
    ) -> Result<CompleteResult, ProxyError> {
        let (live, own) = match &request.r#ref {
            Reference::Prompt(p) => self.prompt_owner(&p.name, allowed).await?,
            Reference::Resource(r) => self.template_owner(&r.uri, allowed).await?,
            other => return Err(ProxyError::NotFound(other.reference_type().to_string())),
        };
        if !live.completions {
            return Ok(CompleteResult::new(CompletionInfo::default()));
        }
        match &mut request.r#ref {
            Reference::Prompt(p) => p.name = own,
            Reference::Resource(r) => r.uri = own,
            _ => {}
        }
        live.peer
            .complete(request)
            .await
            .map_err(|e| upstream(&live.server, e))
    }

    /// The server offering the prompt exposed as `name`, and its own name for it.
    async fn prompt_owner(
        &self,
        name: &str,
        allowed: &(dyn Fn(&str) -> bool + Sync),
    ) -> Result<(Live, String), ProxyError> {
        let server = self
            .prompts_of(allowed)
            .await
            .into_iter()
            .find(|(_, exposed, _, _)| exposed == name)
            .map(|(server, _, prompt, _)| (server, prompt.name));
        self.owner(server, name)
    }

    /// The server offering the resource template exposed as `uri`, and its own template.
    async fn template_owner(
        &self,
        uri: &str,
        allowed: &(dyn Fn(&str) -> bool + Sync),
    ) -> Result<(Live, String), ProxyError> {
        let server = self
            .list_resource_templates(allowed)
            .await
            .into_iter()
            .find(|(_, t)| t.uri_template == uri)
            .map(|(server, t)| {
                let prefix = prefixed_uri(&server, "");
                let own = t
                    .uri_template
                    .strip_prefix(&prefix)
                    .unwrap_or(&t.uri_template)
                    .to_string();
                (server, own)
            });
        self.owner(server, uri)
    }

    fn owner(
        &self,
        found: Option<(String, String)>,
        exposed: &str,
    ) -> Result<(Live, String), ProxyError> {
        let (server, own) = found.ok_or_else(|| ProxyError::NotFound(exposed.to_string()))?;
        self.live()
            .into_iter()
            .find(|l| l.server == server)
            .map(|live| (live, own))
            .ok_or_else(|| ProxyError::NotFound(exposed.to_string()))
    }
}
