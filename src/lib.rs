//! scim-proxy: a SCIM 2.0 server in front of an in-house user API, mapped by a Rhai script.
//!
//! The modules follow a request: configuration and start-up (and what a reload applies), the listener (and its TLS), the
//! admin side (health and its probe command, metrics, recent requests, traces), routing to an app, authentication, reading the request, the
//! SCIM core, the operation and its audit record, the mapping script, the legacy client (with
//! its credentials and circuit breaker) and the ID cache, then the response and the error table. Last come the
//! demo command (with the `demo` feature; its API is the workspace crate `acme/`) and the tools for writing
//! mappings: test files, recordings, `scim-proxy test`, and the identity-provider profiles of `scim-proxy check --idp`.

pub mod config;
pub mod telemetry;
pub mod signals;
pub mod proxy;
pub mod restart_only;
pub mod server;
pub mod tls;
pub mod admin;
pub mod recent;
pub mod health;
pub mod probe;
pub mod metrics;
pub mod metrics_process;
pub mod trace;
pub mod app;
pub mod routing;
pub mod auth;
pub mod request;
pub mod scim;
pub mod operations;
pub mod audit;
pub mod flight;
pub mod bulk;
pub mod script;
pub mod legacy;
pub mod legacy_auth;
pub mod legacy_breaker;
pub mod cache;
pub mod response;
pub mod error;
#[cfg(feature = "demo")]
pub mod demo;
pub mod fixture;
pub mod record;
pub mod mapping_test;
pub mod idp;
