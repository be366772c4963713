//! Reading an answer's body as it streams in, never holding more than a limit.

use bytes::Bytes;

/// Why the body of an answer was not read whole.
#[derive(Debug)]
pub(crate) enum BodyError {
    /// It is larger than the limit, or its `Content-Length` says it is.
    TooLarge,
    /// The connection failed or timed out while it was read.
    Transport(reqwest::Error),
}

/// Reads the body of an answer as it streams in, holding at most `limit` bytes: a larger
/// `Content-Length` is refused before a byte of the body is read, and a body that grows past
/// the limit is dropped there, which closes its connection; the rest is never read. For the
/// legacy app's answers, the token endpoint's and the JWKS document.
pub(crate) async fn read_bounded(mut response: reqwest::Response, limit: usize) -> Result<Bytes, BodyError> {
    let mut body = Bounded::new(limit, response.content_length()).ok_or(BodyError::TooLarge)?;
    while let Some(chunk) = response.chunk().await.map_err(BodyError::Transport)? {
        if !body.push(&chunk) {
            return Err(BodyError::TooLarge);
        }
    }
    Ok(body.finish())
}

/// A body gathered chunk by chunk, never past a limit.
pub(crate) struct Bounded {
    bytes: Vec<u8>,
    limit: usize,
}

impl Bounded {
    /// An empty body; `None` when the length the answer declares is over the limit already.
    pub(crate) fn new(limit: usize, declared: Option<u64>) -> Option<Self> {
        if declared.is_some_and(|n| n > u64::try_from(limit).unwrap_or(u64::MAX)) {
            return None;
        }
        Some(Self { bytes: Vec::new(), limit })
    }

    /// Adds a chunk; false when it would take the body past the limit.
    pub(crate) fn push(&mut self, chunk: &[u8]) -> bool {
        let needed = self.bytes.len() + chunk.len();
        if needed > self.limit {
            return false;
        }
        if needed > self.bytes.capacity() {
            // Doubling, as a Vec grows, but never reserving past the limit.
            let grown = needed.max(self.bytes.capacity().saturating_mul(2)).min(self.limit);
            self.bytes.reserve_exact(grown - self.bytes.len());
        }
        self.bytes.extend_from_slice(chunk);
        true
    }

    /// The body gathered.
    pub(crate) fn finish(self) -> Bytes {
        Bytes::from(self.bytes)
    }
}
