//! Listeners: accept connections, complete TLS where configured, serve HTTP/1.1 and h2 with
//! hyper, drain on shutdown.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

use crate::tls::ClientIdentity;

/// What a handler knows of the connection a request came on.
#[derive(Debug, Clone)]
pub struct Connection {
    /// The client's address.
    pub peer: SocketAddr,
    /// Whether the connection is TLS.
    pub tls: bool,
    /// The client certificate verified in the TLS handshake, if the client sent one.
    pub client: Option<Arc<ClientIdentity>>,
}

/// Limits applied to every connection of a listener.
#[derive(Debug, Clone, Copy)]
pub struct ConnLimits {
    /// Time a client has to send a request's headers (slow clients are cut off), and to
    /// complete a TLS handshake.
    pub header_read_timeout: Duration,
    /// How long shutdown waits for in-flight requests.
    pub shutdown_grace: Duration,
    /// Connections served at once; past it, new ones wait in the kernel's accept queue.
    pub max_connections: usize,
}

/// Serves `handler` on `listener` until `shutdown` turns true, then drains within the grace time.
///
/// With `tls`, each connection completes its handshake in its own task, within
/// `header_read_timeout`, so a client that stalls it holds up no one else.
/// Runs as its own task; returns when every connection has finished or the grace time is up.
pub async fn serve<F, Fut>(
    listener: TcpListener,
    name: &'static str,
    handler: F,
    limits: ConnLimits,
    tls: Option<TlsAcceptor>,
    mut shutdown: watch::Receiver<bool>,
) where
    F: Fn(Request<Incoming>, Connection) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Response<Full<Bytes>>> + Send + 'static,
{
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder.http1().timer(TokioTimer::new()).header_read_timeout(limits.header_read_timeout).keep_alive(true);
    builder.http2().timer(TokioTimer::new()).max_concurrent_streams(256);
    let builder = Arc::new(builder);
    let graceful = GracefulShutdown::new();
    let slots = Arc::new(tokio::sync::Semaphore::new(limits.max_connections));
    loop {
        // A bounded number of connections (and so of requests in memory): at the limit the
        // proxy stops accepting until one closes.
        let slot = tokio::select! {
            slot = slots.clone().acquire_owned() => slot,
            _ = shutdown.wait_for(|stop| *stop) => break,
        };
        let Ok(slot) = slot else { break };
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
        let _ = stream.set_nodelay(true);
        let handler = handler.clone();
        let builder = builder.clone();
        let watcher = graceful.watcher();
        let Some(acceptor) = tls.clone() else {
            let connection = Connection { peer, tls: false, client: None };
            let served = serve_connection(name, &builder, watcher, TokioIo::new(stream), connection, handler);
            tokio::spawn(async move {
                served.await;
                drop(slot);
            });
            continue;
        };
        tokio::spawn(async move {
            let _slot = slot;
            let stream = match tokio::time::timeout(limits.header_read_timeout, acceptor.accept(stream)).await {
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
            let connection = Connection { peer, tls: true, client };
            serve_connection(name, &builder, watcher, TokioIo::new(stream), connection, handler).await;
        });
    }
    drop(listener);
    let open = graceful.count();
    tracing::info!(listener = name, open_connections = open, "draining");
    if tokio::time::timeout(limits.shutdown_grace, graceful.shutdown()).await.is_err() {
        tracing::warn!(
            listener = name,
            grace_ms = limits.shutdown_grace.as_millis() as u64,
            "grace time over; closing the remaining connections"
        );
    }
}

/// Serves the requests of one connection until it closes or shutdown closes it.
fn serve_connection<I, F, Fut>(
    name: &'static str,
    builder: &auto::Builder<TokioExecutor>,
    watcher: Watcher,
    io: TokioIo<I>,
    connection: Connection,
    handler: F,
) -> impl Future<Output = ()> + Send + 'static
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    F: Fn(Request<Incoming>, Connection) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Response<Full<Bytes>>> + Send + 'static,
{
    let peer = connection.peer;
    let service = hyper::service::service_fn(move |request| {
        let handler = handler.clone();
        let connection = connection.clone();
        async move { Ok::<_, Infallible>(handler(request, connection).await) }
    });
    let served = watcher.watch(builder.serve_connection(io, service).into_owned());
    async move {
        if let Err(error) = served.await {
            tracing::debug!(listener = name, %peer, error = %error, "connection ended with an error");
        }
    }
}

/// Runs `work` every `interval` until `stop` turns true: the tasks that watch files and the
/// legacy apps while the proxy serves. With `now`, the first run is right away.
pub async fn every<F, Fut>(interval: Duration, now: bool, mut stop: watch::Receiver<bool>, mut work: F)
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
        work().await;
    }
}
