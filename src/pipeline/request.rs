//! Reading a SCIM request: the body (bounded in size and time, JSON, counted), and the base URL
//! its answers name.

use std::cell::Cell;
use std::sync::Arc;

use bytes::Bytes;
use http::HeaderMap;
use http_body_util::BodyExt;
use serde::de::{DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::error::{Error, RequestError};
use crate::scim::ScimError;

/// How long a request holding its share of the connection's body budget waits for the first
/// bytes of its body before it gives the share back and queues for it again.
const FIRST_BYTES_WAIT: std::time::Duration = std::time::Duration::from_millis(50);

/// Reads a whole request body, refusing more than `limit` bytes before reading them.
///
/// First takes the body's share of its connection's `budget` (the declared length, or `limit`
/// when none is declared), and returns it with the body: the request holds it until it is
/// answered. The h2 streams of one connection so hold at most the budget together; a stream
/// waiting for its share reads nothing, and h2 flow control stops its client. A share larger
/// than the whole budget (`budget_bytes`, when a reload raised `limit` since the connection
/// was accepted) is cut to all of it: the request waits to be alone, not for ever.
///
/// A stream may hold its share before any of its body has come: the client spreads the
/// connection's flow-control window over its streams, and when other streams' bodies fill
/// it, this one's bytes cannot come until those are read, which wait for the share. A share
/// whose body sends nothing for [`FIRST_BYTES_WAIT`] is given back and queued for again
/// (the queue is first come, first served), so the streams whose bytes did come are read.
pub(crate) async fn read_body<B>(
    headers: &HeaderMap,
    body: B,
    limit: usize,
    (budget, budget_bytes): (&Arc<Semaphore>, usize),
) -> Result<(Bytes, OwnedSemaphorePermit), Error>
where
    B: hyper::body::Body<Data = Bytes>,
    B::Error: std::error::Error + Send + Sync + 'static,
{
    let declared =
        headers.get(http::header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(RequestError::TooLarge { limit }.into());
    }
    let wanted = declared.map_or(limit, |n| n as usize).min(budget_bytes);
    let mut body = std::pin::pin!(http_body_util::Limited::new(body, limit));
    let (mut share, mut next) = loop {
        let share = budget
            .clone()
            .acquire_many_owned(u32::try_from(wanted).unwrap_or(u32::MAX))
            .await
            .map_err(|_| RequestError::Body { detail: "the connection is closing".into() })?;
        tokio::select! {
            biased;
            frame = body.frame() => break (share, frame),
            () = tokio::time::sleep(FIRST_BYTES_WAIT) => drop(share),
        }
    };
    let mut chunks: Vec<Bytes> = Vec::new();
    while let Some(frame) = next {
        match frame {
            Ok(frame) => chunks.extend(frame.into_data().ok()),
            Err(e) if e.downcast_ref::<http_body_util::LengthLimitError>().is_some() => {
                return Err(RequestError::TooLarge { limit }.into());
            }
            Err(e) => return Err(RequestError::Body { detail: e.to_string() }.into()),
        }
        next = body.frame().await;
    }
    let bytes = match chunks.len() {
        0 => Bytes::new(),
        1 => chunks.remove(0),
        _ => Bytes::from(chunks.concat()),
    };
    // An undeclared length took the whole limit: what the body did not use goes back now.
    drop(share.split(wanted.saturating_sub(bytes.len()).min(share.num_permits())));
    Ok((bytes, share))
}

/// Checks that a request with a body declares a JSON media type (or none at all).
pub(crate) fn check_content_type(headers: &HeaderMap) -> Result<(), RequestError> {
    let Some(value) = headers.get(http::header::CONTENT_TYPE) else {
        return Ok(());
    };
    let text = value.to_str().unwrap_or("");
    let media = text.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    if media == "application/scim+json" || media == "application/json" {
        Ok(())
    } else {
        Err(RequestError::UnsupportedMediaType { content_type: text.chars().take(100).collect() })
    }
}

/// Parses a request body as a JSON object of at most `max_nodes` values.
///
/// The values are counted while they are built, and parsing stops at the first one past the
/// bound: a parsed value takes 42 to 340 bytes whatever its text (`[]` is 2 bytes), so the
/// count, not the body's length, bounds the memory a body costs once parsed.
pub fn parse_json(body: &[u8], max_nodes: usize) -> Result<serde_json::Value, Error> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(ScimError::invalid_syntax("the request body is empty").into());
    }
    let text =
        std::str::from_utf8(body).map_err(|e| ScimError::invalid_syntax(format!("the body is not UTF-8: {e}")))?;
    let left = Cell::new(max_nodes);
    // serde_json refuses nesting deeper than 128 levels, which bounds the stack used here.
    let mut deserializer = serde_json::Deserializer::from_str(text);
    let parsed = Counted { left: &left }.deserialize(&mut deserializer).and_then(|value| {
        deserializer.end()?;
        Ok(value)
    });
    let value = match parsed {
        Ok(value) => value,
        Err(_) if left.get() == 0 => return Err(RequestError::TooManyValues { limit: max_nodes }.into()),
        Err(e) => return Err(ScimError::invalid_syntax(format!("the body is not valid JSON: {e}")).into()),
    };
    if !value.is_object() {
        return Err(ScimError::invalid_syntax("the body must be a JSON object").into());
    }
    Ok(value)
}

