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

/// FNV-1a, 64 bits: a stable, fast fingerprint (resource versions, script texts) that every
/// replica computes alike.
pub fn fingerprint(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325_u64, |hash, b| (hash ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3))
}
