//! W3C Trace Context: reading the `traceparent` and `tracestate` a request comes with, and writing the one a legacy call goes with.

use http::{HeaderMap, HeaderValue};

/// The identity of one span within its trace, as a `traceparent` header carries it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SpanContext {
    /// 16 bytes, never all zero.
    pub trace_id: [u8; 16],
    /// 8 bytes, never all zero.
    pub span_id: [u8; 8],
    /// The caller records this trace (the `sampled` flag).
    pub sampled: bool,
}

/// The longest `tracestate` passed on: the specification's bound on what a vendor must
/// propagate. A longer one is dropped rather than cut, which could split an entry.
const MAX_TRACESTATE: usize = 512;

impl SpanContext {
    /// Reads one `traceparent` value; `None` when it is not valid, which the specification
    /// treats as no trace context at all.
    ///
    /// Version `00` is exactly `00-<32 hex>-<16 hex>-<2 hex>`, lower case. A later version may
    /// append fields after a `-`, which are ignored; version `ff` is invalid.
    pub(crate) fn parse(value: &str) -> Option<Self> {
        let bytes = value.as_bytes();
        if bytes.len() < 55 {
            return None;
        }
        let version = hex_bytes::<1>(&bytes[..2])?[0];
        if version == 0xff || (version == 0 && bytes.len() != 55) || (bytes.len() > 55 && bytes[55] != b'-') {
            return None;
        }
        if bytes[2] != b'-' || bytes[35] != b'-' || bytes[52] != b'-' {
            return None;
        }
        let trace_id = hex_bytes::<16>(&bytes[3..35]).filter(|id| id.iter().any(|b| *b != 0))?;
        let span_id = hex_bytes::<8>(&bytes[36..52]).filter(|id| id.iter().any(|b| *b != 0))?;
        let flags = hex_bytes::<1>(&bytes[53..55])?[0];
        Some(Self { trace_id, span_id, sampled: flags & 1 == 1 })
    }

    /// The `traceparent` value naming this span as the parent: version `00`, and of the
    /// flags only `sampled`, the one version `00` defines.
    pub(crate) fn traceparent(&self) -> String {
        format!("00-{}-{}-{:02x}", hex(&self.trace_id), hex(&self.span_id), u8::from(self.sampled))
    }

    /// A new span of the same trace.
    pub(crate) fn child(&self) -> Self {
        Self { span_id: random_span_id(), ..*self }
    }

    /// The first span of a new trace.
    pub(crate) fn root(sampled: bool) -> Self {
        let mut trace_id = [0; 16];
        while trace_id.iter().all(|b| *b == 0) {
            fastrand::fill(&mut trace_id);
        }
        Self { trace_id, span_id: random_span_id(), sampled }
    }
}

/// A random span id, never all zero.
fn random_span_id() -> [u8; 8] {
    fastrand::u64(1..).to_be_bytes()
}

/// The trace context a request came with: the caller's span and the vendors' `tracestate`.
#[derive(Debug, Clone, Default)]
pub(crate) struct Incoming {
    pub parent: Option<SpanContext>,
    /// Passed on as it came, and only with a valid `traceparent`.
    pub tracestate: Option<HeaderValue>,
}

impl Incoming {
    /// Reads the `traceparent` (exactly one, valid) and `tracestate` (every line, joined) headers.
    pub(crate) fn read(headers: &HeaderMap) -> Self {
        let mut parents = headers.get_all("traceparent").iter();
        let parent = match (parents.next(), parents.next()) {
            (Some(value), None) => value.to_str().ok().and_then(SpanContext::parse),
            _ => None,
        };
        if parent.is_none() {
            return Self::default();
        }
        let states: Vec<&str> = headers.get_all("tracestate").iter().filter_map(|v| v.to_str().ok()).collect();
        let joined = states.join(",");
        let tracestate = (!joined.trim().is_empty() && joined.len() <= MAX_TRACESTATE)
            .then(|| HeaderValue::from_str(&joined).ok())
            .flatten();
        Self { parent, tracestate }
    }
}

