//! The one table from every error to its SCIM answer: HTTP status, `scimType`, and whose fault it is.
//!
//! May import: `script`, `legacy`, and the foundation.

use http::StatusCode;

use crate::legacy::{LegacyError, TlsFault};
use crate::scim::ScimError;
pub(crate) use crate::scim::error::{echoed, quoted};
use crate::script::ScriptError;

/// A failure of a SCIM request, whatever its origin.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The request broke a rule of the SCIM core: answered 4xx (or 501) with its `scimType`.
    #[error(transparent)]
    Scim(#[from] ScimError),
    /// The mapping script failed, threw an answer, or found no free slot.
    #[error(transparent)]
    Script(#[from] ScriptError),
    /// A legacy call failed without an HTTP answer: answered 502, 503 or 504.
    // `LegacyError` stays crate-internal: outside the crate it is read through `Display` only.
    #[allow(private_interfaces)]
    #[error(transparent)]
    Legacy(#[from] LegacyError),
    /// The HTTP request itself was refused before the SCIM core saw it.
    #[error(transparent)]
    Request(#[from] RequestError),
    /// A failure after some of a request's writes were made: answered as `error` is, and the
    /// detail lists what was already done.
    #[error("{error}; already done before the failure: {}", .done.join(", "))]
    Partial {
        /// The failure that stopped the request.
        error: Box<Error>,
        /// The writes already made, one line each, as the detail lists them.
        done: Vec<String>,
    },
}

/// Problems with the HTTP request itself, found before the SCIM core sees it.
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    /// No credentials, or ones the app does not accept: answered 401.
    #[error("missing or invalid credentials")]
    Unauthorized,
    /// The request conflicts with itself or the state it needs (a Bulk request whose
    /// operations refer to each other in a circle, RFC 7644 §3.7.1).
    #[error("{detail}")]
    Conflict {
        /// What conflicts, shown to the client as the whole message.
        detail: String,
    },
    /// A bearer token that looks like a JWT and fails the app's JWT checks: answered 401.
    #[error("invalid bearer token: {reason}")]
    InvalidToken {
        /// Why the token was refused.
        reason: String,
    },
    /// No app serves the request's path: answered 404.
    #[error("no SCIM endpoint at {}", echoed(.path))]
    NoRoute {
        /// The request's path, as sent.
        path: String,
    },
    /// The endpoint exists but not for this HTTP method: answered 405.
    #[error("{} is not allowed here; allowed: {allowed}", echoed(.method))]
    MethodNotAllowed {
        /// The method the client sent.
        method: String,
        /// The methods the endpoint takes, as the `Allow` header lists them.
        allowed: &'static str,
    },
    /// The body is over the size limit: answered 413.
    #[error("the request body is larger than {limit} bytes")]
    TooLarge {
        /// The limit in bytes.
        limit: usize,
    },
    /// The body's JSON holds more values than the parser accepts: answered 413.
    #[error("the request body holds more than {limit} JSON values")]
    TooManyValues {
        /// The most JSON values a body may hold.
        limit: usize,
    },
    /// A Bulk request with more operations than the app accepts: answered 413.
    #[error("the bulk request has {given} operations; at most {limit} are accepted")]
    TooManyOperations {
        /// The most operations a Bulk request may have.
        limit: usize,
        /// How many operations the request has.
        given: usize,
    },
    /// A body in a media type other than SCIM or plain JSON: answered 415.
    #[error("content type {} is not accepted: send application/scim+json or application/json", quoted(.content_type))]
    UnsupportedMediaType {
        /// The `Content-Type` the client sent.
        content_type: String,
    },
    /// The body could not be read or is not JSON: answered 400 `invalidSyntax`.
    #[error("cannot read the request body: {detail}")]
    Body {
        /// What went wrong reading or parsing it.
        detail: String,
    },
    /// The resource the request names does not exist: answered 404.
    #[error("{resource} {} not found", echoed(.id))]
    NotFound {
        /// The kind of resource: `User`, `Group`, `Schema` or `ResourceType`.
        resource: &'static str,
        /// The SCIM id asked for.
        id: String,
    },
    /// An `If-Match` version the resource no longer has: answered 412.
    #[error("the resource changed: its version is no longer {expected}")]
    PreconditionFailed {
        /// The ETag the client sent.
        expected: String,
    },
    /// The request's deadline passed before it was done: answered 504 with `Retry-After`.
    #[error("the request took longer than its deadline of {millis} ms")]
    Deadline {
        /// The deadline, in milliseconds from the request's arrival.
        millis: u128,
    },
    /// The deadline passed while a change was being made in the legacy app: the change goes
    /// on to its end, and its audit record says how it ended.
    #[error("the request took longer than its deadline of {millis} ms while its change was being made")]
    WriteDeadline {
        /// The deadline, in milliseconds from the request's arrival.
        millis: u128,
    },
    /// A SCIM feature the proxy does not offer: answered 501.
    #[error("{feature} is not implemented by this proxy")]
    NotImplemented {
        /// The feature asked for, as the message names it.
        feature: String,
    },
    /// A request header with a value the proxy cannot use: answered 400 `invalidValue`.
    #[error("header {name}: {detail}")]
    BadHeader {
        /// The header's name.
        name: &'static str,
        /// What is wrong with its value.
        detail: String,
    },
    /// The body did not arrive in time: answered 408.
    #[error("the request body did not arrive within the request's deadline of {millis} ms")]
    BodyTimeout {
        /// The deadline, in milliseconds from the request's arrival.
        millis: u128,
    },
    /// The proxy was shutting down and its `server.shutdown_grace` ran out before the request
    /// finished; `write` when it may have changed something.
    #[error("the proxy shut down before this request finished")]
    ShutDown {
        /// True when the request may have changed something in the legacy app.
        write: bool,
    },
}

/// Whose fault an error is: decides the log level and how much detail the client sees.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Source {
    /// The identity provider sent something wrong: 4xx, full detail.
    Client,
    /// The legacy app failed or is unreachable: 502/503/504, detail without internals.
    Legacy,
    /// The mapping script failed: 500, generic detail, specifics in the log.
    Script,
    /// The proxy itself failed.
    Internal,
}

/// The SCIM answer chosen for an error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Answer {
    pub status: StatusCode,
    pub scim_type: Option<&'static str>,
    pub detail: String,
    pub source: Source,
    /// Seconds for a `Retry-After` header, where a retry may succeed.
    pub retry_after: Option<u32>,
}

