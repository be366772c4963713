//! scim-proxy: a SCIM 2.0 server in front of an in-house user API, mapped by a Rhai script.
//!
//! The modules are listed in the order a request meets them, each a stage that imports only the
//! stages listed after it (`tests/integration/layout.rs` holds the tree to that). Three are
//! used by every stage and listed first: `config`, `observe` and, last, the pure SCIM core.
//! Each folder's `mod.rs` says its job and what it may import. Start reading at
//! `runtime::start`, then `pipeline::handle`.
//!
//! - `config`: `proxy.yaml` to typed, validated settings.
//! - `observe`: logs, metrics and traces, which every stage writes to.
//! - `runtime`: start-up (the listeners bound and handed the pipeline), reloads, signals and the
//!   periodic tasks.
//! - `admin`: the admin listener: health, readiness, metrics, recent requests.
//! - `pipeline`: one SCIM request: route, authenticate, read, perform, answer, log.
//! - `state`: what every request handler shares: the apps now serving and their counters.
//! - `operations`: the SCIM operations: reads, lists, writes, conditions, Bulk, audit.
//! - `app`: one application at run time: schema, script, legacy client, caches, health.
//! - `auth`: inbound credentials: bearer tokens, JWTs, Basic, client certificates.
//! - `listener`: the sockets: connections and their limits, TLS; given a handler, it knows no SCIM.
//! - `error`: the one table from every error to a status and `scimType`.
//! - `recording`: exchanges written as mapping test files, and redaction.
//! - `script`: the Rhai mapping scripts: engine, runner, host functions, reload.
//! - `cache`: the ID cache between SCIM ids and the legacy app's keys.
//! - `legacy`: the client of the in-house API: its credentials and circuit breaker.
//! - `scim`: the SCIM core, pure: schemas, filters, PATCH, projection, validation.
//!
//! Off the request path, free to import anything and imported by nothing on it: `authoring`
//! (`scim-proxy test`, `check --idp`) and, with the `demo` feature (on by default), `demo`: the
//! `scim-proxy demo` command, which starts the stand-in API of the workspace crate `acme/`.

pub mod config;
pub mod observe;
pub mod runtime;
pub mod admin;
pub mod pipeline;
pub mod state;
pub(crate) mod operations;
pub mod app;
pub(crate) mod auth;
pub mod listener;
pub mod error;
pub(crate) mod recording;
pub mod script;
pub mod cache;
pub(crate) mod legacy;
pub mod scim;
pub mod authoring;
#[cfg(feature = "demo")]
pub mod demo;
