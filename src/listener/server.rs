//! Listeners: accept connections, complete TLS where configured, serve HTTP/1.1 and h2 with
//! hyper, close connections that send no request in time or sit idle, drain on shutdown.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio::sync::{Notify, Semaphore, watch};
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;

use crate::listener::shards;
use crate::listener::tls::ClientIdentity;

/// The h2 flow-control window of a connection: body bytes a client may send that no request
/// has read yet. Part of the memory bound stated in docs/operations.md.
pub(crate) const H2_CONNECTION_WINDOW: u32 = 1024 * 1024;
/// The h2 flow-control window of one stream.
const H2_STREAM_WINDOW: u32 = 256 * 1024;
/// The largest header block of one h2 request (decoded); larger ones are refused by h2.
pub(crate) const H2_MAX_HEADER_LIST: u32 = 16 * 1024;
/// How long an idle connection that was asked to close (h2: GOAWAY) has before it is dropped.
const CLOSE_GRACE: Duration = Duration::from_secs(1);

/// How a listener answers a request still running when shutdown's grace time is over, from its
/// method, HTTP version and request id (the SCIM listener's is `pipeline::response::cut_short`).
pub(crate) type CutShort = fn(&http::Method, http::Version, &str) -> Response<Full<Bytes>>;

/// What a handler knows of the connection a request came on.
#[derive(Debug, Clone)]
pub(crate) struct Connection {
    /// The client's address.
    pub peer: SocketAddr,
    /// Whether the connection is TLS.
    pub tls: bool,
    /// The client certificate verified in the TLS handshake, if the client sent one.
    pub client: Option<Arc<ClientIdentity>>,
    /// Request body bytes this connection may hold at once, over all its requests (h2 streams
    /// share it): a request takes its share before reading its body and gives it back when done.
    pub body_budget: Arc<Semaphore>,
    /// The bytes `body_budget` holds in all: a request larger than that (the limit raised by a
    /// reload since the connection was accepted) takes all of it.
    pub body_budget_bytes: usize,
}

/// Limits applied to every connection of a listener.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ConnLimits {
    /// Time a new connection has, from its TCP accept (TLS handshake included), to send a
    /// complete request head, and an idle one from its first byte.
    pub header_read_timeout: Duration,
    /// How long a connection with no request in flight and no byte sent is kept open.
    pub idle_timeout: Duration,
    /// How long shutdown waits for in-flight requests.
    pub shutdown_grace: Duration,
    /// h2 streams (requests) served at once on one connection.
    pub max_concurrent_streams: u32,
    /// Request body bytes held at once per connection (see [`Connection::body_budget`]).
    pub body_budget: usize,
}

/// The connections of one listener: a slot for each connection served, at most `limit`.
/// Past it, the connection idle the longest is closed to make room, and when none is idle new
/// ones wait in the kernel's accept queue. `/metrics` reads how many are open.
#[derive(Debug)]
pub(crate) struct Connections {
    slots: Arc<Semaphore>,
    limit: usize,
    /// Requests answered `503` because shutdown's grace time ran out before they finished.
    cut: std::sync::atomic::AtomicUsize,
}

impl Connections {
    /// Room for `limit` connections at once.
    pub(crate) fn new(limit: usize) -> Arc<Self> {
        Arc::new(Self { slots: Arc::new(Semaphore::new(limit)), limit, cut: std::sync::atomic::AtomicUsize::new(0) })
    }

    /// Requests cut short by the end of shutdown's grace time so far.
    pub(crate) fn cut(&self) -> usize {
        self.cut.load(Ordering::Relaxed)
    }

    /// Connections open now (accepted, TLS handshake under way included).
    pub(crate) fn open(&self) -> usize {
        self.limit.saturating_sub(self.slots.available_permits())
    }

    /// The most served at once.
    pub(crate) fn limit(&self) -> usize {
        self.limit
    }
}

/// Where a listener reads its limits: each new connection takes those of the moment, so that a
/// configuration reload applies to the connections accepted after it, and shutdown the grace
/// time of the moment. `max_connections` is read once, when the listener starts.
#[derive(Clone)]
pub(crate) struct Limits(Arc<dyn Fn() -> ConnLimits + Send + Sync>);