impl Answer {
    fn client(status: StatusCode, scim_type: Option<&'static str>, detail: String) -> Self {
        Self { status, scim_type, detail, source: Source::Client, retry_after: None }
    }
}

/// The schema of a SCIM error body (RFC 7644 §3.12).
pub(crate) const ERROR_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:Error";

/// Detail shown for script and internal faults; the specifics go to the log under the request id.
pub const GENERIC: &str = "the request could not be completed because of an error in the application mapping; the proxy log has the details under this request's id";

/// `Retry-After` of a legacy fault when the legacy app did not say: long enough for a
/// restarting app, short enough that provisioning does not stall.
pub(crate) const DEFAULT_RETRY_AFTER: u32 = 10;

/// The longest `Retry-After` passed on from the legacy app: a longer one (or a date far ahead)
/// would park the identity provider's provisioning cycle on one app's say-so.
pub(crate) const MAX_RETRY_AFTER: u32 = 120;

/// A legacy app's own `Retry-After`, capped, at least a second; the default when it sent none.
fn passed_on(retry_after: Option<u64>) -> u32 {
    retry_after.map_or(DEFAULT_RETRY_AFTER, |s| u32::try_from(s).unwrap_or(u32::MAX).clamp(1, MAX_RETRY_AFTER))
}

/// Said of a write that failed without an answer: the change may or may not have been made.
const OUTCOME_UNKNOWN: &str =
    "; the change may or may not have been made: read the resource before sending the request again";

/// A fault of the mapping script: 500, generic detail; the specifics are in the log.
fn script_fault() -> Answer {
    Answer {
        status: StatusCode::INTERNAL_SERVER_ERROR,
        scim_type: None,
        detail: GENERIC.into(),
        source: Source::Script,
        retry_after: None,
    }
}

