//! The circuit breaker of one app's legacy calls: fail fast while the legacy app is down.
//!
//! Closed, it counts consecutive transient failures; at `breaker.failures` it opens, and for
//! `breaker.open_for` every call is refused without touching the network. Then it is half-open:
//! one call (the probe) goes through; its success closes the breaker, its failure opens it again.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::config::BreakerConfig;

/// What a finished call says about the legacy app's availability.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// It answered (any status but 502, 503, 504 and 429).
    Up,
    /// A transient failure: no connection, a reset, a timeout, or 502/503/504/429.
    Down,
    /// Nothing about availability (a TLS or token problem, an answer that is not HTTP).
    Unknown,
}

/// The breaker's state as `/readyz` and `/metrics` show it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Shown {
    Closed,
    /// Calls fail fast for this much longer.
    Open(Duration),
    /// The next call (or the one in flight) is the probe.
    HalfOpen,
}

#[derive(Debug)]
enum State {
    Closed { failures: u32 },
    Open { until: Instant },
    HalfOpen { probing: bool },
}

/// The breaker of one app; shared by all its requests, and kept across configuration reloads
/// that leave the app's legacy settings alone.
#[derive(Debug)]
pub(crate) struct Breaker {
    app: String,
    config: BreakerConfig,
    state: Mutex<State>,
}

/// Leave for one call to go to the legacy app; report how it went with [`Ticket::record`].
#[derive(Debug)]
pub(crate) struct Ticket<'a> {
    breaker: &'a Breaker,
    probe: bool,
    recorded: bool,
}

impl Breaker {
    /// A closed breaker; `config.failures == 0` makes one that never opens.
    pub(crate) fn new(app: &str, config: &BreakerConfig) -> Self {
        Self { app: app.to_owned(), config: config.clone(), state: Mutex::new(State::Closed { failures: 0 }) }
    }

    /// The settings it was made with.
    pub(crate) fn config(&self) -> &BreakerConfig {
        &self.config
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        match self.state.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// Lets a call through, or says how long the breaker stays open (at least a second while a
    /// probe is in flight, whose outcome decides).
    pub(crate) fn admit(&self) -> Result<Ticket<'_>, Duration> {
        let mut state = self.lock();
        let probe = match &*state {
            State::Closed { .. } => false,
            State::Open { until } => {
                let now = Instant::now();
                if now < *until {
                    return Err(*until - now);
                }
                tracing::info!(app = self.app, "legacy circuit breaker half-open: one probe call goes through");
                true
            }
            State::HalfOpen { probing: false } => true,
            State::HalfOpen { probing: true } => return Err(Duration::from_secs(1)),
        };
        if probe {
            *state = State::HalfOpen { probing: true };
        }
        Ok(Ticket { breaker: self, probe, recorded: false })
    }

    /// The state now, for `/readyz` and `/metrics`.
    pub(crate) fn shown(&self) -> Shown {
        match &*self.lock() {
            State::Closed { .. } => Shown::Closed,
            State::Open { until } => match until.checked_duration_since(Instant::now()) {
                Some(left) if !left.is_zero() => Shown::Open(left),
                _ => Shown::HalfOpen,
            },
            State::HalfOpen { .. } => Shown::HalfOpen,
        }
    }

    fn open(&self, state: &mut State, reason: &str) {
        *state = State::Open { until: Instant::now() + self.config.open_for };
        tracing::warn!(
            app = self.app,
            failures = self.config.failures,
            open_for_ms = self.config.open_for.as_millis() as u64,
            reason,
            "legacy circuit breaker opened: the app's legacy calls fail fast"
        );
    }
}

impl Ticket<'_> {
    /// Records the outcome of the call this ticket let through.
    ///
    /// Only calls let through while closed count toward opening, and only the probe closes
    /// or re-opens a half-open breaker: a slow call finishing late changes nothing.
    pub(crate) fn record(mut self, verdict: Verdict) {
        self.recorded = true;
        let breaker = self.breaker;
        if breaker.config.failures == 0 {
            return;
        }
        let mut state = breaker.lock();
        match (&*state, self.probe, verdict) {
            (State::Closed { .. }, false, Verdict::Up) => *state = State::Closed { failures: 0 },
            (State::Closed { failures }, false, Verdict::Down) => {
                let failures = failures + 1;
                if failures >= breaker.config.failures {
                    breaker.open(&mut state, "consecutive transient failures");
                } else {
                    *state = State::Closed { failures };
                }
            }
            (State::HalfOpen { .. }, true, Verdict::Up) => {
                *state = State::Closed { failures: 0 };
                tracing::info!(app = breaker.app, "legacy circuit breaker closed: the probe call succeeded");
            }
            (State::HalfOpen { .. }, true, Verdict::Down) => breaker.open(&mut state, "the probe call failed"),
            (State::HalfOpen { .. }, true, Verdict::Unknown) => *state = State::HalfOpen { probing: false },
            _ => {}
        }
    }
}

impl Drop for Ticket<'_> {
    /// A probe abandoned before its outcome was known lets the next call probe.
    fn drop(&mut self) {
        if self.probe && !self.recorded {
            if let State::HalfOpen { probing } = &mut *self.breaker.lock() {
                *probing = false;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn breaker(failures: u32, open_for_ms: u64) -> Breaker {
        Breaker::new("a", &BreakerConfig { failures, open_for: Duration::from_millis(open_for_ms) })
    }

    #[test]
    fn opens_after_consecutive_failures_only() {
        let b = breaker(3, 60_000);
        for verdict in [Verdict::Down, Verdict::Down, Verdict::Up, Verdict::Down, Verdict::Down, Verdict::Unknown] {
            b.admit().unwrap().record(verdict);
        }
        assert_eq!(b.shown(), Shown::Closed, "an answer in between starts the count again");
        b.admit().unwrap().record(Verdict::Down);
        assert!(matches!(b.shown(), Shown::Open(_)));
        let left = b.admit().unwrap_err();
        assert!(left > Duration::from_secs(59) && left <= Duration::from_secs(60), "{left:?}");
    }

    #[test]
    fn half_open_lets_one_probe_through_which_decides() {
        let b = breaker(1, 0);
        b.admit().unwrap().record(Verdict::Down);
        assert_eq!(b.shown(), Shown::HalfOpen, "open_for is over");
        let probe = b.admit().unwrap();
        assert_eq!(b.admit().unwrap_err(), Duration::from_secs(1), "one probe at a time");
        probe.record(Verdict::Down);
        let probe = b.admit().unwrap();
        drop(probe);
        let probe = b.admit().expect("an abandoned probe lets the next call probe");
        probe.record(Verdict::Up);
        assert_eq!(b.shown(), Shown::Closed);
        assert!(b.admit().is_ok() && b.admit().is_ok());
    }

    #[test]
    fn late_calls_change_nothing_and_zero_failures_never_opens() {
        let b = breaker(1, 60_000);
        let early = b.admit().unwrap();
        b.admit().unwrap().record(Verdict::Down);
        early.record(Verdict::Up);
        assert!(matches!(b.shown(), Shown::Open(_)), "a success of a call admitted before it opened");
        let off = breaker(0, 60_000);
        for _ in 0..10 {
            off.admit().unwrap().record(Verdict::Down);
        }
        assert_eq!(off.shown(), Shown::Closed);
    }
}
