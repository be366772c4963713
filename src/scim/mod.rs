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

/// Where the first byte of `bytes` lies that JSON writes escaped in a string (`"`, `\\`, a
/// control character), if any: looked for eight bytes at a time, since almost all text has
/// none.
pub(crate) fn first_escaped(bytes: &[u8]) -> Option<usize> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let escaped = |byte: &u8| *byte < 0x20 || *byte == b'"' || *byte == b'\\';
    // Whether any byte of `word` is below `n` (n at most 128): exact as a yes or no.
    let below = |word: u64, n: u8| word.wrapping_sub(ONES * u64::from(n)) & !word & HIGH != 0;
    let mut chunks = bytes.chunks_exact(8);
    let mut start = 0;
    for chunk in &mut chunks {
        let mut word = [0; 8];
        word.copy_from_slice(chunk);
        let word = u64::from_le_bytes(word);
        if below(word, 0x20) || below(word ^ (ONES * u64::from(b'"')), 1) || below(word ^ (ONES * u64::from(b'\\')), 1)
        {
            return chunk.iter().position(escaped).map(|at| start + at);
        }
        start += 8;
    }
    chunks.remainder().iter().position(escaped).map(|at| start + at)
}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_byte_json_escapes_is_found_wherever_it_lies() {
        let naive = |bytes: &[u8]| bytes.iter().position(|b| *b < 0x20 || *b == b'"' || *b == b'\\');
        // Every byte value at every place of texts up to three words long, among bytes that
        // are never escaped and among ones close to those that are (0x1f, 0x21, 0x5b, 0x5d,
        // 0x7f, 0x80, 0xff).
        for fill in [b'a', 0x21, 0x5b, 0x5d, 0x7f, 0x80, 0xff, b'!', b'#'] {
            for len in 0..=24 {
                let plain = vec![fill; len];
                assert_eq!(first_escaped(&plain), naive(&plain), "{fill} × {len}");
                for at in 0..len {
                    for byte in 0..=255u8 {
                        let mut text = plain.clone();
                        text[at] = byte;
                        assert_eq!(first_escaped(&text), naive(&text), "{byte} at {at} of {len} × {fill}");
                    }
                }
            }
        }
        assert_eq!(first_escaped("ünïcödé text, then a \"quote\"".as_bytes()), Some(25));
    }
}
