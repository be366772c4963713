//! One SCIM request from the listener to its answer: route it to an app, authenticate it, read
//! it, perform its operation, answer it and log it.
//!
//! May import everything below it in `lib.rs`: `state`, `operations`, `app`, `auth`, `error`,
//! `recording`, `script`, `observe`, `config`, `scim`; never `runtime` or `admin`.

pub(crate) mod handle;
pub(crate) mod note;
pub mod request;
pub(crate) mod response;
pub(crate) mod routing;