/// `bytes` as lower-case hex.
pub(crate) fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes.iter().fold(String::with_capacity(bytes.len() * 2), |mut text, b| {
        let _ = write!(text, "{b:02x}");
        text
    })
}

/// `N` bytes from `2 × N` lower-case hex digits.
fn hex_bytes<const N: usize>(digits: &[u8]) -> Option<[u8; N]> {
    if digits.len() != 2 * N {
        return None;
    }
    let digit = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    };
    let mut bytes = [0; N];
    for (byte, pair) in bytes.iter_mut().zip(digits.chunks_exact(2)) {
        *byte = digit(pair[0])? << 4 | digit(pair[1])?;
    }
    Some(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traceparent_values_are_read_as_the_specification_says() {
        // The specification's own example.
        let example = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let parsed = SpanContext::parse(example).unwrap();
        assert_eq!(hex(&parsed.trace_id), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(hex(&parsed.span_id), "00f067aa0ba902b7");
        assert!(parsed.sampled);
        assert_eq!(parsed.traceparent(), example);
        let cases: &[(&str, Option<bool>)] = &[
            ("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00", Some(false)),
            // Flags are a bit field: only the lowest bit says sampled.
            ("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-09", Some(true)),
            ("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-02", Some(false)),
            // A later version: more fields after a dash are ignored, a longer field is not.
            ("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-what-the-future-holds", Some(true)),
            ("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", Some(true)),
            ("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01x", None),
            ("ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", None),
            // Version 00 has exactly four fields.
            ("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra", None),
            ("00-00000000000000000000000000000000-00f067aa0ba902b7-01", None),
            ("00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01", None),
            ("00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01", None),
            ("00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01", None),
            ("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-1", None),
            ("00_4bf92f3577b34da6a3ce929d0e0e4736_00f067aa0ba902b7_01", None),
            ("00-4bf92f3577b34da6a3ce929d0e0e47zz-00f067aa0ba902b7-01", None),
            ("", None),
            ("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-é", None),
        ];
        for (value, sampled) in cases {
            assert_eq!(SpanContext::parse(value).map(|c| c.sampled), *sampled, "{value}");
        }
        // What is passed on is version 00, whatever version came.
        let later = SpanContext::parse(cases[3].0).unwrap();
        assert!(later.traceparent().starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"), "{}", later.traceparent());
    }

    #[test]
    fn new_ids_are_random_and_never_zero() {
        let root = SpanContext::root(true);
        let child = root.child();
        assert_eq!((child.trace_id, child.sampled), (root.trace_id, true));
        assert_ne!(child.span_id, root.span_id);
        assert_ne!(SpanContext::root(true).trace_id, root.trace_id);
        assert!(SpanContext::parse(&child.traceparent()).is_some());
    }

    #[test]
    fn tracestate_goes_with_a_valid_traceparent_only() {
        let headers = |pairs: &[(&'static str, &str)]| {
            let mut map = HeaderMap::new();
            for (name, value) in pairs {
                map.append(*name, HeaderValue::from_str(value).unwrap());
            }
            map
        };
        let valid = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let read = Incoming::read(&headers(&[("traceparent", valid), ("tracestate", "a=1"), ("tracestate", "b=2")]));
        assert!(read.parent.is_some());
        assert_eq!(read.tracestate.unwrap(), "a=1,b=2");
        assert!(Incoming::read(&headers(&[("traceparent", "00-bad"), ("tracestate", "a=1")])).tracestate.is_none());
        // Two traceparent headers say nothing certain.
        assert!(Incoming::read(&headers(&[("traceparent", valid), ("traceparent", valid)])).parent.is_none());
        let long = format!("a={}", "x".repeat(MAX_TRACESTATE));
        let read = Incoming::read(&headers(&[("traceparent", valid), ("tracestate", &long)]));
        assert!(read.parent.is_some() && read.tracestate.is_none());
    }
}
