//! The SCIM core (RFC 7643/7644): pure, I/O-free rules every request goes through.

pub mod definitions;
pub mod discovery;
pub mod error;
pub mod evaluate;
pub mod filter;
pub mod patch;
pub mod path;
pub mod projection;
pub mod schema;
pub mod sort;
pub mod validate;
pub mod value;

pub use error::ScimError;
