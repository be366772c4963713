//! The SCIM core (RFC 7643/7644): pure, I/O-free rules every request goes through.
//!
//! May import: nothing else of the crate: no I/O, no tokio, no rhai.

pub mod definitions;
pub(crate) mod discovery;
pub(crate) mod error;
pub mod evaluate;
pub mod filter;
pub mod params;
pub mod patch;
pub mod path;
pub mod projection;
pub mod schema;
pub mod sort;
pub mod unpublished;
pub mod validate;
pub(crate) mod value;

pub use error::ScimError;

/// FNV-1a, 64 bits: a stable, fast fingerprint (resource versions, script texts) that every
/// replica computes alike.
pub(crate) fn fingerprint(bytes: &[u8]) -> u64 {
    let mut hasher = Fingerprinter::default();
    hasher.update(bytes);
    hasher.finish()
}

/// [`fingerprint`] of bytes given piece by piece, e.g. written by a serializer: the same
/// value as over the whole buffer, without building it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Fingerprinter(u64);

impl Default for Fingerprinter {
    fn default() -> Self {
        Self(0xcbf2_9ce4_8422_2325)
    }
}

impl Fingerprinter {
    /// Adds bytes.
    pub(crate) fn update(&mut self, bytes: &[u8]) {
        self.0 = bytes.iter().fold(self.0, |hash, b| (hash ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3));
    }

    /// The fingerprint of everything added.
    pub(crate) fn finish(&self) -> u64 {
        self.0
    }
}

impl std::io::Write for Fingerprinter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.update(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
