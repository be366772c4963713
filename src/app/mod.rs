//! One application at run time: its schema, tokens, script, legacy client and ID cache.
//!
//! May import: `auth`, `listener`, `error`, `recording`, `script`, `cache`, `legacy`, and the
//! foundation (`config`, `observe`, `scim`).

pub(crate) mod flight;
pub mod health;

use std::sync::Arc;

use crate::cache::IdCache;
use crate::config::{AppConfig, AttributeOverride, Config, InboundAuth};
use crate::legacy::LegacyClient;
use crate::recording::{Recorder, Redactor};
use crate::scim::ScimError;
use crate::scim::definitions;
use crate::scim::discovery::{AuthScheme, Capabilities};
use crate::scim::path::AttrPath;
use crate::scim::schema::{
    Attribute, ENTERPRISE_USER_SCHEMA, GROUP_SCHEMA, ResourceKind, ResourceSchema, Schema, USER_SCHEMA,
};
use crate::scim::unpublished::Unpublished;
use crate::script::reload::ReloadState;
use crate::script::{AppScript, Compiled, ScriptEngine, ScriptError};

/// Why an app could not be set up at start.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// The script's error is in the message, not the error's source: shown once wherever it
    /// is printed.
    #[error("app {app}: {error}")]
    Script {
        /// The app's name.
        app: String,
        /// Why its script cannot be served.
        error: Box<ScriptError>,
    },
    /// A setting of the app cannot be put into effect: the script's contract, the schema
    /// settings, the legacy client or the recording directory.
    #[error("app {app}: {key}: {detail}")]
    Setup {
        /// The app's name.
        app: String,
        /// The key of the setting, below the app.
        key: String,
        /// What is wrong and the fix.
        detail: String,
    },
}

/// An application served by the proxy.
#[derive(Debug)]
pub struct App {
    pub(crate) config: AppConfig,
    /// How callers authenticate, with the token files and JWT keys it reads.
    pub(crate) auth: crate::auth::AppAuth,
    /// Shared, so that a listing's sieve can hold the schema while the script runs.
    pub(crate) users: Arc<ResourceSchema>,
    /// The Group resource type, when the app serves groups.
    pub(crate) groups: Option<Arc<ResourceSchema>>,
    /// The app's compiled mapping script and its slots: what every operation calls.
    pub script: AppScript,
    pub(crate) ids: Arc<IdCache>,
    pub(crate) capabilities: Capabilities,
    /// Attributes whose `canonicalValues` the app declared as the only ones it knows.
    pub(crate) canonical: Vec<AttrPath>,
    /// Values a create gets for the top-level attributes it leaves out (`schema.overrides.*.default`).
    pub(crate) create_defaults: Vec<CreateDefault>,
    /// What hot reload of the script has done.
    pub(crate) reload: Arc<ReloadState>,
    /// Which values dry-run reports and recordings never show.
    pub(crate) redactor: Redactor,
    /// Where exchanges are recorded as test files, when `record` is configured.
    pub(crate) recorder: Option<Recorder>,
    /// The last answer of the script's `health()`.
    pub(crate) health: Arc<crate::app::health::Health>,
    /// Creates under way, by name: identical ones run one at a time. Shared with the app
    /// this one replaces on a configuration reload, so creates in flight keep their hold.
    pub(crate) creates: Arc<crate::app::flight::KeyedLocks>,
    /// Writes under way, by resource: a read–modify–write of one resource (PUT, PATCH,
    /// deactivation, delete) holds it from its read to its write. Shared across reloads too.
    pub(crate) writes: Arc<crate::app::flight::KeyedLocks>,
    /// Creates (`User:name`) that ended without an answer after a write was sent: the next
    /// create of the name looks for the account first. Bounded, and forgotten after a while.
    pub(crate) uncertain_creates: moka::sync::Cache<String, ()>,
    /// Everything RFC 7643 defines for Users (Enterprise User included, with the app's own
    /// extensions) and for Groups: the names an ignored attribute is counted under.
    known: (ResourceSchema, ResourceSchema),
    /// Ignored attributes already warned about, as `resource:path`; bounded by [`MAX_WARNED`].
    warned: std::sync::Mutex<std::collections::HashSet<String>>,
}