impl Limits {
    /// Limits read from `read` whenever they are needed.
    pub(crate) fn live(read: impl Fn() -> ConnLimits + Send + Sync + 'static) -> Self {
        Self(Arc::new(read))
    }

    /// The limits of the moment.
    pub(crate) fn now(&self) -> ConnLimits {
        (self.0)()
    }
}

impl From<ConnLimits> for Limits {
    fn from(fixed: ConnLimits) -> Self {
        Self::live(move || fixed)
    }
}

/// The HTTP/1.1 and h2 settings of a listener's connections.
fn http_builder(max_concurrent_streams: u32) -> Arc<auto::Builder<TokioExecutor>> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    // The watchdog times request heads (hyper's own timer would also close idle keep-alive
    // connections after `header_read_timeout`, whatever `idle_timeout` says).
    builder.http1().timer(TokioTimer::new()).header_read_timeout(None).keep_alive(true);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(max_concurrent_streams)
        .initial_connection_window_size(H2_CONNECTION_WINDOW)
        .initial_stream_window_size(H2_STREAM_WINDOW)
        .max_header_list_size(H2_MAX_HEADER_LIST);
    Arc::new(builder)
}

/// Serves `handler` on `listener` until `shutdown` turns true, then drains within the grace time.
///
/// Each connection runs in its own task with a watchdog (see [`Activity`]): it completes its
/// TLS handshake and sends its first request head within `header_read_timeout` of being
/// accepted, or is closed; so a client that stalls holds up no one else.
/// Runs as its own task; returns when every connection has finished or the grace time is up.
#[allow(clippy::too_many_arguments)] // a listener's parts, handed over once
pub(crate) async fn serve<F, Fut>(
    listener: TcpListener,
    name: &'static str,
    handler: F,
    cut_short: CutShort,
    limits: impl Into<Limits>,
    connections: Arc<Connections>,
    tls: Option<TlsAcceptor>,
    mut shutdown: watch::Receiver<bool>,
) where
    F: Fn(Request<Incoming>, Connection) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Response<Full<Bytes>>> + Send + 'static,
{
    let source: Limits = limits.into();
    let first = source.now();
    let mut builder = (first.max_concurrent_streams, http_builder(first.max_concurrent_streams));
    let slots = connections.slots.clone();
    let max_connections = connections.limit;
    let mut open: Vec<Weak<Activity>> = Vec::new();
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = shutdown.wait_for(|stop| *stop) => break,
        };
        let (stream, peer) = match accepted {
            Ok(pair) => pair,
            Err(error) => {
                // Out of file descriptors and the like: wait a little instead of spinning.
                tracing::warn!(listener = name, %error, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        // A bounded number of connections (and so of requests in memory). At the limit, the
        // connection idle the longest makes room: a crowd of silent clients cannot keep out a
        // new one (a health probe, an identity provider) for longer than it takes to close one.
        let slot = loop {
            if let Ok(slot) = slots.clone().try_acquire_owned() {
                break Some(slot);
            }
            open.retain(|weak| weak.strong_count() > 0);
            let idle = open.iter().filter_map(Weak::upgrade).filter_map(|a| Some((a.idle_since()?, a)));
            if let Some((_, idlest)) = idle.min_by_key(|(since, _)| *since) {
                idlest.evict();
            }
            tokio::select! {
                slot = slots.clone().acquire_owned() => break slot.ok(),
                // the one asked to go started a request meanwhile: ask the next
                _ = tokio::time::sleep(Duration::from_millis(100)) => {}
                _ = shutdown.wait_for(|stop| *stop) => break None,
            }
        };
        let Some(slot) = slot else { break };
        let limits = source.now();
        if limits.max_concurrent_streams != builder.0 {
            builder = (limits.max_concurrent_streams, http_builder(limits.max_concurrent_streams));
        }
        let _ = stream.set_nodelay(true);
        let activity = Arc::new(Activity::new(Instant::now()));
        if open.len() >= 2 * max_connections {
            open.retain(|weak| weak.strong_count() > 0);
        }
        open.push(Arc::downgrade(&activity));
        let (handler, builder, stop, source) = (handler.clone(), builder.1.clone(), shutdown.clone(), source.clone());
        let connections = connections.clone();
        let (body_budget, body_budget_bytes) = (Arc::new(Semaphore::new(limits.body_budget)), limits.body_budget);
        let tls = tls.clone();
        shards::spawn(stream, move |stream| async move {
            let _slot = slot;
            let stream = Heard { io: stream, activity: activity.clone() };
            let Some(acceptor) = tls else {
                let connection = Connection { peer, tls: false, client: None, body_budget, body_budget_bytes };
                let limits = (limits, &source);
                run_connection(
                    name,
                    &builder,
                    stream,
                    (handler, cut_short),
                    connection,
                    activity,
                    limits,
                    stop,
                    &connections,
                )
                .await;
                return;
            };
            let deadline = activity.accepted + limits.header_read_timeout;
            let stream = match tokio::time::timeout_at(deadline, acceptor.accept(stream)).await {
                Ok(Ok(stream)) => stream,
                Ok(Err(error)) => {
                    tracing::debug!(listener = name, %peer, %error, "tls handshake failed");
                    return;
                }
                Err(_) => {
                    tracing::debug!(listener = name, %peer, "tls handshake timed out");
                    return;
                }
            };
            let client = stream
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|chain| chain.first())
                .and_then(ClientIdentity::from_der)
                .map(Arc::new);
            let connection = Connection { peer, tls: true, client, body_budget, body_budget_bytes };
            let limits = (limits, &source);
            run_connection(
                name,
                &builder,
                stream,
                (handler, cut_short),
                connection,
                activity,
                limits,
                stop,
                &connections,
            )
            .await;
        });
    }
    drop(listener);
    tracing::info!(listener = name, open_connections = connections.open(), "draining");
    let all = u32::try_from(max_connections).unwrap_or(u32::MAX);
    let grace = source.now().shutdown_grace;
    // Past the grace time, each connection answers what is still running (see
    // `run_connection`) and has `CLOSE_GRACE` to send it.
    if tokio::time::timeout(grace + CLOSE_GRACE + CLOSE_GRACE, slots.acquire_many(all)).await.is_err() {
        tracing::warn!(
            listener = name,
            grace_ms = grace.as_millis() as u64,
            "grace time over; closing the remaining connections"
        );
    }
}

