//! One entry of `apps`: its endpoint, limits, ID cache, listing, schema, bulk and recording.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::server::DEFAULT_MAX_BODY_BYTES;
use super::{InboundAuth, LegacyConfig, count, duration, secs};

/// One application: a SCIM endpoint under `base_path`, mapped by `script` onto `legacy`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppConfig {
    /// Short name, used in logs and metrics.
    pub name: String,
    /// Path prefix of the SCIM endpoint, e.g. `/scim/v2`.
    pub(crate) base_path: String,
    /// The Rhai mapping script, relative to the configuration file.
    pub script: PathBuf,
    /// How identity providers authenticate to this app.
    pub(crate) auth: InboundAuth,
    /// The in-house API behind this app.
    pub legacy: LegacyConfig,
    /// Deadline for one whole SCIM request, script and legacy calls included.
    #[serde(default = "secs::<30>", with = "duration")]
    pub(crate) request_timeout: Duration,
    /// Mapping scripts of this app running at the same time; further requests wait.
    #[serde(default = "count::<16>")]
    pub(crate) max_concurrent_scripts: usize,
    /// Requests of this app that may wait for a script slot; past them, `503` at once.
    #[serde(default = "count::<256>")]
    pub(crate) max_queued_requests: usize,
    /// The ID-mapping cache.
    #[serde(default)]
    pub(crate) cache: CacheConfig,
    /// Listing and filtering limits.
    #[serde(default)]
    pub list: ListConfig,
    /// What happens on `DELETE /Users/{id}`.
    #[serde(default)]
    pub user_delete: UserDelete,
    /// Which attributes the legacy app can hold, published in `/Schemas`.
    #[serde(default)]
    pub schema: SchemaConfig,
    /// Limits of `POST /Bulk`.
    #[serde(default)]
    pub(crate) bulk: BulkConfig,
    /// Write every request of this app, with its legacy calls, as a test file (redacted).
    #[serde(default)]
    pub(crate) record: Option<RecordConfig>,
}

/// Sizes and lifetime of the ID-mapping cache.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CacheConfig {
    /// Resources (users and groups together) the ID cache remembers; the entries scripts keep
    /// are bounded by it separately. Sized in the README's ID-cache paragraphs.
    pub max_entries: u64,
    /// Time after which an entry is dropped.
    #[serde(with = "duration")]
    pub ttl: Duration,
}

impl Default for CacheConfig {
    fn default() -> Self {
        Self { max_entries: 10_000, ttl: Duration::from_secs(3600) }
    }
}

/// Limits of listing and filtering.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ListConfig {
    /// Page size when the IdP gives no `count`.
    pub(crate) default_count: usize,
    /// Largest page returned (`filter.maxResults` in `/ServiceProviderConfig`).
    pub(crate) max_results: usize,
    /// Most resources the proxy filters and sorts in memory; past it a list is `400 tooMany`.
    pub max_scan: usize,
}

impl Default for ListConfig {
    fn default() -> Self {
        Self { default_count: 100, max_results: 1000, max_scan: 50_000 }
    }
}

/// Behaviour of `DELETE /Users/{id}`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UserDelete {
    /// Call the script's `delete_user`.
    #[default]
    Delete,
    /// Set `active: false` through `replace_user`; the user stays readable.
    Deactivate,
}

/// Recording of exchanges into mapping test files.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RecordConfig {
    /// The folder the files go to, relative to the configuration file; created if missing.
    pub dir: PathBuf,
    /// More names (JSON keys, SCIM attributes) whose values are written as `[redacted]`.
    #[serde(default)]
    pub redact: Vec<String>,
}

/// Limits of `POST /Bulk` (RFC 7644 §3.7), published in `/ServiceProviderConfig`.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct BulkConfig {
    /// Whether `/Bulk` is offered at all.
    pub enabled: bool,
    /// Most operations in one request; more is `413`.
    pub max_operations: usize,
    /// Largest bulk request body in bytes (at most `server.max_body_bytes`); larger is `413`.
    pub max_payload_bytes: usize,
}

impl Default for BulkConfig {
    fn default() -> Self {
        Self { enabled: true, max_operations: 100, max_payload_bytes: DEFAULT_MAX_BODY_BYTES }
    }
}

/// The attributes an app supports; requests are validated and `/Schemas` published from this.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SchemaConfig {
    /// Core User attributes the app supports (`name` keeps all sub-attributes, `name.givenName`
    /// just that one); absent means all of RFC 7643 §4.1.
    pub(crate) user_attributes: Option<Vec<String>>,
    /// Enterprise User extension attributes the app supports; absent means the extension is
    /// not published.
    pub(crate) enterprise_user: Option<Vec<String>>,
    /// Core Group attributes the app supports; absent means all of RFC 7643 §4.2. Groups are
    /// served when the script defines `get_group`.
    pub(crate) group_attributes: Option<Vec<String>>,
    /// Custom extension schemas of the User resource type.
    pub(crate) user_extensions: Vec<ExtensionConfig>,
    /// Characteristics this app changes for some attributes, by path (`emails.type`,
    /// `urn:…:enterprise:2.0:User:department`): what the app's data really allows.
    pub(crate) overrides: BTreeMap<String, AttributeOverride>,
    /// The same for Group attributes (`members.display`).
    pub(crate) group_overrides: BTreeMap<String, AttributeOverride>,
    /// What happens to an attribute a request names that this app does not publish:
    /// `ignore` (dropped, named in the audit record, a metric and a warning) or `refuse`
    /// (`400`).
    pub unsupported_attributes: crate::scim::unpublished::UnsupportedAttributes,
}

/// Characteristics of one attribute that an app sets differently from RFC 7643.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct AttributeOverride {
    /// `true` when the app cannot hold the resource without it.
    pub required: Option<bool>,
    /// `readOnly` for values the app assigns itself, `immutable` for values set once.
    pub mutability: Option<crate::scim::schema::Mutability>,
    /// When the attribute is returned.
    pub returned: Option<crate::scim::schema::Returned>,
    /// Whether values compare case-sensitively.
    pub case_exact: Option<bool>,
    /// The values the app knows, published as `canonicalValues`.
    pub canonical_values: Option<Vec<String>>,
    /// The value a create that leaves this (top-level) attribute out gets, as the app itself
    /// would assign it: with one, a `required` attribute may be left out of a `POST`.
    pub default: Option<serde_json::Value>,
}

/// A custom schema extension, written as `/Schemas` publishes one.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ExtensionConfig {
    /// Whether every resource must carry the extension.
    #[serde(default)]
    pub required: bool,
    /// The schema: `id` (a URN), `name`, `description`, `attributes` with their characteristics.
    pub schema: serde_json::Value,
}