/// Chooses the answer to an error. This is the only place a status code is chosen for an error.
pub(crate) fn answer(error: &Error) -> Answer {
    use StatusCode as S;
    match error {
        Error::Partial { error, done } => {
            let mut answer = answer(error);
            answer.detail = format!("{}; already done before the failure: {}", answer.detail, done.join(", "));
            answer
        }
        Error::Scim(e) => {
            let (status, scim_type) = match e {
                ScimError::InvalidFilter { .. } => (S::BAD_REQUEST, Some("invalidFilter")),
                ScimError::InvalidPath { .. } => (S::BAD_REQUEST, Some("invalidPath")),
                ScimError::InvalidSyntax { .. } => (S::BAD_REQUEST, Some("invalidSyntax")),
                ScimError::InvalidValue { .. } | ScimError::InvalidParameter { .. } => {
                    (S::BAD_REQUEST, Some("invalidValue"))
                }
                ScimError::Mutability { .. } => (S::BAD_REQUEST, Some("mutability")),
                ScimError::NoTarget { .. } => (S::BAD_REQUEST, Some("noTarget")),
                ScimError::TooMany { .. } => (S::BAD_REQUEST, Some("tooMany")),
                ScimError::Uniqueness { .. } => (S::CONFLICT, Some("uniqueness")),
                ScimError::NotImplemented { .. } => (S::NOT_IMPLEMENTED, None),
            };
            Answer::client(status, scim_type, e.to_string())
        }
        Error::Request(e) => {
            let (status, scim_type) = match e {
                RequestError::Unauthorized | RequestError::InvalidToken { .. } => (S::UNAUTHORIZED, None),
                RequestError::NoRoute { .. } | RequestError::NotFound { .. } => (S::NOT_FOUND, None),
                RequestError::Conflict { .. } => (S::CONFLICT, None),
                RequestError::MethodNotAllowed { .. } => (S::METHOD_NOT_ALLOWED, None),
                RequestError::TooLarge { .. }
                | RequestError::TooManyValues { .. }
                | RequestError::TooManyOperations { .. } => (S::PAYLOAD_TOO_LARGE, None),
                RequestError::UnsupportedMediaType { .. } => (S::UNSUPPORTED_MEDIA_TYPE, None),
                RequestError::Body { .. } => (S::BAD_REQUEST, Some("invalidSyntax")),
                RequestError::BadHeader { .. } => (S::BAD_REQUEST, Some("invalidValue")),
                RequestError::BodyTimeout { .. } => (S::REQUEST_TIMEOUT, None),
                RequestError::PreconditionFailed { .. } => (S::PRECONDITION_FAILED, None),
                RequestError::NotImplemented { .. } => (S::NOT_IMPLEMENTED, None),
                RequestError::Deadline { .. } => {
                    return Answer {
                        status: S::GATEWAY_TIMEOUT,
                        scim_type: None,
                        detail: e.to_string(),
                        source: Source::Legacy,
                        retry_after: Some(5),
                    };
                }
                RequestError::ShutDown { write } => {
                    let then = if *write { OUTCOME_UNKNOWN } else { "; send it again" };
                    return Answer {
                        status: S::SERVICE_UNAVAILABLE,
                        scim_type: None,
                        detail: format!("{e}{then}"),
                        source: Source::Internal,
                        retry_after: Some(1),
                    };
                }
                RequestError::WriteDeadline { .. } => {
                    return Answer {
                        status: S::GATEWAY_TIMEOUT,
                        scim_type: None,
                        detail: format!("{e}{OUTCOME_UNKNOWN}"),
                        source: Source::Legacy,
                        retry_after: Some(5),
                    };
                }
            };
            Answer::client(status, scim_type, e.to_string())
        }
        Error::Script(e) => match e {
            ScriptError::Thrown { status, scim_type, detail } => {
                let status = S::from_u16(*status).unwrap_or(S::INTERNAL_SERVER_ERROR);
                Answer {
                    status,
                    scim_type: scim_type.as_deref().and_then(known_scim_type),
                    detail: detail.clone(),
                    source: if status.is_client_error() { Source::Client } else { Source::Script },
                    retry_after: (status == S::SERVICE_UNAVAILABLE || status == S::TOO_MANY_REQUESTS).then_some(5),
                }
            }
            ScriptError::Legacy(legacy) => answer(&Error::Legacy(legacy.clone())),
            ScriptError::Overloaded { .. } => Answer {
                status: S::SERVICE_UNAVAILABLE,
                scim_type: None,
                detail: "the proxy is at its limit of concurrent requests for this application; retry later".into(),
                source: Source::Internal,
                retry_after: Some(2),
            },
            ScriptError::QueueFull { .. } => Answer {
                status: S::SERVICE_UNAVAILABLE,
                scim_type: None,
                detail: "too many requests are waiting for this application; retry later".into(),
                source: Source::Internal,
                retry_after: Some(1),
            },
            ScriptError::Missing { function } => Answer::client(
                S::NOT_IMPLEMENTED,
                None,
                format!(
                    "this application's mapping does not support the operation (it defines no {function} function)"
                ),
            ),
            ScriptError::Late { .. } => Answer {
                status: S::GATEWAY_TIMEOUT,
                scim_type: None,
                detail: "the request took longer than its deadline".into(),
                source: Source::Legacy,
                retry_after: Some(5),
            },
            ScriptError::Compile { .. }
            | ScriptError::Refused { .. }
            | ScriptError::Runtime { .. }
            | ScriptError::BadReturn { .. }
            | ScriptError::Stopped { .. } => script_fault(),
        },
        Error::Legacy(e) => {
            let legacy = |status, detail: &str, retry_after| Answer {
                status,
                scim_type: None,
                detail: if e.outcome_unknown() { format!("{detail}{OUTCOME_UNKNOWN}") } else { detail.to_owned() },
                source: Source::Legacy,
                retry_after,
            };
            let default = Some(DEFAULT_RETRY_AFTER);
            match e {
                LegacyError::BadPath { .. } | LegacyError::BadHeader { .. } | LegacyError::BadBody { .. } => {
                    script_fault()
                }
                LegacyError::Connect { .. } => legacy(
                    S::SERVICE_UNAVAILABLE,
                    "the application behind this SCIM endpoint is unreachable; retry later",
                    default,
                ),
                LegacyError::Transport { .. } => legacy(
                    S::SERVICE_UNAVAILABLE,
                    "the connection to the application behind this SCIM endpoint broke; retry later",
                    default,
                ),
                LegacyError::BreakerOpen { retry_after, .. } => legacy(
                    S::SERVICE_UNAVAILABLE,
                    "the application behind this SCIM endpoint is failing; calls to it are paused; retry later",
                    // Whole seconds, rounded up: a retry before the breaker half-opens fails again.
                    Some(
                        u32::try_from(retry_after.as_millis().div_ceil(1000))
                            .unwrap_or(u32::MAX)
                            .clamp(1, MAX_RETRY_AFTER),
                    ),
                ),
                LegacyError::Timeout { .. } => legacy(
                    S::GATEWAY_TIMEOUT,
                    "the application behind this SCIM endpoint did not answer in time",
                    default,
                ),
                LegacyError::Malformed { .. } => legacy(
                    S::BAD_GATEWAY,
                    "the application behind this SCIM endpoint answered with something that is not HTTP",
                    None,
                ),
                LegacyError::TooLarge { .. } => legacy(
                    S::BAD_GATEWAY,
                    "the application behind this SCIM endpoint answered with a body too large to process",
                    None,
                ),
                // The legacy app's own throttling: the identity provider is asked to slow down.
                LegacyError::Unexpected { status: 429, retry_after, .. } => legacy(
                    S::TOO_MANY_REQUESTS,
                    "the application behind this SCIM endpoint is rate limiting; retry later",
                    Some(passed_on(*retry_after)),
                ),
                LegacyError::Unexpected { status: 503, retry_after, .. } => legacy(
                    S::SERVICE_UNAVAILABLE,
                    "the application behind this SCIM endpoint is unavailable; retry later",
                    Some(passed_on(*retry_after)),
                ),
                LegacyError::Unexpected { status, .. } if (500..600).contains(status) => Answer {
                    detail: format!("the application behind this SCIM endpoint failed (it answered {status})"),
                    ..legacy(S::BAD_GATEWAY, "", None)
                },
                LegacyError::Unexpected { status, .. } => Answer {
                    detail: format!(
                        "the application behind this SCIM endpoint gave an answer the mapping cannot use (status {status})"
                    ),
                    ..legacy(S::BAD_GATEWAY, "", None)
                },
                // A certificate problem is a configuration fault: retrying will not fix it.
                LegacyError::Tls { failure, .. } => match failure.fault {
                    TlsFault::Untrusted => legacy(
                        S::BAD_GATEWAY,
                        "the TLS certificate of the application behind this SCIM endpoint is not trusted",
                        None,
                    ),
                    TlsFault::ClientCertificateRefused => legacy(
                        S::BAD_GATEWAY,
                        "the application behind this SCIM endpoint refused the proxy's TLS client certificate",
                        None,
                    ),
                    TlsFault::Other => legacy(
                        S::BAD_GATEWAY,
                        "the TLS connection to the application behind this SCIM endpoint failed",
                        None,
                    ),
                },
                LegacyError::Token { source, .. } if source.retryable => legacy(
                    S::SERVICE_UNAVAILABLE,
                    "cannot get an access token for the application behind this SCIM endpoint; retry later",
                    default,
                ),
                LegacyError::Token { .. } => legacy(
                    S::BAD_GATEWAY,
                    "cannot get an access token for the application behind this SCIM endpoint",
                    None,
                ),
            }
        }
    }
}