/// Serves the requests of one connection until it closes, its watchdog closes it, or shutdown
/// does (within the grace time of the moment). `limits` are those it was accepted with, and
/// where to read the grace time.
#[allow(clippy::too_many_arguments)] // one connection's parts, handed over once
async fn run_connection<I, F, Fut>(
    name: &'static str,
    builder: &auto::Builder<TokioExecutor>,
    io: I,
    (handler, cut_short): (F, CutShort),
    connection: Connection,
    activity: Arc<Activity>,
    (limits, source): (ConnLimits, &Limits),
    mut stop: watch::Receiver<bool>,
    connections: &Arc<Connections>,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    F: Fn(Request<Incoming>, Connection) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Response<Full<Bytes>>> + Send + 'static,
{
    let peer = connection.peer;
    let counted = activity.clone();
    // Turned on when shutdown's grace time is over: what is still running is answered then.
    let (cut_tx, cut_rx) = watch::channel(false);
    let cut_counted = connections.clone();
    let service = hyper::service::service_fn(move |request: Request<Incoming>| {
        // Called once a request head is complete (HTTP/1.1 head, h2 HEADERS with END_HEADERS).
        let in_flight = InFlight::start(counted.clone(), request.version() >= http::Version::HTTP_2);
        let handler = handler.clone();
        let connection = connection.clone();
        let mut cut = cut_rx.clone();
        let cut_counted = cut_counted.clone();
        async move {
            let (method, version) = (request.method().clone(), request.version());
            let path = request.uri().path().to_owned();
            let request_id = request
                .headers()
                .get("x-request-id")
                .and_then(|v| v.to_str().ok())
                .map_or_else(|| "-".to_owned(), crate::scim::error::echoed);
            let response = tokio::select! {
                response = handler(request, connection) => response,
                _ = cut.wait_for(|cut| *cut) => {
                    cut_counted.cut.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(
                        listener = name, %peer, %method, path = %crate::scim::error::echoed(&path), request_id,
                        status = 503, "request cut short: server.shutdown_grace is over"
                    );
                    cut_short(&method, version, &request_id)
                }
            };
            drop(in_flight);
            Ok::<_, Infallible>(response)
        }
    });
    let served = builder.serve_connection(TokioIo::new(io), service);
    tokio::pin!(served);
    // Set once the connection was asked to close: at this instant what still runs is answered
    // (once), and `CLOSE_GRACE` later the connection is dropped if still open.
    let mut closing: Option<Instant> = None;
    let mut answered_the_rest = false;
    loop {
        let expiry = activity.expiry(&limits);
        let wakeup = closing.or(expiry.map(|(at, _)| at));
        tokio::select! {
            result = served.as_mut() => {
                if let Err(error) = result {
                    tracing::debug!(listener = name, %peer, error = %error, "connection ended with an error");
                }
                return;
            }
            _ = stop.wait_for(|stop| *stop), if closing.is_none() => {
                served.as_mut().graceful_shutdown();
                closing = Some(Instant::now() + source.now().shutdown_grace);
            }
            _ = activity.changed.notified() => {}
            _ = tokio::time::sleep_until(wakeup.unwrap_or_else(Instant::now)), if wakeup.is_some() => {
                match (closing, expiry) {
                    (Some(_), _) if answered_the_rest => return,
                    (Some(_), _) => {
                        let _ = cut_tx.send(true);
                        answered_the_rest = true;
                        closing = Some(Instant::now() + CLOSE_GRACE);
                    }
                    (None, Some((_, reason @ (Expiry::Idle | Expiry::SlowHead)))) => {
                        // A client already served is closed politely: h2 gets a GOAWAY, so it
                        // opens a new connection instead of failing a request sent meanwhile.
                        tracing::debug!(listener = name, %peer, reason = reason.text(), "connection closed");
                        served.as_mut().graceful_shutdown();
                        closing = Some(Instant::now() + CLOSE_GRACE);
                    }
                    (None, Some((_, reason))) => {
                        tracing::debug!(listener = name, %peer, reason = reason.text(), "connection closed");
                        return;
                    }
                    (None, None) => {}
                }
            }
        }
    }
}

/// Why a connection's watchdog closes it, when nothing happens first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expiry {
    /// Accepted, but no complete request head within `header_read_timeout`.
    NoRequest,
    /// Idle, then bytes but no complete request head within `header_read_timeout`.
    SlowHead,
    /// Idle for `idle_timeout`.
    Idle,
    /// Closed to make room for a new connection.
    Evicted,
}