/// A value a create gets when it leaves an attribute out.
#[derive(Debug, Clone)]
pub(crate) struct CreateDefault {
    pub kind: ResourceKind,
    /// The extension URN whose object holds the attribute; `None` for core attributes.
    pub extension: Option<String>,
    /// The attribute's name, in the schema's spelling.
    pub name: String,
    pub value: serde_json::Value,
}

/// How many distinct ignored attributes an app warns about. Past it, hostile clients
/// inventing names cannot grow the set; the metric still counts them.
const MAX_WARNED: usize = 256;

/// The metric label of an ignored attribute outside the schemas the app knows.
pub(crate) const OTHER_ATTRIBUTE: &str = "other";

impl App {
    /// Builds an app from its configuration at start: compiles its script (within
    /// `script.compile_timeout`, blocking the caller), builds its schema and client.
    pub fn build(config: &Config, app: &AppConfig, engine: Arc<ScriptEngine>) -> Result<Self, AppError> {
        let compiled = Self::compile(config, app, &engine)?;
        Self::build_after(config, app, engine, compiled, None)
    }

    /// Compiles the app's script within `script.compile_timeout`, blocking the caller.
    pub(crate) fn compile(config: &Config, app: &AppConfig, engine: &Arc<ScriptEngine>) -> Result<Compiled, AppError> {
        let path = config.script_path(app);
        match config.built_in_scripts.get(&app.script) {
            Some(text) => engine.compile_in_time_blocking((*text).to_owned(), &path),
            None => engine.compile_file(&path),
        }
        .map_err(|error| AppError::Script { app: app.name.clone(), error: Box::new(error) })
    }

