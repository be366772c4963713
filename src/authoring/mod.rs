//! Tools for writing a mapping, off the request path: `scim-proxy test` (mapping test files
//! run against a scripted legacy app) and `scim-proxy check --idp` (what an identity
//! provider's default mapping will send).
//!
//! May import anything; nothing on the request path imports it.

pub mod idp;
pub mod mapping_test;