impl Expiry {
    fn text(self) -> &'static str {
        match self {
            Expiry::NoRequest => "no request head within header_read_timeout",
            Expiry::SlowHead => "request head not completed within header_read_timeout",
            Expiry::Idle => "idle for idle_timeout",
            Expiry::Evicted => "closed to make room for a new connection",
        }
    }
}

/// What the watchdog of one connection knows of it: its requests in flight and whether it sent
/// anything since it last went idle. Updated by the connection's reads and its requests.
struct Activity {
    /// When the TCP connection was accepted.
    accepted: Instant,
    phase: Mutex<Phase>,
    /// True while idle with nothing read since: the next read starts the head clock. Read on
    /// every read without the lock.
    listening: AtomicBool,
    /// The connection speaks h2: bytes read while idle are not a request head (a client
    /// sends PINGs, WINDOW_UPDATEs and SETTINGS between requests), so an idle h2 connection is
    /// timed by `idle_timeout` only, and its first request by `header_read_timeout`.
    h2: AtomicBool,
    /// Woken on every change of `phase`; the connection's task is the only waiter.
    changed: Notify,
}

#[derive(Debug)]
struct Phase {
    in_flight: usize,
    served: bool,
    /// When the connection last became idle (no request in flight).
    idle_since: Instant,
    /// The first byte read while idle.
    heard: Option<Instant>,
    evicted: bool,
}

