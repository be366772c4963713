//! `scim-proxy probe ready|live`: one request to a running proxy's `/readyz` or `/healthz`, for a
//! container health check where there is no shell and no HTTP client (the image is `scratch`).

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs as _};
use std::time::{Duration, Instant};

/// What a probe asks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Probe {
    /// `/readyz`: the proxy can serve.
    Ready,
    /// `/healthz`: the process answers.
    Live,
}

impl Probe {
    /// `ready` or `live`, as the command line spells them.
    pub fn named(name: &str) -> Option<Self> {
        match name {
            "ready" => Some(Self::Ready),
            "live" => Some(Self::Live),
            _ => None,
        }
    }

    fn path(self) -> &'static str {
        match self {
            Self::Ready => "/readyz",
            Self::Live => "/healthz",
        }
    }
}

/// Why a probe failed, in one line naming the URL asked: what, then the cause in parentheses.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    /// The admin address does not make a plain `http://` URL.
    #[error("{url}: {detail}")]
    BadUrl {
        /// The URL the probe would ask.
        url: String,
        /// What is wrong with it.
        detail: String,
    },
    /// No connection to the admin listener could be made.
    #[error("{url}: cannot connect ({detail})")]
    Connect {
        /// The URL asked.
        url: String,
        /// The last connect error.
        detail: String,
    },
    /// No complete answer within the probe's timeout.
    #[error("{url}: no answer within {timeout_ms} ms")]
    Timeout {
        /// The URL asked.
        url: String,
        /// The timeout, in milliseconds.
        timeout_ms: u128,
    },
    /// The request could not be sent or the answer could not be read as HTTP.
    #[error("{url}: {detail}")]
    Exchange {
        /// The URL asked.
        url: String,
        /// What went wrong.
        detail: String,
    },
    /// The proxy answered with a status other than `200`.
    #[error("{url}: answered {status}{}", status_text(.body))]
    NotOk {
        /// The URL asked.
        url: String,
        /// The HTTP status of the answer.
        status: u16,
        /// The answer's body; its `status` field, when it has one, is shown.
        body: String,
    },
}

/// The largest answer read: `/readyz` of many apps stays well under it.
const MAX_ANSWER: usize = 256 * 1024;

/// Asks the admin listener at `admin` (a base URL, `http://127.0.0.1:9090`) and waits at most
/// `timeout` in all. `Ok` with a line to show when it answered `200`.
pub fn probe(which: Probe, admin: &str, timeout: Duration) -> Result<String, ProbeError> {
    let url = format!("{}{}", admin.trim_end_matches('/'), which.path());
    let bad = |detail: &str| ProbeError::BadUrl { url: url.clone(), detail: detail.to_owned() };
    let parsed = url::Url::parse(&url).map_err(|e| bad(&format!("not a URL ({e})")))?;
    if parsed.scheme() != "http" {
        return Err(bad("the admin listener speaks plain http://"));
    }
    let host = parsed.host_str().ok_or_else(|| bad("no host"))?;
    let port = parsed.port_or_known_default().unwrap_or(80);
    let deadline = Instant::now() + timeout;
    let timed_out = || ProbeError::Timeout { url: url.clone(), timeout_ms: timeout.as_millis() };
    let addrs: Vec<SocketAddr> = (host.trim_start_matches('[').trim_end_matches(']'), port)
        .to_socket_addrs()
        .map_err(|e| ProbeError::Connect { url: url.clone(), detail: e.to_string() })?
        .collect();
    let mut last = String::from("the host has no address");
    let mut stream = None;
    for addr in addrs {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(timed_out());
        }
        match TcpStream::connect_timeout(&addr, left) {
            Ok(connected) => {
                stream = Some(connected);
                break;
            }
            Err(e) => last = e.to_string(),
        }
    }
    let mut stream = stream.ok_or_else(|| ProbeError::Connect { url: url.clone(), detail: last })?;
    let exchange = |detail: String| ProbeError::Exchange { url: url.clone(), detail };
    let authority = parsed.port().map_or_else(|| host.to_owned(), |port| format!("{host}:{port}"));
    let request = format!(
        "GET {} HTTP/1.1\r\nHost: {authority}\r\nUser-Agent: scim-proxy-probe\r\nConnection: close\r\n\r\n",
        parsed.path()
    );
    set_timeouts(&stream, deadline).ok_or_else(timed_out)?;
    stream.write_all(request.as_bytes()).map_err(|e| exchange(format!("cannot send the request ({e})")))?;
    let mut answer = Vec::new();
    let mut chunk = [0u8; 8192];
    // Each read waits at most what is left of the timeout: a server that trickles its answer
    // cannot stretch the probe past it.
    loop {
        set_timeouts(&stream, deadline).ok_or_else(timed_out)?;
        match stream.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) if answer.len() + n > MAX_ANSWER => return Err(exchange("the answer is too large".into())),
            Ok(n) => answer.extend_from_slice(&chunk[..n]),
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {
                return Err(timed_out());
            }
            Err(e) => return Err(exchange(format!("cannot read the answer ({e})"))),
        }
    }
    let (status, body) = parse_answer(&answer).ok_or_else(|| exchange("not an HTTP answer".into()))?;
    if status == 200 {
        Ok(format!("{url}: answered 200{}", status_text(&body)))
    } else {
        Err(ProbeError::NotOk { url, status, body })
    }
}