/// The `scimType` values of RFC 7644 §3.12; anything else a script throws is dropped.
fn known_scim_type(text: &str) -> Option<&'static str> {
    const KNOWN: &[&str] = &[
        "invalidFilter",
        "tooMany",
        "uniqueness",
        "mutability",
        "invalidSyntax",
        "invalidPath",
        "noTarget",
        "invalidValue",
        "invalidVers",
        "sensitive",
    ];
    KNOWN.iter().copied().find(|k| k.eq_ignore_ascii_case(text))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scim::error::ECHO_CHARS;

    #[test]
    fn echoed_values_are_escaped_and_bounded() {
        assert_eq!(echoed("kid-1"), "kid-1");
        assert_eq!(echoed("a\"b\n"), "a\\\"b\\n");
        let long = echoed(&"x".repeat(250_000));
        assert!(long.starts_with(&"x".repeat(ECHO_CHARS)) && long.ends_with("… (250000 bytes)"), "{long}");
        assert!(long.len() < ECHO_CHARS + 30);
        // a script's text keeps its quotes, loses its line breaks, and is bounded too
        assert_eq!(crate::scim::error::bounded_detail("say \"no\"\nthen"), "say \"no\"\\nthen");
        let long = crate::scim::error::bounded_detail(&"é".repeat(5000));
        assert!(long.ends_with("… (10000 bytes)") && long.chars().count() < 1100, "{long}");
    }

    #[test]
    fn a_partial_failure_is_answered_as_its_cause_with_what_was_done() {
        let busy = Error::Legacy(LegacyError::Unexpected {
            app: "acme".into(),
            status: 503,
            what: "add member".into(),
            reason: "busy".into(),
            retry_after: Some(30),
        });
        let partial =
            Error::Partial { error: Box::new(busy), done: vec!["added member 7".into(), "added member 8".into()] };
        let a = answer(&partial);
        // The legacy app's own Retry-After survives, and the fault stays the legacy app's.
        assert_eq!((a.status, a.retry_after, a.source), (StatusCode::SERVICE_UNAVAILABLE, Some(30), Source::Legacy));
        assert!(
            a.detail.ends_with("; already done before the failure: added member 7, added member 8"),
            "{}",
            a.detail
        );
        let conflict = answer(&Error::from(RequestError::Conflict { detail: "bulkId cycle".into() }));
        assert_eq!(
            (conflict.status, conflict.scim_type, conflict.source),
            (StatusCode::CONFLICT, None, Source::Client)
        );
    }

    #[test]
    fn thrown_script_errors_keep_status_and_known_scim_type() {
        let e = Error::Script(ScriptError::Thrown {
            status: 409,
            scim_type: Some("uniqueness".into()),
            detail: "taken".into(),
        });
        let a = answer(&e);
        assert_eq!((a.status, a.scim_type, a.source), (StatusCode::CONFLICT, Some("uniqueness"), Source::Client));
        let e =
            Error::Script(ScriptError::Thrown { status: 400, scim_type: Some("madeUp".into()), detail: String::new() });
        assert_eq!(answer(&e).scim_type, None);
    }

    #[test]
    fn script_faults_hide_their_details() {
        let e = Error::Script(ScriptError::Runtime {
            file: "s.rhai".into(),
            function: "get_user".into(),
            line: 3,
            message: "secret internals".into(),
        });
        let a = answer(&e);
        assert_eq!(a.status, StatusCode::INTERNAL_SERVER_ERROR);
        assert!(!a.detail.contains("secret"));
    }

    #[test]
    fn tls_and_token_failures_say_what_failed_without_internals() {
        use crate::legacy::TlsFailure;
        use crate::legacy::auth::TokenError;
        let tls = |fault| {
            let failure =
                Box::new(TlsFailure { host: "hr.internal:8443".into(), reason: "secret reason".into(), fault });
            answer(&Error::Legacy(LegacyError::Tls {
                app: "a".into(),
                method: "GET".into(),
                path: "/".into(),
                failure,
            }))
        };
        let untrusted = tls(TlsFault::Untrusted);
        assert_eq!((untrusted.status, untrusted.retry_after), (StatusCode::BAD_GATEWAY, None));
        assert!(untrusted.detail.contains("certificate") && untrusted.detail.contains("not trusted"));
        assert!(tls(TlsFault::ClientCertificateRefused).detail.contains("refused the proxy's TLS client certificate"));
        for a in [untrusted, tls(TlsFault::Other)] {
            assert!(!a.detail.contains("secret") && !a.detail.contains("hr.internal"), "{}", a.detail);
        }
        let token = |retryable| {
            let source = TokenError { host: "login".into(), detail: "answered 401".into(), retryable };
            answer(&Error::Legacy(LegacyError::Token { app: "a".into(), source }))
        };
        assert_eq!((token(false).status, token(false).retry_after), (StatusCode::BAD_GATEWAY, None));
        assert_eq!(token(true).status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(token(true).retry_after.is_some());
        assert!(token(false).detail.starts_with("cannot get an access token"));
    }

    #[test]
    fn legacy_outages_are_retryable() {
        let e = Error::Legacy(LegacyError::Connect {
            app: "a".into(),
            method: "GET".into(),
            path: "/".into(),
            detail: "refused".into(),
        });
        let a = answer(&e);
        assert_eq!(a.status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(a.retry_after.is_some());
    }

    #[test]
    fn unexpected_answers_pass_on_a_capped_retry_after() {
        let unexpected = |status, retry_after| {
            answer(&Error::Legacy(LegacyError::Unexpected {
                app: "a".into(),
                status,
                what: String::new(),
                reason: String::new(),
                retry_after,
            }))
        };
        let cases = [
            (503, Some(7), StatusCode::SERVICE_UNAVAILABLE, Some(7)),
            (503, None, StatusCode::SERVICE_UNAVAILABLE, Some(DEFAULT_RETRY_AFTER)),
            (503, Some(0), StatusCode::SERVICE_UNAVAILABLE, Some(1)),
            (503, Some(u64::MAX), StatusCode::SERVICE_UNAVAILABLE, Some(MAX_RETRY_AFTER)),
            (429, Some(3), StatusCode::TOO_MANY_REQUESTS, Some(3)),
            (429, None, StatusCode::TOO_MANY_REQUESTS, Some(DEFAULT_RETRY_AFTER)),
            (500, Some(3), StatusCode::BAD_GATEWAY, None),
            (504, None, StatusCode::BAD_GATEWAY, None),
            (200, None, StatusCode::BAD_GATEWAY, None),
            (401, None, StatusCode::BAD_GATEWAY, None),
        ];
        for (status, given, expected, retry_after) in cases {
            let a = unexpected(status, given);
            assert_eq!((a.status, a.retry_after, a.source), (expected, retry_after, Source::Legacy), "{status}");
        }
    }

    #[test]
    fn a_write_without_an_answer_has_an_unknown_outcome() {
        let timeout = |method: &str, write| {
            answer(&Error::Legacy(LegacyError::Timeout {
                app: "a".into(),
                method: method.into(),
                path: "/users".into(),
                timeout_ms: 10,
                write,
            }))
        };
        let post = timeout("POST", true);
        assert_eq!(post.status, StatusCode::GATEWAY_TIMEOUT);
        assert!(post.detail.contains("may or may not have been made"), "{}", post.detail);
        assert!(!timeout("GET", false).detail.contains("may or may not"));
        let open = answer(&Error::Legacy(LegacyError::BreakerOpen {
            app: "a".into(),
            method: "POST".into(),
            path: "/users".into(),
            retry_after: std::time::Duration::from_millis(2100),
        }));
        assert_eq!((open.status, open.retry_after), (StatusCode::SERVICE_UNAVAILABLE, Some(3)));
    }
}