    /// Builds an app around its compiled script, to replace `previous` (a configuration
    /// reload) if any: the ID cache carries over when the app keeps its name, legacy base URL
    /// and cache settings.
    pub fn build_after(
        config: &Config,
        app: &AppConfig,
        engine: Arc<ScriptEngine>,
        compiled: Compiled,
        previous: Option<&App>,
    ) -> Result<Self, AppError> {
        let setup = |key: &str, detail: String| AppError::Setup { app: app.name.clone(), key: key.to_owned(), detail };
        if let Some(problem) = compiled.contract_problems().into_iter().next() {
            return Err(setup("script", problem));
        }
        let auth =
            crate::auth::AppAuth::new(config, &app.name, &app.auth).map_err(|(key, detail)| setup(&key, detail))?;
        let users = user_schema(app).map_err(|(key, detail)| setup(key, detail))?;
        let mut legacy = LegacyClient::new(&app.name, &app.legacy, |path| config.relative_path(path))
            .map_err(|detail| setup("legacy", detail))?;
        if let Some(previous) = previous {
            legacy.keep_breaker(previous.script.legacy());
        }
        let ids = previous
            .filter(|p| p.config.legacy.base_url == app.legacy.base_url && p.config.cache == app.cache)
            .map_or_else(|| Arc::new(IdCache::new(&app.cache)), |p| p.ids.clone());
        let mut script = AppScript::new(
            &app.name,
            engine,
            compiled,
            (app.max_concurrent_scripts, app.max_queued_requests),
            Arc::new(legacy),
            ids.clone(),
        );
        if let Some(previous) = previous {
            script.keep_slots(&previous.script);
        }
        let capabilities = Capabilities {
            patch: true,
            bulk: app
                .bulk
                .enabled
                .then(|| (app.bulk.max_operations, app.bulk.max_payload_bytes.min(config.server.max_body_bytes))),
            filter_max_results: app.list.max_results,
            change_password: false,
            sort: true,
            etag: true,
            documentation_uri: None,
            authentication: authentication_schemes(&app.auth),
        };
        let canonical = canonical_paths(app).map_err(|(key, detail)| setup(key, detail))?;
        let mut create_defaults = create_defaults_of(&users, &app.schema.overrides, "schema.overrides")
            .map_err(|(key, detail)| setup(key, detail))?;
        // Groups are served when the mapping can read them; `/ResourceTypes` says so.
        let groups = script
            .arity("get_group")
            .is_some()
            .then(|| group_schema(app))
            .transpose()
            .map_err(|(key, detail)| setup(key, detail))?;
        if let Some(groups) = &groups {
            create_defaults.extend(
                create_defaults_of(groups, &app.schema.group_overrides, "schema.group_overrides")
                    .map_err(|(key, detail)| setup(key, detail))?,
            );
        }
        let extra = app.record.as_ref().map(|r| r.redact.as_slice()).unwrap_or_default();
        let attributes = users.schemas().chain(groups.iter().flat_map(|g| g.schemas())).flat_map(|s| &s.attributes);
        let redactor = Redactor::new(extra, attributes);
        let recorder = match &app.record {
            Some(record) => Some(
                Recorder::new(&app.name, config.relative_path(&record.dir), redactor.clone())
                    .map_err(|detail| setup("record.dir", detail))?,
            ),
            None => None,
        };
        let mut known_extensions = vec![(definitions::enterprise_user_schema(), false)];
        known_extensions.extend(users.extensions.iter().filter(|(s, _)| s.id != ENTERPRISE_USER_SCHEMA).cloned());
        let known = (definitions::user_resource(known_extensions), definitions::group_resource(Vec::new()));
        // What reloads have done, and the last health check, carry over to the app replacing
        // this one while it serves the same script file (a reload of its configuration or of
        // its script): `/readyz` neither forgets an error nor flaps. Else the text the app
        // starts with is its first: the first change is the first reload.
        let fingerprint = script.compiled().fingerprint();
        let same_file = previous.filter(|p| p.script.compiled().path() == script.compiled().path());
        let (reload, health) = match same_file {
            Some(previous) => {
                previous.reload.serve(fingerprint);
                (previous.reload.clone(), previous.health.clone())
            }
            None => (Arc::new(ReloadState::serving(fingerprint)), Arc::default()),
        };
        Ok(Self {
            config: app.clone(),
            auth,
            users: Arc::new(users),
            groups: groups.map(Arc::new),
            script,
            ids,
            capabilities,
            canonical,
            create_defaults,
            reload,
            redactor,
            recorder,
            health,
            creates: previous.map_or_else(Default::default, |p| p.creates.clone()),
            writes: previous.map_or_else(Default::default, |p| p.writes.clone()),
            uncertain_creates: previous.map_or_else(
                || {
                    moka::sync::Cache::builder()
                        .max_capacity(10_000)
                        .time_to_live(std::time::Duration::from_secs(3600))
                        .build()
                },
                |p| p.uncertain_creates.clone(),
            ),
            known,
            warned: Default::default(),
        })
    }

    /// What a request that names attributes this app does not publish does with them.
    pub(crate) fn unpublished(&self) -> Unpublished {
        Unpublished::new(self.config.schema.unsupported_attributes)
    }

    /// The metric label of an ignored attribute: its path in the schemas RFC 7643 defines
    /// (or the app's own extensions), in their spelling, or [`OTHER_ATTRIBUTE`] — a bounded set
    /// whatever names clients invent.
    pub(crate) fn ignored_label(&self, kind: ResourceKind, path: &str) -> String {
        let known = match kind {
            ResourceKind::User => &self.known.0,
            ResourceKind::Group => &self.known.1,
        };
        if let Some(ext) = known.extension(path) {
            return ext.id.clone();
        }
        let parsed = AttrPath::parse(path).ok();
        let Some(resolved) = parsed.as_ref().and_then(|p| known.resolve(p)) else {
            return OTHER_ATTRIBUTE.to_owned();
        };
        let mut label = if resolved.in_extension {
            format!("{}:{}", resolved.schema.id, resolved.attribute.name)
        } else {
            resolved.attribute.name.clone()
        };
        if let Some(sub) = resolved.sub {
            label.push('.');
            label.push_str(&sub.name);
        }
        label
    }