/// Sets both socket timeouts to what is left before `deadline`; `None` once it has passed.
fn set_timeouts(stream: &TcpStream, deadline: Instant) -> Option<()> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        return None;
    }
    stream.set_read_timeout(Some(left)).ok()?;
    stream.set_write_timeout(Some(left)).ok()
}

/// The status code and the body of an HTTP/1.1 answer read whole.
fn parse_answer(answer: &[u8]) -> Option<(u16, String)> {
    let text = String::from_utf8_lossy(answer);
    let (head, body) = text.split_once("\r\n\r\n")?;
    let status_line = head.lines().next()?;
    let mut parts = status_line.split(' ');
    if !parts.next()?.starts_with("HTTP/1.") {
        return None;
    }
    let status = parts.next()?.parse().ok()?;
    Some((status, body.to_owned()))
}

/// ` (ready)`: the `status` the admin listener's JSON gives, when it gives one.
fn status_text(body: &str) -> String {
    let status = serde_json::from_str::<serde_json::Value>(body).ok().and_then(|json| {
        let status = json.get("status")?.as_str()?.to_owned();
        Some(status)
    });
    match status {
        Some(status) => format!(" ({})", status.chars().filter(|c| !c.is_control()).take(100).collect::<String>()),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_read_for_their_status_and_json_status() {
        let ready = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n\r\n{\"status\":\"ready\",\"apps\":[]}";
        let (status, body) = parse_answer(ready).unwrap();
        assert_eq!((status, status_text(&body)), (200, " (ready)".to_owned()));
        let unready = b"HTTP/1.1 503 Service Unavailable\r\n\r\n{\"status\":\"not ready\"}";
        assert_eq!(parse_answer(unready).map(|(s, b)| (s, status_text(&b))), Some((503, " (not ready)".into())));
        assert_eq!(
            parse_answer(b"HTTP/1.1 404 Not Found\r\n\r\nplain").map(|(s, b)| (s, status_text(&b))),
            Some((404, String::new()))
        );
        assert_eq!(parse_answer(b"SSH-2.0-OpenSSH\r\n"), None);
        assert_eq!(parse_answer(b"garbage\r\n\r\n"), None);
    }

    #[test]
    fn only_plain_http_urls_are_probed() {
        for (admin, says) in [
            ("https://127.0.0.1:9090", "the admin listener speaks plain http://"),
            ("127.0.0.1:9090", "not a URL"),
            ("http://bad host:1", "not a URL"),
        ] {
            let error = probe(Probe::Ready, admin, Duration::from_secs(1)).unwrap_err().to_string();
            assert!(error.contains(says), "{admin}: {error}");
        }
    }
}
