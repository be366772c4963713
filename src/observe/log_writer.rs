//! The log's way to stderr: lines gathered in memory and written together by a thread of their
//! own, at most `log.flush_interval` after they were made.
//!
//! A line written as it is made costs a `write` syscall on the request's thread and wakes the
//! reader of stderr (the container runtime's log shim) once a request: on the one core a
//! sidecar gets, that was the largest single cost of a request after the script. Gathered,
//! the lines of a busy interval go out in one `write` and one wake-up.
//!
//! Nothing is dropped: a writer that finds [`MAX_PENDING_BYTES`] waiting (stderr's reader is
//! slower than the requests) waits for the log thread to write them, as it waited on a full
//! pipe before. Lines keep their order. [`flush`] writes what is waiting before the process
//! exits or reports a panic.

use std::io::Write as _;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};
use std::time::Duration;

/// Bytes of log lines that may wait for the log thread; a line made past it waits for them to
/// be written.
pub(crate) const MAX_PENDING_BYTES: usize = 1 << 20;

/// Waiting bytes past which the log thread writes at once, without waiting for the interval.
const WRITE_AT_ONCE_BYTES: usize = 64 * 1024;

/// The process's gathered log, once [`install`] has run.
static GATHERED: OnceLock<Arc<Gathered>> = OnceLock::new();

/// Lines waiting to be written, and the log thread's signals.
struct Gathered {
    pending: Mutex<Pending>,
    /// Tells the log thread there are lines (or many of them).
    has_lines: Condvar,
    /// Tells writers waiting on a full buffer that it was emptied.
    emptied: Condvar,
    /// Where the lines go (stderr), held while a batch is written so that [`flush`] and the
    /// log thread write their batches in the order they took them. Taken before `pending`.
    out: Mutex<Box<dyn std::io::Write + Send>>,
    interval: Duration,
}

#[derive(Default)]
struct Pending {
    lines: Vec<u8>,
    /// The log thread has been told about the lines now waiting.
    told: bool,
    /// The lines waiting passed [`WRITE_AT_ONCE_BYTES`]; the log thread has been told so.
    urgent: bool,
}

