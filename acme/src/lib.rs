//! Acme Directory: the bundled in-house user API that the demo, the tests and the benchmarks
//! put the proxy in front of.
//!
//! It deliberately looks like a legacy REST API, not like SCIM: numeric ids, snake_case
//! records, an `X-Api-Key` header, its own error JSON and `page`/`per_page` paging. The
//! endpoints are described in `docs/acme-directory.md`.
//!
//! [`start`] binds the API to a listener and returns an [`AcmeHandle`], through which tests
//! seed the [`Store`], count the requests the proxy made and shut the server down.
//!
//! A crate of its own in the workspace (package `acme-directory`, library `acme`), so that
//! the proxy's library does not carry it: `scim-proxy demo` links it through the proxy's
//! `demo` feature (on by default), the tests and benchmarks as a dev-dependency.

pub mod api;
pub mod store;

use std::convert::Infallible;
use std::fmt;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};

use self::api::ApiState;
pub use self::store::Store;

/// Page size cap used when the configuration does not ask for another.
pub const DEFAULT_MAX_PER_PAGE: u32 = 100;

/// How long [`AcmeHandle::shutdown`] waits for open connections to finish.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// Settings of one Acme Directory server.
#[derive(Clone)]
pub struct AcmeConfig {
    /// Value every request must carry in `X-Api-Key` (except `GET /api/v1/health`).
    pub api_key: String,
    /// Largest `per_page` honoured; larger requests are lowered to it. Default 100.
    pub max_per_page: u32,
}

impl AcmeConfig {
    /// Settings with this API key and the default page size cap.
    pub fn new(api_key: impl Into<String>) -> Self {
        Self { api_key: api_key.into(), max_per_page: DEFAULT_MAX_PER_PAGE }
    }
}

impl fmt::Debug for AcmeConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AcmeConfig").field("api_key", &"<redacted>").field("max_per_page", &self.max_per_page).finish()
    }
}

/// A running Acme Directory server. Dropping it stops accepting connections as
/// [`AcmeHandle::shutdown`] does, without waiting.
pub struct AcmeHandle {
    addr: SocketAddr,
    state: Arc<ApiState>,
    stop: watch::Sender<()>,
    accept_loop: JoinHandle<()>,
}

impl fmt::Debug for AcmeHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AcmeHandle").field("addr", &self.addr).finish_non_exhaustive()
    }
}

/// Starts serving the directory on `listener` with an empty store, and returns at once.
///
/// Fails when the listener has no local address, the API key is empty or
/// `max_per_page` is 0.
pub async fn start(listener: TcpListener, config: AcmeConfig) -> io::Result<AcmeHandle> {
    if config.api_key.is_empty() {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "acme api key is empty"));
    }
    if config.max_per_page == 0 {
        let message = "acme max_per_page must be at least 1";
        return Err(io::Error::new(io::ErrorKind::InvalidInput, message));
    }
    let addr = listener.local_addr()?;
    let store = Arc::new(Store::new());
    let state = Arc::new(ApiState::new(store, &config.api_key, config.max_per_page));
    let (stop, stopped) = watch::channel(());
    let accept_loop = tokio::spawn(serve(listener, Arc::clone(&state), stopped));
    info!(%addr, "acme directory listening");
    Ok(AcmeHandle { addr, state, stop, accept_loop })
}

impl AcmeHandle {
    /// The address the server listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Base URL of the API, e.g. `http://127.0.0.1:41234/api/v1` (a wildcard listen
    /// address is replaced by loopback, so the URL can be called).
    pub fn base_url(&self) -> String {
        let ip = match self.addr.ip() {
            IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
            ip => ip,
        };
        format!("http://{}/api/v1", SocketAddr::new(ip, self.addr.port()))
    }

    /// The server's data, for tests and benchmarks to seed and inspect directly.
    pub fn store(&self) -> Arc<Store> {
        Arc::clone(self.state.store())
    }

    /// How many HTTP requests the server has answered or is answering, all routes and
    /// outcomes included; tests and benchmarks use it to count legacy calls.
    pub fn requests_served(&self) -> u64 {
        self.state.requests_served()
    }

    /// Stops accepting connections, then waits (at most 10 s) for requests in flight to
    /// finish. Idle keep-alive connections are closed.
    pub async fn shutdown(self) {
        // An error only means the accept loop is gone already.
        let _ = self.stop.send(());
        if let Err(error) = self.accept_loop.await {
            warn!(error = %error, "acme accept loop failed");
        }
    }
}