    /// True the first time this app ignores the attribute at `path` of a `kind` resource
    /// (names compared case-insensitively), and never once [`MAX_WARNED`] are known.
    pub(crate) fn first_time_ignored(&self, kind: ResourceKind, path: &str) -> bool {
        let mut warned = match self.warned.lock() {
            Ok(warned) => warned,
            Err(poisoned) => poisoned.into_inner(),
        };
        if warned.len() >= MAX_WARNED {
            return false;
        }
        warned.insert(format!("{}:{}", kind.name(), path.to_ascii_lowercase()))
    }

    /// The schema of a resource type, or 501 when this app does not serve it.
    pub fn resource(&self, kind: ResourceKind) -> Result<&ResourceSchema, ScimError> {
        match kind {
            ResourceKind::User => Ok(&*self.users),
            ResourceKind::Group => self.groups.as_deref().ok_or_else(|| ScimError::NotImplemented {
                feature: "the /Groups endpoint for this application".into(),
            }),
        }
    }

    /// The schema of a resource type as a handle of its own, `None` when this app does not serve it.
    pub(crate) fn shared_resource(&self, kind: ResourceKind) -> Option<Arc<ResourceSchema>> {
        match kind {
            ResourceKind::User => Some(self.users.clone()),
            ResourceKind::Group => self.groups.clone(),
        }
    }

    /// The resource types this app serves.
    pub(crate) fn resource_types(&self) -> impl Iterator<Item = &ResourceSchema> {
        std::iter::once(&*self.users).chain(self.groups.as_deref())
    }

    /// Every schema this app publishes, each once.
    pub(crate) fn schemas(&self) -> impl Iterator<Item = &Schema> {
        let mut seen = std::collections::BTreeSet::new();
        self.resource_types().flat_map(ResourceSchema::schemas).filter(move |s| seen.insert(s.id.clone()))
    }

    /// The app's name, for logs.
    pub(crate) fn name(&self) -> &str {
        &self.config.name
    }
}

/// The ways the app's `auth` accepts a client, for `/ServiceProviderConfig`: static bearer
/// tokens first (what every identity provider can send), then JWTs, Basic, certificates.
fn authentication_schemes(auth: &InboundAuth) -> Vec<AuthScheme> {
    let tokens = !auth.bearer_tokens.is_empty() || !auth.bearer_token_files.is_empty();
    let jwt = auth.jwt.as_ref().map(|jwt| AuthScheme::Jwt { issuer: jwt.issuer.clone() });
    let basic = !auth.basic.is_empty();
    let certificates = auth.client_certificates.is_some();
    [
        tokens.then_some(AuthScheme::BearerToken),
        jwt,
        basic.then_some(AuthScheme::HttpBasic),
        certificates.then_some(AuthScheme::ClientCertificate),
    ]
    .into_iter()
    .flatten()
    .collect()
}

/// The User resource type as this app supports it: what `/Schemas` publishes. Answers the
/// configuration key at fault and why, when the schema settings do not fit RFC 7643.
pub fn user_schema(app: &AppConfig) -> Result<ResourceSchema, (&'static str, String)> {
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
    for (i, extension) in app.schema.user_extensions.iter().enumerate() {
        let schema = definitions::custom_schema_from_json(&extension.schema)
            .map_err(|e| ("schema.user_extensions", format!("[{i}]: {e}")))?;
        if extensions.iter().any(|(s, _)| s.id.eq_ignore_ascii_case(&schema.id)) || schema.id == core.id {
            return Err(("schema.user_extensions", format!("[{i}]: {} is published twice", schema.id)));
        }
        extensions.push((schema, extension.required));
    }
    let mut users = definitions::user_resource(extensions);
    users.core = core;
    apply_overrides(&mut users, &app.schema.overrides, "schema.overrides")?;
    Ok(users)
}