impl Gathered {
    fn new(out: Box<dyn std::io::Write + Send>, interval: Duration) -> Self {
        Self {
            pending: Mutex::new(Pending::default()),
            has_lines: Condvar::new(),
            emptied: Condvar::new(),
            out: Mutex::new(out),
            interval,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Pending> {
        // A panic while holding the lock left whole lines behind (each is appended in one
        // `extend`): the log goes on.
        self.pending.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn append(&self, line: &[u8]) {
        let mut pending = self.lock();
        while pending.lines.len() >= MAX_PENDING_BYTES {
            if !pending.urgent {
                pending.urgent = true;
                self.has_lines.notify_one();
            }
            pending = self.emptied.wait(pending).unwrap_or_else(std::sync::PoisonError::into_inner);
        }
        pending.lines.extend_from_slice(line);
        if !pending.told {
            pending.told = true;
            self.has_lines.notify_one();
        } else if !pending.urgent && pending.lines.len() >= WRITE_AT_ONCE_BYTES {
            pending.urgent = true;
            self.has_lines.notify_one();
        }
    }

    /// Writes what waits now; `spare` is the buffer to hand back for the next lines.
    fn write_waiting(&self, spare: &mut Vec<u8>) {
        self.write_waiting_to(self.out.lock().unwrap_or_else(std::sync::PoisonError::into_inner), spare);
    }

    fn write_waiting_to(&self, mut out: MutexGuard<'_, Box<dyn std::io::Write + Send>>, spare: &mut Vec<u8>) {
        {
            let mut pending = self.lock();
            std::mem::swap(&mut pending.lines, spare);
            pending.told = false;
            pending.urgent = false;
        }
        self.emptied.notify_all();
        if !spare.is_empty() {
            // A reader of stderr that went away (a log collector restarting) must not take
            // the proxy down: the lines are dropped, as a failed `write` dropped them before.
            let _ = out.write_all(spare).and_then(|()| out.flush());
            spare.clear();
        }
        if spare.capacity() > 4 * WRITE_AT_ONCE_BYTES {
            spare.shrink_to(WRITE_AT_ONCE_BYTES);
        }
    }

    /// The log thread: waits for lines, gives the interval to gather more, writes them.
    fn run(&self) {
        let mut spare = Vec::new();
        loop {
            {
                let pending = self.lock();
                let pending = self
                    .has_lines
                    .wait_while(pending, |p| p.lines.is_empty())
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                let _gathered = self
                    .has_lines
                    .wait_timeout_while(pending, self.interval, |p| !p.urgent)
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
            }
            self.write_waiting(&mut spare);
        }
    }
}

/// Gathers the log's lines from now on, written by a thread of their own every `interval`.
/// Answers false, and changes nothing, when the log thread cannot be started or a log is
/// gathered already.
pub(crate) fn install(interval: Duration) -> bool {
    if GATHERED.get().is_some() {
        return false;
    }
    // Started before the log is gathered: lines are never left waiting for a thread that
    // could not start.
    let Ok(gathered) = start(Box::new(std::io::stderr()), interval) else { return false };
    GATHERED.set(gathered).is_ok()
}

/// A gathered log writing to `out`, and its thread.
fn start(out: Box<dyn std::io::Write + Send>, interval: Duration) -> std::io::Result<Arc<Gathered>> {
    let gathered = Arc::new(Gathered::new(out, interval));
    let thread = gathered.clone();
    std::thread::Builder::new().name("scim-log".into()).spawn(move || thread.run())?;
    Ok(gathered)
}

/// Writes the lines gathered so far to stderr now: before the process exits, and before a line
/// written to stderr directly (a failure) so that it follows them.
pub(crate) fn flush() {
    if let Some(gathered) = GATHERED.get() {
        gathered.write_waiting(&mut Vec::new());
    }
}

/// [`flush`] before a panic's report, unless stderr is being written to at that moment (by
/// the log thread, or by the thread that panicked): a panic never waits on the log.
pub(crate) fn flush_before_panic() {
    if let Some(gathered) = GATHERED.get() {
        if let Ok(out) = gathered.out.try_lock() {
            gathered.write_waiting_to(out, &mut Vec::new());
        }
    }
}

/// The writer the log's subscriber formats each event into: one `write` a line.
#[derive(Clone, Copy)]
pub(crate) struct GatheredWriter;

impl std::io::Write for GatheredWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match GATHERED.get() {
            Some(gathered) => gathered.append(buf),
            None => std::io::stderr().lock().write_all(buf)?,
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An output the test reads back; while `stuck`, writes wait, as for a reader of stderr
    /// that reads nothing.
    #[derive(Clone, Default)]
    struct Output {
        written: Arc<Mutex<Vec<u8>>>,
        writes: Arc<std::sync::atomic::AtomicUsize>,
        stuck: Arc<std::sync::atomic::AtomicBool>,
    }

    impl std::io::Write for Output {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            while self.stuck.load(std::sync::atomic::Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(1));
            }
            self.writes.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            self.written.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl Output {
        fn text(&self) -> String {
            String::from_utf8(self.written.lock().unwrap().clone()).unwrap()
        }
    }

    /// Lines of `writers` threads appending at once: each thread's lines, in its order.
    fn append_from_threads(gathered: &Arc<Gathered>, writers: usize, lines: usize, padding: usize) {
        let threads: Vec<_> = (0..writers)
            .map(|w| {
                let gathered = gathered.clone();
                std::thread::spawn(move || {
                    for n in 0..lines {
                        gathered.append(format!("w{w} n{n} {}\n", "x".repeat(padding)).as_bytes());
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().unwrap();
        }
    }

    fn assert_every_line_whole_and_in_order(text: &str, writers: usize, lines: usize) {
        let mut next = vec![0; writers];
        for line in text.lines() {
            let mut words = line.split(' ');
            let w: usize = words.next().unwrap().trim_start_matches('w').parse().unwrap();
            let n: usize = words.next().unwrap().trim_start_matches('n').parse().unwrap();
            assert_eq!(n, next[w], "writer {w}'s lines out of order or lost at {line:?}");
            next[w] += 1;
        }
        assert_eq!(next, vec![lines; writers], "every line of every writer");
    }

    #[test]
    fn lines_from_many_threads_are_written_whole_in_order_and_together() {
        let output = Output::default();
        let gathered = start(Box::new(output.clone()), Duration::from_millis(20)).unwrap();
        append_from_threads(&gathered, 8, 2000, 40);
        gathered.write_waiting(&mut Vec::new());
        assert_every_line_whole_and_in_order(&output.text(), 8, 2000);
        let writes = output.writes.load(std::sync::atomic::Ordering::SeqCst);
        assert!(writes < 16_000 / 10, "{writes} writes for 16,000 lines: they were not gathered");
    }

    #[test]
    fn a_reader_that_stops_reading_holds_the_writers_back_without_losing_a_line() {
        // 3 MiB of lines for a buffer of 1 MiB, and a reader that takes nothing for a while.
        let output = Output::default();
        output.stuck.store(true, std::sync::atomic::Ordering::SeqCst);
        let gathered = start(Box::new(output.clone()), Duration::from_secs(3600)).unwrap();
        let writers = {
            let gathered = gathered.clone();
            std::thread::spawn(move || append_from_threads(&gathered, 4, 750, 1000))
        };
        // The log thread took the first 64 KiB or more and waits on the reader; the writers
        // fill the buffer and wait too.
        let until = std::time::Instant::now() + Duration::from_secs(10);
        while gathered.lock().lines.len() < MAX_PENDING_BYTES {
            assert!(std::time::Instant::now() < until, "the buffer never filled");
            std::thread::sleep(Duration::from_millis(1));
        }
        std::thread::sleep(Duration::from_millis(100));
        let pending = gathered.lock().lines.len();
        assert!(pending < MAX_PENDING_BYTES + 1100, "{pending} bytes waiting: the writers were not held back");
        assert!(!writers.is_finished(), "the writers were not held back");
        output.stuck.store(false, std::sync::atomic::Ordering::SeqCst);
        writers.join().unwrap();
        gathered.write_waiting(&mut Vec::new());
        assert_every_line_whole_and_in_order(&output.text(), 4, 750);
    }

    #[test]
    fn lines_wait_for_the_interval_and_no_longer() {
        let output = Output::default();
        let gathered = start(Box::new(output.clone()), Duration::from_secs(3600)).unwrap();
        gathered.append(b"first\n");
        std::thread::sleep(Duration::from_millis(100));
        assert_eq!(output.text(), "", "written before the interval was over");
        gathered.write_waiting(&mut Vec::new());
        assert_eq!(output.text(), "first\n", "written by a flush at once");

        let output = Output::default();
        let gathered = start(Box::new(output.clone()), Duration::from_millis(30)).unwrap();
        gathered.append(b"second\n");
        let until = std::time::Instant::now() + Duration::from_secs(10);
        while output.text().is_empty() {
            assert!(std::time::Instant::now() < until, "never written");
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(output.text(), "second\n");
    }
}