/// Accepts connections until told to stop (or until the handle is dropped), then drains.
async fn serve(listener: TcpListener, state: Arc<ApiState>, mut stopped: watch::Receiver<()>) {
    let builder = auto::Builder::new(TokioExecutor::new());
    let graceful = GracefulShutdown::new();
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Usually out of file descriptors: back off instead of spinning.
                    warn!(error = %error, "acme accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = stopped.changed() => break,
        };
        // Responses are written whole; Nagle would only add latency to them.
        if let Err(error) = stream.set_nodelay(true) {
            debug!(error = %error, "acme could not set nodelay");
        }
        let state = Arc::clone(&state);
        let service = service_fn(move |request: hyper::Request<Incoming>| {
            let state = Arc::clone(&state);
            async move { Ok::<_, Infallible>(api::handle(&state, request).await) }
        });
        let connection = builder.serve_connection(TokioIo::new(stream), service).into_owned();
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                debug!(%peer, error = %error, "acme connection ended with an error");
            }
        });
    }
    drop(listener);
    if tokio::time::timeout(DRAIN_TIMEOUT, graceful.shutdown()).await.is_err() {
        warn!(timeout_secs = DRAIN_TIMEOUT.as_secs(), "acme shutdown timed out with open connections");
    }
    info!("acme directory stopped");
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn started() -> AcmeHandle {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        start(listener, AcmeConfig::new("k")).await.unwrap()
    }

    #[tokio::test]
    async fn base_url_names_the_bound_port() {
        let acme = started().await;
        let port = acme.addr().port();
        assert_ne!(port, 0);
        assert_eq!(acme.base_url(), format!("http://127.0.0.1:{port}/api/v1"));
        acme.shutdown().await;
    }

    #[tokio::test]
    async fn wildcard_address_gives_a_loopback_url() {
        let listener = TcpListener::bind("0.0.0.0:0").await.unwrap();
        let acme = start(listener, AcmeConfig::new("k")).await.unwrap();
        assert!(acme.base_url().starts_with("http://127.0.0.1:"));
        acme.shutdown().await;
    }

    #[tokio::test]
    async fn refuses_an_empty_key_or_a_zero_page_cap() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let err = start(listener, AcmeConfig::new("")).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let config = AcmeConfig { max_per_page: 0, ..AcmeConfig::new("k") };
        assert!(start(listener, config).await.is_err());
    }

    #[tokio::test]
    async fn config_debug_hides_the_key() {
        let shown = format!("{:?}", AcmeConfig::new("very-secret"));
        assert!(!shown.contains("very-secret"), "{shown}");
    }

    #[tokio::test]
    async fn shutdown_closes_idle_connections_and_the_port() {
        let acme = started().await;
        let client = reqwest::Client::new();
        let url = format!("{}/health", acme.base_url());
        // Leaves a keep-alive connection open in the client's pool.
        let status = client.get(&url).send().await.unwrap().status();
        assert_eq!(status, 200);
        let addr = acme.addr();
        acme.shutdown().await;
        assert!(tokio::net::TcpStream::connect(addr).await.is_err());
        assert!(client.get(&url).send().await.is_err());
    }

    #[tokio::test]
    async fn shutdown_lets_a_request_in_flight_finish() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let acme = started().await;
        let (addr, state) = (acme.addr(), Arc::clone(&acme.state));
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        // The headers and half the body are sent before shutdown starts.
        let head = "POST /api/v1/teams HTTP/1.1\r\nhost: x\r\nx-api-key: k\r\n\
                    content-type: application/json\r\ncontent-length: 14\r\n\r\n{\"name\":";
        stream.write_all(head.as_bytes()).await.unwrap();
        while state.requests_served() == 0 {
            tokio::task::yield_now().await;
        }
        let shutdown = tokio::spawn(acme.shutdown());
        // The port closes once the accept loop has stopped and draining has begun.
        while tokio::net::TcpStream::connect(addr).await.is_ok() {
            tokio::task::yield_now().await;
        }
        stream.write_all(b"\"Ops\"}").await.unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).await.unwrap();
        assert!(response.starts_with("HTTP/1.1 201"), "{response}");
        shutdown.await.unwrap();
        assert_eq!(state.store().team_count(), 1);
    }
}
