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
    if response.content_length().is_some_and(|n| n > u64::try_from(limit).unwrap_or(u64::MAX)) {
        return Err(BodyError::TooLarge);
    }
    let mut body: Vec<u8> = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(BodyError::Transport)? {
        let needed = body.len() + chunk.len();
        if needed > limit {
            return Err(BodyError::TooLarge);
        }
        if needed > body.capacity() {
            // Doubling, as a Vec grows, but never reserving past the limit.
            let grown = needed.max(body.capacity().saturating_mul(2)).min(limit);
            body.reserve_exact(grown - body.len());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(Bytes::from(body))
}