/// The Group resource type as this app supports it, like [`user_schema`].
pub fn group_schema(app: &AppConfig) -> Result<ResourceSchema, (&'static str, String)> {
    let core = definitions::group_schema();
    let core = match &app.schema.group_attributes {
        Some(names) => definitions::restrict(&core, names).map_err(|e| ("schema.group_attributes", e.to_string()))?,
        None => core,
    };
    let mut groups = definitions::group_resource(Vec::new());
    groups.core = core;
    apply_overrides(&mut groups, &app.schema.group_overrides, "schema.group_overrides")?;
    Ok(groups)
}

/// The attributes whose canonical values are enforced: those an override lists values for,
/// and those of custom extensions.
///
/// An override's path is qualified with its resource type's core URN, so that a User override
/// never applies to a Group attribute of the same name (`displayName`), nor the reverse.
fn canonical_paths(app: &AppConfig) -> Result<Vec<AttrPath>, (&'static str, String)> {
    let mut paths = Vec::new();
    let overrides = [
        (&app.schema.overrides, "schema.overrides", USER_SCHEMA),
        (&app.schema.group_overrides, "schema.group_overrides", GROUP_SCHEMA),
    ];
    for (table, key, core) in overrides {
        for (path, changes) in table {
            if changes.canonical_values.is_some() {
                let mut path = AttrPath::parse(path).map_err(|e| (key, e.to_string()))?;
                path.urn.get_or_insert_with(|| core.to_owned());
                paths.push(path);
            }
        }
    }
    for extension in &app.schema.user_extensions {
        let schema = definitions::custom_schema_from_json(&extension.schema)
            .map_err(|e| ("schema.user_extensions", e.to_string()))?;
        for attribute in &schema.attributes {
            let at = |sub: Option<&str>| AttrPath {
                urn: Some(schema.id.clone()),
                name: attribute.name.clone(),
                sub: sub.map(str::to_owned),
            };
            if !attribute.canonical_values.is_empty() {
                paths.push(at(None));
            }
            for sub in attribute.sub_attributes.iter().filter(|s| !s.canonical_values.is_empty()) {
                paths.push(at(Some(&sub.name)));
            }
        }
    }
    Ok(paths)
}

/// The create defaults an app declares for a resource type; each must name a top-level
/// attribute the app publishes and hold a value of its type.
fn create_defaults_of(
    rs: &ResourceSchema,
    overrides: &std::collections::BTreeMap<String, AttributeOverride>,
    key: &'static str,
) -> Result<Vec<CreateDefault>, (&'static str, String)> {
    let mut defaults = Vec::new();
    for (path, changes) in overrides {
        let Some(value) = &changes.default else { continue };
        let parsed = AttrPath::parse(path).map_err(|e| (key, e.to_string()))?;
        let resolved = rs.resolve(&parsed).filter(|_| parsed.sub.is_none()).ok_or_else(|| {
            (key, format!("{path}.default: only a published top-level attribute of {} takes a default", rs.name))
        })?;
        let extension = resolved.in_extension.then(|| resolved.schema.id.clone());
        let name = resolved.attribute.name.clone();
        // The default must be a value the attribute accepts, as if a client had sent it.
        let mut body = serde_json::Map::new();
        body.insert("schemas".into(), serde_json::json!([rs.core.id]));
        match &extension {
            Some(urn) => {
                body.insert(urn.clone(), serde_json::json!({ name.as_str(): value }));
            }
            None => {
                body.insert(name.clone(), value.clone());
            }
        }
        let mut refuse = Unpublished::new(crate::scim::unpublished::UnsupportedAttributes::Refuse);
        let mut probe = rs.clone();
        for attribute in probe
            .core
            .attributes
            .iter_mut()
            .chain(probe.extensions.iter_mut().flat_map(|(s, _)| s.attributes.iter_mut()))
        {
            attribute.required = false;
            if attribute.name == name {
                attribute.mutability = crate::scim::schema::Mutability::ReadWrite;
            }
        }
        crate::scim::validate::validate_resource(
            &probe,
            &serde_json::Value::Object(body),
            crate::scim::validate::WriteMode::Create,
            &mut refuse,
        )
        .map_err(|e| (key, format!("{path}.default: {e}")))?;
        defaults.push(CreateDefault { kind: rs.kind(), extension, name, value: value.clone() });
    }
    Ok(defaults)
}

