//! When a failed legacy call is tried again: which failures, how long to wait (the app's own
//! `Retry-After`, else full-jitter backoff), and never past the request's deadline.

use std::time::{Duration, SystemTime};

use super::{LegacyClient, LegacyError, LegacyResponse, Prepared};

/// Statuses after which a call safe to repeat is retried, and which count against the breaker.
pub(super) fn transient_status(status: u16) -> bool {
    matches!(status, 429 | 502 | 503 | 504)
}

/// A retry is not worth making with less time than this left before the deadline.
pub(super) const MIN_ATTEMPT_TIME: Duration = Duration::from_millis(50);

impl LegacyClient {
    /// How long to wait before trying a call again after try number `tried`, and why; `None`
    /// when it must not be tried again.
    ///
    /// No connection means nothing was sent: any call may be tried again. A reset, a timeout
    /// and a 502, 503, 504 or 429 answer are retried only for calls safe to repeat. The wait is
    /// the legacy app's `Retry-After` when it sent one, else a random time up to
    /// `base_delay × 2^(tried-1)`, capped at `max_delay` ("full jitter": clients that failed
    /// together do not come back together).
    pub(super) fn retry_wait(
        &self,
        prepared: &Prepared,
        result: &Result<LegacyResponse, LegacyError>,
        tried: u32,
    ) -> Option<(Duration, &'static str)> {
        if tried >= self.retry.attempts {
            return None;
        }
        let ceiling = self.retry.base_delay.saturating_mul(1 << (tried - 1).min(20)).min(self.retry.max_delay);
        let backoff = Duration::from_nanos(fastrand::u64(0..=u64::try_from(ceiling.as_nanos()).unwrap_or(u64::MAX)));
        match result {
            Err(LegacyError::Connect { .. }) => Some((backoff, "connect")),
            Err(LegacyError::Timeout { .. }) if prepared.idempotent => Some((backoff, "timeout")),
            Err(LegacyError::Transport { .. }) if prepared.idempotent => Some((backoff, "transport")),
            Ok(response) if prepared.idempotent && transient_status(response.status) => {
                let asked = response.headers.get(http::header::RETRY_AFTER).and_then(|v| v.to_str().ok());
                let reason = if response.status == 429 { "http_429" } else { "http_5xx" };
                Some((asked.and_then(retry_after).unwrap_or(backoff), reason))
            }
            _ => None,
        }
    }
}

/// The longest wait a `Retry-After` is read as. A legacy app may send any number of seconds
/// (`18446744073709551615` overflowed the retry arithmetic) or a date in the year 9999; the
/// identity provider is told at most `error::MAX_RETRY_AFTER` of it anyway.
pub(crate) const LONGEST_RETRY_AFTER: Duration = Duration::from_secs(24 * 3600);

/// A `Retry-After` value (RFC 9110 §10.2.3): seconds, or an HTTP date, as a wait from now, at
/// most [`LONGEST_RETRY_AFTER`]. A date in the past is no wait; anything else unreadable
/// (a sign, a fraction, a word) is `None`.
pub(crate) fn retry_after(value: &str) -> Option<Duration> {
    let value = value.trim();
    if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        // Too many digits for a u64 is still a number of seconds: a long one.
        let seconds = value.parse::<u64>().unwrap_or(u64::MAX);
        return Some(Duration::from_secs(seconds).min(LONGEST_RETRY_AFTER));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(SystemTime::now()).unwrap_or(Duration::ZERO).min(LONGEST_RETRY_AFTER))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_retry_after_as_seconds_or_a_date() {
        assert_eq!(retry_after(" 7 "), Some(Duration::from_secs(7)));
        let soon = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(30));
        let wait = retry_after(&soon).unwrap();
        assert!(wait > Duration::from_secs(28) && wait <= Duration::from_secs(30), "{wait:?}");
        assert_eq!(retry_after("Sun, 06 Nov 1994 08:49:37 GMT"), Some(Duration::ZERO), "a date gone by");
        for unreadable in ["", "-1", "1.5", "+5", "soon"] {
            assert_eq!(retry_after(unreadable), None, "{unreadable}");
        }
    }

    #[test]
    fn a_huge_retry_after_is_read_as_a_day_at_most() {
        for huge in ["86401", "18446744073709551615", "99999999999999999999999999", "Fri, 31 Dec 9999 23:59:59 GMT"] {
            assert_eq!(retry_after(huge), Some(LONGEST_RETRY_AFTER), "{huge}");
        }
        assert_eq!(retry_after("86400"), Some(Duration::from_secs(86_400)));
    }
}
