//! What a script call has done so far that reached outside the script, in order: its legacy
//! calls with their answers, what it read from and wrote to the ID cache, the clock readings
//! and the lines it logged.
//!
//! A script call that runs on a runtime worker (see `crate::script::runner`) does not wait for
//! a legacy answer inside the script: the run stops at the first call not made yet, the call is
//! made without holding the thread, and the script is run again from its start. The run again
//! takes each earlier effect from the tape instead of doing it a second time, so a legacy write
//! is sent once, a line is logged once and the script sees the same answers and clock readings
//! as before. A run that asks for something else than the tape holds at that point (a script
//! whose calls depend on more than its arguments and what the tape gave it) is stopped as a
//! fault of the script: the calls made may not be made again.

use rhai::{Dynamic, Map};

use crate::legacy::{LegacyError, LegacyRequest};

/// The outcome of one legacy call as the script saw it.
#[derive(Debug, Clone)]
pub(in crate::script) enum Answer {
    /// The legacy app's answer (or, in a dry run, the made-up answer to a write held back).
    Response(Map),
    /// No answer the script can read: the value thrown into the script, and the fault itself.
    Fault(Map, LegacyError),
    /// The request's deadline had passed when the call was due: it was not sent.
    Late,
}

#[derive(Debug)]
enum Event {
    Call {
        request: Box<LegacyRequest>,
        answer: Answer,
    },
    /// A value read outside the script, or `()` for a change made or a line written: `what`
    /// names the function, `key` its arguments.
    Value {
        what: &'static str,
        key: String,
        value: Dynamic,
    },
}

/// The effects of one script call, and how far the current run has got through them.
#[derive(Debug, Default)]
pub(in crate::script) struct Tape {
    events: Vec<Event>,
    next: usize,
}

/// The current run asked for something other than what the tape holds at this point.
#[derive(Debug)]
pub(in crate::script) struct Diverged {
    pub expected: String,
    pub found: String,
}

impl Tape {
    /// Rewinds for a run from the start.
    pub(in crate::script) fn rewind(&mut self) {
        self.next = 0;
    }

    /// The number of legacy calls on the tape.
    pub(in crate::script) fn calls(&self) -> usize {
        self.events.iter().filter(|e| matches!(e, Event::Call { .. })).count()
    }

    /// Whether the current run has got past everything on the tape.
    fn at_end(&self) -> bool {
        self.next >= self.events.len()
    }

    /// The answer of the call the run is at, if the tape holds it; `Err` when the tape holds
    /// something else there.
    pub(in crate::script) fn replay_call(&mut self, request: &LegacyRequest) -> Result<Option<Answer>, Diverged> {
        if self.at_end() {
            return Ok(None);
        }
        match &self.events[self.next] {
            Event::Call { request: recorded, answer } if same_call(recorded, request) => {
                self.next += 1;
                Ok(Some(answer.clone()))
            }
            other => Err(Diverged { expected: describe(other), found: call_name(request) }),
        }
    }

    /// Puts a call the current run made at the end of the tape.
    pub(in crate::script) fn record_call(&mut self, request: LegacyRequest, answer: Answer) {
        self.events.push(Event::Call { request: Box::new(request), answer });
        self.next = self.events.len();
    }

    /// The value `what(key)` gave the first time, or the one `live` gives now, kept when
    /// `record` (a run that may be run again).
    pub(in crate::script) fn value(
        &mut self,
        what: &'static str,
        key: &str,
        record: bool,
        live: impl FnOnce() -> Dynamic,
    ) -> Result<Dynamic, Diverged> {
        if !self.at_end() {
            return match &self.events[self.next] {
                Event::Value { what: w, key: k, value } if *w == what && k == key => {
                    self.next += 1;
                    Ok(value.clone())
                }
                other => Err(Diverged { expected: describe(other), found: format!("{what}({key})") }),
            };
        }
        let value = live();
        if record {
            self.events.push(Event::Value { what, key: key.to_owned(), value: value.clone() });
            self.next = self.events.len();
        }
        Ok(value)
    }

    /// Does `live` unless the tape says it was done at this point already; notes it was done
    /// when `record`.
    pub(in crate::script) fn once(
        &mut self,
        what: &'static str,
        key: &str,
        record: bool,
        live: impl FnOnce(),
    ) -> Result<(), Diverged> {
        self.value(what, key, record, || {
            live();
            Dynamic::UNIT
        })
        .map(drop)
    }
}

/// Two requests are the same call when everything sent would be the same.
fn same_call(a: &LegacyRequest, b: &LegacyRequest) -> bool {
    a.method == b.method
        && a.path == b.path
        && a.query == b.query
        && a.headers == b.headers
        && a.body == b.body
        && a.idempotent == b.idempotent
}

fn call_name(request: &LegacyRequest) -> String {
    format!("legacy {} {}", request.method, request.path)
}

fn describe(event: &Event) -> String {
    match event {
        Event::Call { request, .. } => call_name(request),
        Event::Value { what, key, .. } => format!("{what}({key})"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::legacy::LegacyPath;

    fn get(path: &str) -> LegacyRequest {
        LegacyRequest {
            method: http::Method::GET,
            path: LegacyPath::Text(path.into()),
            query: Vec::new(),
            headers: Vec::new(),
            body: None,
            idempotent: false,
        }
    }

    #[test]
    fn a_run_again_gets_each_effect_from_the_tape_and_only_new_ones_are_done() {
        let mut tape = Tape::default();
        let mut done = 0;
        assert!(tape.replay_call(&get("/users/1")).unwrap().is_none());
        tape.record_call(get("/users/1"), Answer::Late);
        tape.once("log", "hello", true, || done += 1).unwrap();
        assert_eq!(tape.value("now", "", true, || Dynamic::from(1_i64)).unwrap().as_int().unwrap(), 1);

        tape.rewind();
        assert!(matches!(tape.replay_call(&get("/users/1")).unwrap(), Some(Answer::Late)));
        tape.once("log", "hello", true, || done += 1).unwrap();
        assert_eq!(tape.value("now", "", true, || Dynamic::from(2_i64)).unwrap().as_int().unwrap(), 1);
        assert!(tape.replay_call(&get("/users/2")).unwrap().is_none());
        assert_eq!((done, tape.calls()), (1, 1));
    }

    #[test]
    fn a_run_that_asks_for_something_else_is_told_what_was_expected() {
        let mut tape = Tape::default();
        tape.record_call(get("/users/1"), Answer::Late);
        tape.rewind();
        let diverged = tape.replay_call(&get("/users/2")).unwrap_err();
        assert_eq!(
            (diverged.expected.as_str(), diverged.found.as_str()),
            ("legacy GET /users/1", "legacy GET /users/2")
        );
        tape.rewind();
        let diverged = tape.once("id_cache.set", "users/a", true, || {}).unwrap_err();
        assert_eq!(diverged.expected, "legacy GET /users/1");
    }
}
