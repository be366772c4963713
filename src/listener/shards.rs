//! Which thread serves a connection: with more than one core, each accepted connection is
//! handed to one of the proxy's serving threads, each a single-threaded runtime of its own,
//! and stays on it; its requests, their script calls and their legacy calls all run there.
//!
//! A multi-threaded runtime lets its workers take each other's tasks, which keeps every core
//! busy but moves a request's steps between cores: the I/O driver handed from thread to
//! thread, a parked worker woken for work another one queued, caches cold wherever a step
//! lands. Threads that each keep their own connections wake no other thread for a request.

use std::cell::RefCell;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::net::TcpStream;
use tokio::runtime::Handle;

/// The serving threads of the process, the thread that accepts connections first.
#[derive(Debug)]
pub struct Shards {
    threads: Vec<Shard>,
    /// Where the next search for the least busy thread starts, so that ties go round.
    next: AtomicUsize,
}

/// One serving thread: its runtime and how many connections it serves now.
#[derive(Debug)]
struct Shard {
    handle: Handle,
    open: Arc<AtomicUsize>,
}

impl Shards {
    /// The serving threads, by their runtimes: the accepting thread's own first.
    pub fn new(handles: Vec<Handle>) -> Arc<Self> {
        let threads = handles.into_iter().map(|handle| Shard { handle, open: Arc::default() }).collect();
        Arc::new(Self { threads, next: AtomicUsize::new(0) })
    }

    /// How many threads serve connections.
    pub fn count(&self) -> usize {
        self.threads.len()
    }

    /// The thread serving the fewest connections now, among equals the next in turn; `None`
    /// when there is no thread to serve on.
    fn least_busy(&self) -> Option<&Shard> {
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let n = self.threads.len();
        (0..n).map(|i| &self.threads[(start + i) % n]).min_by_key(|shard| shard.open.load(Ordering::Relaxed))
    }

    /// Connections each thread serves now, in the order of [`Self::new`].
    pub fn open(&self) -> Vec<usize> {
        self.threads.iter().map(|shard| shard.open.load(Ordering::Relaxed)).collect()
    }
}

thread_local! {
    /// The serving threads, on the thread that accepts connections; `None` elsewhere, where a
    /// connection is served on the runtime that accepted it.
    static SHARDS: RefCell<Option<Arc<Shards>>> = const { RefCell::new(None) };
}

/// Makes this thread hand the connections it accepts to `shards` until the guard is dropped.
pub fn accept_for(shards: Arc<Shards>) -> AcceptingFor {
    let before = SHARDS.with(|s| s.borrow_mut().replace(shards));
    AcceptingFor { before }
}

/// Puts back what this thread did with its connections before [`accept_for`].
#[derive(Debug)]
pub struct AcceptingFor {
    before: Option<Arc<Shards>>,
}

impl Drop for AcceptingFor {
    fn drop(&mut self) {
        let before = self.before.take();
        SHARDS.with(|s| *s.borrow_mut() = before);
    }
}

/// How many threads serve the connections this thread accepts: the serving threads, or the
/// workers of the runtime it runs on.
pub(crate) fn serving_threads() -> usize {
    SHARDS
        .with(|s| s.borrow().as_ref().map(|shards| shards.count()))
        .unwrap_or_else(|| Handle::try_current().map_or(1, |handle| handle.metrics().num_workers()))
}

/// Serves an accepted connection with `serve`, as a task of the least busy serving thread (or
/// of this runtime, when there are none). The socket is registered with that thread's own I/O
/// driver, so that what it hears wakes that thread alone.
pub(crate) fn spawn<F, Fut>(stream: TcpStream, serve: F)
where
    F: FnOnce(TcpStream) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let shards = SHARDS.with(|s| s.borrow().clone());
    let Some(shard) = shards.as_deref().and_then(Shards::least_busy) else {
        tokio::spawn(serve(stream));
        return;
    };
    let open = shard.open.clone();
    open.fetch_add(1, Ordering::Relaxed);
    let counted = Counted(open);
    if Handle::try_current().is_ok_and(|here| here.id() == shard.handle.id()) {
        tokio::spawn(async move {
            let _counted = counted;
            serve(stream).await;
        });
        return;
    }
    // Taken off this thread's driver here, put on the serving thread's there.
    let socket = match stream.into_std() {
        Ok(socket) => socket,
        Err(error) => {
            tracing::debug!(%error, "an accepted connection could not be handed over");
            return;
        }
    };
    shard.handle.spawn(async move {
        let _counted = counted;
        match TcpStream::from_std(socket) {
            Ok(stream) => serve(stream).await,
            Err(error) => tracing::warn!(%error, "an accepted connection could not be served"),
        }
    });
}

/// A connection counted as open on its serving thread until it ends.
struct Counted(Arc<AtomicUsize>);

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    use super::*;

    /// A connection's serving thread names itself, then holds the connection until the client
    /// closes it.
    async fn name_the_thread(mut stream: TcpStream) {
        let name = std::thread::current().name().unwrap_or("?").to_owned();
        let _ = stream.write_all(format!("{name}\n").as_bytes()).await;
        let mut rest = Vec::new();
        let _ = stream.read_to_end(&mut rest).await;
    }

    /// Opens a connection, has it accepted and handed over, and answers the serving thread's name.
    async fn connect(listener: &TcpListener) -> (TcpStream, String) {
        let mut client = TcpStream::connect(listener.local_addr().unwrap()).await.unwrap();
        let (accepted, _) = listener.accept().await.unwrap();
        spawn(accepted, name_the_thread);
        let mut line = Vec::new();
        let mut byte = [0u8; 1];
        while client.read_exact(&mut byte).await.is_ok() && byte[0] != b'\n' {
            line.push(byte[0]);
        }
        (client, String::from_utf8(line).unwrap())
    }

    #[test]
    fn connections_go_to_the_serving_thread_with_the_fewest_and_are_served_there() {
        let (handle_tx, handle_rx) = std::sync::mpsc::channel();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let other = std::thread::Builder::new()
            .name("other".into())
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
                handle_tx.send(runtime.handle().clone()).unwrap();
                runtime.block_on(async move { drop(stop_rx.await) });
            })
            .unwrap();
        let here = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let shards = Shards::new(vec![here.handle().clone(), handle_rx.recv().unwrap()]);
        let _accepting = accept_for(shards.clone());
        let this = std::thread::current().name().unwrap_or("?").to_owned();
        here.block_on(async {
            assert_eq!(serving_threads(), 2);
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let mut open = Vec::new();
            for _ in 0..4 {
                open.push(connect(&listener).await);
            }
            let served: Vec<&str> = open.iter().map(|(_, name)| name.as_str()).collect();
            assert_eq!(served, [this.as_str(), "other", this.as_str(), "other"]);
            assert_eq!(shards.open(), [2, 2]);
            // One of the other thread's connections ends: the next connection goes there.
            drop(open.remove(1));
            let until = std::time::Instant::now() + Duration::from_secs(10);
            while shards.open() != [2, 1] {
                assert!(std::time::Instant::now() < until, "{:?}", shards.open());
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            let (_client, name) = connect(&listener).await;
            assert_eq!(name, "other");
            assert_eq!(shards.open(), [2, 2]);
        });
        stop_tx.send(()).unwrap();
        other.join().unwrap();
    }
}
