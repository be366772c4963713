//! One application at run time: its schema, tokens, script, legacy client and ID cache.

use std::sync::Arc;

use crate::cache::IdCache;
use crate::config::{AppConfig, Config};
use crate::legacy::LegacyClient;
use crate::scim::definitions;
use crate::scim::discovery::Capabilities;
use crate::scim::schema::ResourceSchema;
use crate::script::{AppScript, ScriptEngine, ScriptError};

/// Why an app could not be set up at start.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("app {app}: {source}")]
    Script { app: String, source: Box<ScriptError> },
    #[error("app {app}: {key}: {detail}")]
    Setup { app: String, key: String, detail: String },
}

/// An application served by the proxy.
#[derive(Debug)]
pub struct App {
    pub config: AppConfig,
    pub users: ResourceSchema,
    pub script: AppScript,
    pub ids: Arc<IdCache>,
    pub capabilities: Capabilities,
}

impl App {
    /// Builds an app from its configuration: compiles its script, builds its schema and client.
    pub fn build(config: &Config, app: &AppConfig, engine: Arc<ScriptEngine>) -> Result<Self, AppError> {
        let setup = |key: &str, detail: String| AppError::Setup { app: app.name.clone(), key: key.to_owned(), detail };
        let compiled = engine
            .compile_file(&config.script_path(app))
            .map_err(|source| AppError::Script { app: app.name.clone(), source: Box::new(source) })?;
        if let Some(problem) = compiled.contract_problems().into_iter().next() {
            return Err(setup("script", problem));
        }
        let users = user_schema(app).map_err(|(key, detail)| setup(key, detail))?;
        let legacy = LegacyClient::new(&app.name, &app.legacy).map_err(|detail| setup("legacy", detail))?;
        let ids = Arc::new(IdCache::new(&app.cache));
        let script =
            AppScript::new(&app.name, engine, compiled, app.max_concurrent_scripts, Arc::new(legacy), ids.clone());
        let capabilities = Capabilities {
            patch: false,
            bulk: None,
            filter_max_results: app.list.max_results,
            change_password: false,
            sort: true,
            etag: true,
            documentation_uri: None,
        };
        Ok(Self { config: app.clone(), users, script, ids, capabilities })
    }

    /// The app's name, for logs.
    pub fn name(&self) -> &str {
        &self.config.name
    }
}

/// The User resource type as this app supports it.
fn user_schema(app: &AppConfig) -> Result<ResourceSchema, (&'static str, String)> {
    let core = definitions::user_schema();
    let core = match &app.schema.user_attributes {
        Some(names) => definitions::restrict(&core, names).map_err(|e| ("schema.user_attributes", e.to_string()))?,
        None => core,
    };
    let mut extensions = Vec::new();
    if let Some(names) = &app.schema.enterprise_user {
        let enterprise = definitions::restrict(&definitions::enterprise_user_schema(), names)
            .map_err(|e| ("schema.enterprise_user", e.to_string()))?;
        extensions.push((enterprise, false));
    }
    let mut users = definitions::user_resource(extensions);
    users.core = core;
    Ok(users)
}