/// Builds a `serde_json::Value` as `Value`'s own `Deserialize` does, counting the values down
/// from `left` and failing when none is left.
#[derive(Clone, Copy)]
struct Counted<'a> {
    left: &'a Cell<usize>,
}

impl Counted<'_> {
    fn take<E: serde::de::Error>(&self) -> Result<(), E> {
        match self.left.get() {
            0 => Err(E::custom("too many JSON values")),
            n => {
                self.left.set(n - 1);
                Ok(())
            }
        }
    }
}

impl<'de> DeserializeSeed<'de> for Counted<'_> {
    type Value = serde_json::Value;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Counted<'_> {
    type Value = serde_json::Value;

    fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("any JSON value")
    }

    fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<Self::Value, E> {
        self.take()?;
        Ok(v.into())
    }

    fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Self::Value, E> {
        self.take()?;
        Ok(v.into())
    }

    fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Self::Value, E> {
        self.take()?;
        Ok(v.into())
    }

    fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Self::Value, E> {
        self.take()?;
        Ok(serde_json::Number::from_f64(v).map_or(serde_json::Value::Null, serde_json::Value::Number))
    }

    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
        self.take()?;
        Ok(serde_json::Value::String(v.to_owned()))
    }

    fn visit_string<E: serde::de::Error>(self, v: String) -> Result<Self::Value, E> {
        self.take()?;
        Ok(serde_json::Value::String(v))
    }

    fn visit_unit<E: serde::de::Error>(self) -> Result<Self::Value, E> {
        self.take()?;
        Ok(serde_json::Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        self.take()?;
        let mut items = Vec::new();
        while let Some(item) = seq.next_element_seed(self)? {
            items.push(item);
        }
        Ok(serde_json::Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        self.take()?;
        let mut object = serde_json::Map::new();
        while let Some(key) = map.next_key::<String>()? {
            let value = map.next_value_seed(self)?;
            object.insert(key, value);
        }
        Ok(serde_json::Value::Object(object))
    }
}

/// The absolute base URL of an app as the client sees it (for `meta.location` and `Location`).
pub(crate) fn base_url(
    headers: &HeaderMap,
    trust_forwarded: bool,
    tls: bool,
    fallback_host: &dyn std::fmt::Display,
    base_path: &str,
) -> String {
    let header =
        |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(|v| v.split(',').next().unwrap_or("").trim());
    let forwarded = |name| if trust_forwarded { header(name).filter(|v| !v.is_empty()) } else { None };
    let scheme = match forwarded("x-forwarded-proto") {
        Some(p) if p.eq_ignore_ascii_case("https") => "https",
        Some(p) if p.eq_ignore_ascii_case("http") => "http",
        _ if tls => "https",
        _ => "http",
    };
    let host = forwarded("x-forwarded-host").filter(|h| is_host(h)).or_else(|| header("host").filter(|h| is_host(h)));
    let base_path = if base_path == "/" { "" } else { base_path };
    // Written piece by piece: this runs for every request (the fallback, the address the
    // request came in on, is formatted only for a client that sent no usable Host).
    let mut url = String::with_capacity(scheme.len() + 3 + host.map_or(24, str::len) + base_path.len());
    url.push_str(scheme);
    url.push_str("://");
    match host {
        Some(host) => url.push_str(host),
        None => {
            use std::fmt::Write as _;
            let _ = write!(url, "{fallback_host}");
        }
    }
    url.push_str(base_path);
    url
}

/// A host and optional port: letters, digits, '.', '-', ':' and IPv6 brackets only.
fn is_host(text: &str) -> bool {
    !text.is_empty()
        && text.len() <= 255
        && text.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_must_be_json_objects() {
        assert!(parse_json(b"{\"a\":1}", 1000).is_ok());
        for bad in [&b""[..], b"  ", b"{", b"[1]", b"\xff\xfe", b"{\"a\":}", b"{} {}"] {
            assert!(matches!(parse_json(bad, 1000), Err(Error::Scim(ScimError::InvalidSyntax { .. }))), "{bad:?}");
        }
        let deep = "[".repeat(5000);
        assert!(parse_json(format!("{{\"a\":{deep}").as_bytes(), 1000).is_err());
    }

    #[test]
    fn parsed_values_are_counted_and_bounded() {
        let text = r#"{"a":[1,-2,3.5,"x",true,null,{"b":[]}],"c":{}}"#;
        let parsed = parse_json(text.as_bytes(), 11).unwrap();
        assert_eq!(parsed, serde_json::from_str::<serde_json::Value>(text).unwrap(), "the same value as serde_json's");
        // 11 values: the object, the array, its 7 items, the inner object's [], and {} for c
        assert!(matches!(
            parse_json(text.as_bytes(), 10),
            Err(Error::Request(RequestError::TooManyValues { limit: 10 }))
        ));
        let many = format!("{{\"a\":[{}[]]}}", "[],".repeat(100_000));
        assert!(matches!(parse_json(many.as_bytes(), 1000), Err(Error::Request(RequestError::TooManyValues { .. }))));
        // past the bound, broken JSON is still a syntax error when it breaks before the bound
        assert!(matches!(parse_json(b"{\"a\":[1,2,}", 1000), Err(Error::Scim(ScimError::InvalidSyntax { .. }))));
    }

    #[test]
    fn base_url_honours_forwarded_headers_only_when_trusted() {
        let mut h = HeaderMap::new();
        h.insert("host", "proxy.local:8080".parse().unwrap());
        h.insert("x-forwarded-proto", "https".parse().unwrap());
        h.insert("x-forwarded-host", "scim.example.com".parse().unwrap());
        assert_eq!(base_url(&h, true, false, &"x", "/scim/v2"), "https://scim.example.com/scim/v2");
        assert_eq!(base_url(&h, false, false, &"x", "/scim/v2"), "http://proxy.local:8080/scim/v2");
        h.insert("x-forwarded-host", "evil\"host".parse().unwrap());
        assert_eq!(base_url(&h, true, false, &"x", "/s"), "https://proxy.local:8080/s");
        // no usable Host: the address the request came in on
        let addr: std::net::SocketAddr = "127.0.0.1:8443".parse().unwrap();
        assert_eq!(base_url(&HeaderMap::new(), false, true, &addr, "/"), "https://127.0.0.1:8443");
    }
}
