//! The model table: configured model ids mapped to where and how each is called.

use std::{collections::HashMap, sync::Arc};

use crate::{
    config::{Config, ModelParams, Secret, ToolMode},
    error::CoreError,
    llm::{Endpoint, LlmError},
    telemetry::metrics::ModelMetrics,
};

/// One routable model.
#[derive(Debug, Clone)]
pub struct ModelRoute {
    pub id: String,
    pub upstream_model: String,
    pub endpoint: Endpoint,
    pub tool_mode: ToolMode,
    pub context_window: u32,
    pub defaults: ModelParams,
    /// Forces the name of the completion-length limit (`[[models]] max_tokens_field`).
    pub max_tokens_field: Option<crate::config::MaxTokensField>,
    /// This model's upstream metric series, resolved once.
    pub metrics: ModelMetrics,
}

/// All models, looked up by id; built once at start-up.
#[derive(Debug, Clone)]
pub struct ModelTable {
    by_id: HashMap<String, Arc<ModelRoute>>,
    ordered: Vec<Arc<ModelRoute>>,
    default_id: String,
}

impl ModelTable {
    /// Builds the table; fails only on an upstream URL the validated config would not hold.
    pub fn from_config(config: &Config) -> Result<Self, LlmError> {
        let ordered = config
            .effective_models()
            .into_iter()
            .map(|m| {
                let base_url = m
                    .base_url
                    .unwrap_or_else(|| config.upstream.base_url.clone());
                let api_key = m.api_key.unwrap_or_else(|| config.upstream.api_key.clone());
                Ok(Arc::new(ModelRoute {
                    upstream_model: m.upstream_model.unwrap_or_else(|| m.id.clone()),
                    endpoint: Endpoint::new(base_url, api_key, m.headers)?
                        .with_stream_usage(m.stream_usage.unwrap_or(true)),
                    metrics: ModelMetrics::new(&m.id),
                    id: m.id,
                    tool_mode: m.tool_mode,
                    context_window: m.context_window,
                    defaults: m.params,
                    max_tokens_field: m.max_tokens_field,
                }))
            })
            .collect::<Result<Vec<_>, LlmError>>()?;
        let by_id = ordered.iter().map(|m| (m.id.clone(), m.clone())).collect();
        Ok(Self {
            by_id,
            ordered,
            default_id: config.upstream.default_model.clone(),
        })
    }

    /// The model for a request: its id, or the default when it names none.
    pub fn resolve(&self, id: Option<&str>) -> Result<Arc<ModelRoute>, CoreError> {
        let id = match id {
            Some(id) if !id.is_empty() => id,
            _ => &self.default_id,
        };
        self.by_id
            .get(id)
            .cloned()
            .ok_or_else(|| CoreError::ModelNotFound(id.to_string()))
    }

    pub fn all(&self) -> &[Arc<ModelRoute>] {
        &self.ordered
    }

    pub fn default_id(&self) -> &str {
        &self.default_id
    }

    /// True when the model's upstream needs a key and none is configured.
    pub fn missing_key(route: &ModelRoute) -> bool {
        route.endpoint.api_key == Secret::default()
            && route.endpoint.base_url.contains("api.openai.com")
    }
}
