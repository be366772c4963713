//! Integration tests: the real proxy and the bundled in-house API on 127.0.0.1:0, spoken to over HTTP.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test fixtures fail loudly

#[path = "integration/support.rs"]
mod support;

#[path = "integration/cache.rs"]
mod cache;
#[path = "integration/discovery.rs"]
mod discovery;
#[path = "integration/errors.rs"]
mod errors;
#[path = "integration/operations.rs"]
mod operations;
#[path = "integration/users.rs"]
mod users;
#[path = "integration/cli.rs"]
mod cli;
#[path = "integration/protocol.rs"]
mod protocol;
#[path = "integration/patch.rs"]
mod patch;
#[path = "integration/fibers.rs"]
mod fibers;
#[path = "integration/groups.rs"]
mod groups;
#[path = "integration/reload.rs"]
mod reload;
#[path = "integration/script_bounds.rs"]
mod script_bounds;
#[path = "integration/example_login_keyed.rs"]
mod example_login_keyed;
#[path = "integration/example_offset_list.rs"]
mod example_offset_list;
#[path = "integration/example_roles.rs"]
mod example_roles;
#[path = "../examples/docstore/server.rs"]
#[allow(dead_code)] // the example binary uses part of it, these tests another
mod docstore;
#[path = "integration/example_documents.rs"]
mod example_documents;
#[path = "integration/idp_replays.rs"]
mod idp_replays;
#[path = "integration/layout.rs"]
mod layout;
#[path = "integration/readme_tour.rs"]
mod readme_tour;
#[path = "integration/docs_examples.rs"]
mod docs_examples;
#[path = "integration/mapping_tests.rs"]
mod mapping_tests;
#[path = "integration/observability.rs"]
mod observability;
#[path = "integration/probe.rs"]
mod probe;
#[path = "integration/config_reload.rs"]
mod config_reload;
#[path = "integration/outbound.rs"]
mod outbound;
#[path = "integration/deploy.rs"]
mod deploy;
#[path = "integration/tls.rs"]
mod tls;
#[path = "integration/inbound_auth.rs"]
mod inbound_auth;
#[path = "integration/remote_answers.rs"]
mod remote_answers;
#[path = "integration/faults.rs"]
mod faults;
#[path = "integration/sandbox.rs"]
mod sandbox;
#[path = "integration/hostile.rs"]
mod hostile;
#[path = "integration/unpublished.rs"]
mod unpublished;
#[path = "integration/admin_requests.rs"]
mod admin_requests;
#[path = "integration/concurrency.rs"]
mod concurrency;
#[path = "integration/connections.rs"]
mod connections;

/// The process shutting down past its grace time, and on a second signal.
#[path = "integration/lifecycle.rs"]
mod lifecycle;
#[path = "integration/traces.rs"]
mod traces;
