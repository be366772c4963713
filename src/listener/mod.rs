//! The listeners' sockets: accepting connections, holding them to their limits, and TLS.
//!
//! May import: `config`, `observe`, `scim` (for echoing values). Knows nothing of SCIM
//! requests: the handler it serves is given to it.

pub(crate) mod server;
pub mod shards;
pub mod tls;