/// The definition of the attribute a path names, to change its characteristics.
fn attribute_mut<'a>(rs: &'a mut ResourceSchema, path: &AttrPath) -> Option<&'a mut Attribute> {
    let schema = match &path.urn {
        None => &mut rs.core,
        Some(urn) if urn.eq_ignore_ascii_case(&rs.core.id) => &mut rs.core,
        Some(urn) => rs.extensions.iter_mut().map(|(s, _)| s).find(|s| s.id.eq_ignore_ascii_case(urn))?,
    };
    let attribute = schema.attributes.iter_mut().find(|a| a.name.eq_ignore_ascii_case(&path.name))?;
    match &path.sub {
        None => Some(attribute),
        Some(sub) => attribute.sub_attributes.iter_mut().find(|a| a.name.eq_ignore_ascii_case(sub)),
    }
}

/// Sets the characteristics an app declares for some attributes of a resource type.
fn apply_overrides(
    rs: &mut ResourceSchema,
    overrides: &std::collections::BTreeMap<String, AttributeOverride>,
    key: &'static str,
) -> Result<(), (&'static str, String)> {
    for (path, changes) in overrides {
        let parsed = AttrPath::parse(path).map_err(|e| (key, e.to_string()))?;
        let name = rs.name.clone();
        let attribute = attribute_mut(rs, &parsed)
            .ok_or_else(|| (key, format!("{path}: no such attribute is published for {name}")))?;
        apply_override(attribute, changes);
    }
    Ok(())
}

fn apply_override(attribute: &mut Attribute, changes: &AttributeOverride) {
    if let Some(required) = changes.required {
        attribute.required = required;
    }
    if let Some(mutability) = changes.mutability {
        attribute.mutability = mutability;
    }
    if let Some(returned) = changes.returned {
        attribute.returned = returned;
    }
    if let Some(case_exact) = changes.case_exact {
        attribute.case_exact = case_exact;
    }
    if let Some(values) = &changes.canonical_values {
        attribute.canonical_values = values.clone();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Variables;

    #[test]
    fn canonical_values_are_enforced_on_their_own_resource_type() {
        let text = r#"
apps:
  - name: a
    base_path: /scim
    script: a.rhai
    auth: {bearer_tokens: ["0123456789abcdef"]}
    legacy: {base_url: "http://127.0.0.1:1/api"}
    schema:
      overrides:
        displayName: {canonical_values: [A]}
      group_overrides:
        members.type: {canonical_values: [User]}
"#;
        let config = Config::parse(text, "test.yaml", &Variables::default()).unwrap();
        let paths = canonical_paths(&config.apps[0]).unwrap();
        let on = |rs: &ResourceSchema| -> Vec<String> {
            paths.iter().filter(|p| rs.resolve(p).is_some()).map(ToString::to_string).collect()
        };
        let users = definitions::user_resource(vec![]);
        let groups = definitions::group_resource(vec![]);
        assert_eq!(on(&users), vec!["urn:ietf:params:scim:schemas:core:2.0:User:displayName"]);
        assert_eq!(on(&groups), vec!["urn:ietf:params:scim:schemas:core:2.0:Group:members.type"]);
    }
}