impl Activity {
    fn new(accepted: Instant) -> Self {
        Self {
            accepted,
            phase: Mutex::new(Phase { in_flight: 0, served: false, idle_since: accepted, heard: None, evicted: false }),
            listening: AtomicBool::new(false),
            h2: AtomicBool::new(false),
            changed: Notify::new(),
        }
    }

    fn phase(&self) -> std::sync::MutexGuard<'_, Phase> {
        self.phase.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// When the connection is to be closed, and why; `None` while a request is in flight
    /// (requests have their own deadline).
    fn expiry(&self, limits: &ConnLimits) -> Option<(Instant, Expiry)> {
        let phase = self.phase();
        if phase.in_flight > 0 {
            return None;
        }
        Some(if phase.evicted {
            (Instant::now(), Expiry::Evicted)
        } else if !phase.served {
            (self.accepted + limits.header_read_timeout, Expiry::NoRequest)
        } else if let Some(heard) = phase.heard {
            (heard + limits.header_read_timeout, Expiry::SlowHead)
        } else {
            (phase.idle_since + limits.idle_timeout, Expiry::Idle)
        })
    }

    /// Since when the connection has been idle; `None` while a request is in flight, and once
    /// it was asked to make room (it is closing).
    fn idle_since(&self) -> Option<Instant> {
        let phase = self.phase();
        (phase.in_flight == 0 && !phase.evicted).then_some(phase.idle_since)
    }

    /// Asks the connection to close now, unless a request is in flight.
    fn evict(&self) {
        let mut phase = self.phase();
        if phase.in_flight == 0 {
            phase.evicted = true;
            self.changed.notify_one();
        }
    }

    /// Bytes were read while the connection was idle: a request head has begun.
    fn heard(&self) {
        if self.listening.swap(false, Ordering::AcqRel) && !self.h2.load(Ordering::Acquire) {
            let mut phase = self.phase();
            if phase.in_flight == 0 && phase.heard.is_none() {
                phase.heard = Some(Instant::now());
                self.changed.notify_one();
            }
        }
    }
}

/// A request in flight on a connection, from its complete head to its response.
struct InFlight(Arc<Activity>);

impl InFlight {
    fn start(activity: Arc<Activity>, h2: bool) -> Self {
        if h2 {
            activity.h2.store(true, Ordering::Release);
        }
        {
            let mut phase = activity.phase();
            phase.in_flight += 1;
            phase.served = true;
            phase.heard = None;
            activity.listening.store(false, Ordering::Release);
        }
        activity.changed.notify_one();
        Self(activity)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        {
            let mut phase = self.0.phase();
            phase.in_flight = phase.in_flight.saturating_sub(1);
            if phase.in_flight == 0 {
                phase.idle_since = Instant::now();
                phase.heard = None;
                self.0.listening.store(true, Ordering::Release);
            }
        }
        self.0.changed.notify_one();
    }
}

/// A connection's socket, telling its [`Activity`] when bytes arrive.
struct Heard<I> {
    io: I,
    activity: Arc<Activity>,
}

impl<I: AsyncRead + Unpin> AsyncRead for Heard<I> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.io).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.heard();
        }
        polled
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for Heard<I> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

/// Runs `work` every `interval` until `stop` turns true: the tasks that watch files and the
/// legacy apps while the proxy serves. With `now`, the first run is right away.
pub(crate) async fn every<F, Fut>(interval: Duration, now: bool, mut stop: watch::Receiver<bool>, mut work: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = ()>,
{
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    if !now {
        ticker.tick().await;
    }
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        // Shutdown does not wait for work under way (a reload compiling a script): it is dropped.
        tokio::select! {
            () = work() => {}
            _ = stop.wait_for(|s| *s) => return,
        }
    }
}
