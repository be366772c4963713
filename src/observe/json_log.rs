//! JSON log lines written in one pass: each event's fields straight to the line, and the
//! fields of the span it happened in (the request's) kept as a finished piece of JSON that
//! each line copies.
//!
//! tracing-subscriber's own JSON format keeps a span's fields as a JSON text too, but parses
//! it again for every line written in the span and for every field recorded later, and builds
//! a map of each event's fields before writing them: a fair share of the proxy's CPU per
//! request. The lines keep its shape: `timestamp`, `level`, the event's fields (`message`
//! among them), `target`, and `span` with the span's fields and its `name`.

use std::fmt::{self, Write as _};

use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::field::RecordFields;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, FormattedFields};
use tracing_subscriber::registry::LookupSpan;

/// A span's fields as the members of a JSON object, without its braces:
/// `"request_id":"…","app":"acme"`. A field recorded later is appended.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct SpanFields;

impl<'w> FormatFields<'w> for SpanFields {
    fn format_fields<R: RecordFields>(&self, mut writer: Writer<'w>, fields: R) -> fmt::Result {
        let mut members = Members { out: String::with_capacity(128), first: true };
        fields.record(&mut members);
        writer.write_str(&members.out)
    }

    fn add_fields(&self, current: &'w mut FormattedFields<Self>, fields: &tracing::span::Record<'_>) -> fmt::Result {
        let first = current.fields.is_empty();
        let mut members = Members { out: std::mem::take(&mut current.fields), first };
        fields.record(&mut members);
        current.fields = members.out;
        Ok(())
    }
}

/// One JSON object a line.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct JsonLine;

impl<S> FormatEvent<S, SpanFields> for JsonLine
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, SpanFields>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        // The line is made in a string of its own, written to directly, and handed over
        // whole: each piece written through the subscriber's writer is a call through a
        // trait object, and a line has a hundred pieces.
        let meta = event.metadata();
        let mut members = Members { out: String::with_capacity(512), first: false };
        let out = &mut members.out;
        out.push_str("{\"timestamp\":\"");
        timestamp(out, time::OffsetDateTime::now_utc());
        out.push_str("\",\"level\":\"");
        out.push_str(meta.level().as_str());
        out.push('"');
        event.record(&mut members);
        let out = &mut members.out;
        out.push_str(",\"target\":");
        string(out, meta.target());
        let span = event.parent().and_then(|id| ctx.span(id)).or_else(|| ctx.lookup_current());
        if let Some(span) = span {
            out.push_str(",\"span\":{");
            let extensions = span.extensions();
            if let Some(fields) = extensions.get::<FormattedFields<SpanFields>>() {
                if !fields.fields.is_empty() {
                    out.push_str(&fields.fields);
                    out.push(',');
                }
            }
            out.push_str("\"name\":");
            string(out, span.name());
            out.push('}');
        }
        out.push_str("}\n");
        writer.write_str(out)
    }
}

/// Writes fields as `"name":value` members, a comma before each but the first.
struct Members {
    out: String,
    first: bool,
}

impl Members {
    /// Starts a member: its name, and the colon its value follows.
    fn name(&mut self, field: &Field) -> &mut String {
        if !std::mem::take(&mut self.first) {
            self.out.push(',');
        }
        string(&mut self.out, field.name());
        self.out.push(':');
        &mut self.out
    }
}

impl Visit for Members {
    fn record_str(&mut self, field: &Field, value: &str) {
        string(self.name(field), value);
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.name(field).push_str(if value { "true" } else { "false" });
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        let out = self.name(field);
        if value < 0 {
            out.push('-');
        }
        digits(out, value.unsigned_abs());
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        digits(self.name(field), value);
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        let out = self.name(field);
        // JSON has no NaN or infinity: those are written as null, as serde_json does.
        if value.is_finite() {
            let _ = write!(out, "{value}");
        } else {
            out.push_str("null");
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        let out = self.name(field);
        out.push('"');
        let _ = write!(Escaped(&mut *out), "{value:?}");
        out.push('"');
    }
}

/// A whole number in decimal.
fn digits(out: &mut String, value: u64) {
    padded(out, value, 1);
}

/// A whole number in decimal, zeros in front up to `width` digits.
fn padded(out: &mut String, mut value: u64, width: usize) {
    let mut buffer = [b'0'; 20];
    let mut at = buffer.len();
    loop {
        at -= 1;
        buffer[at] = b'0' + (value % 10) as u8;
        value /= 10;
        if value == 0 {
            break;
        }
    }
    let at = at.min(buffer.len().saturating_sub(width));
    // Only ASCII digits are in the buffer.
    out.push_str(std::str::from_utf8(&buffer[at..]).unwrap_or_default());
}

/// A JSON string.
fn string(out: &mut String, text: &str) {
    out.push('"');
    let _ = Escaped(&mut *out).write_str(text);
    out.push('"');
}

/// Text written into a JSON string, escaped on the way.
struct Escaped<'a>(&'a mut String);

impl fmt::Write for Escaped<'_> {
    fn write_str(&mut self, text: &str) -> fmt::Result {
        // What is escaped is ASCII, so every cut falls between two chars.
        let mut clean = 0;
        while let Some(found) = crate::scim::first_escaped(&text.as_bytes()[clean..]) {
            let at = clean + found;
            self.0.push_str(&text[clean..at]);
            match text.as_bytes()[at] {
                b'"' => self.0.push_str("\\\""),
                b'\\' => self.0.push_str("\\\\"),
                b'\n' => self.0.push_str("\\n"),
                b'\r' => self.0.push_str("\\r"),
                b'\t' => self.0.push_str("\\t"),
                byte => {
                    let _ = write!(self.0, "\\u{byte:04x}");
                }
            }
            clean = at + 1;
        }
        self.0.push_str(&text[clean..]);
        Ok(())
    }
}

/// RFC 3339 in UTC with microseconds, as tracing's JSON lines have it.
fn timestamp(out: &mut String, t: time::OffsetDateTime) {
    // A year before 1 or past 9999 does not come from the system clock.
    padded(out, u64::try_from(t.year()).unwrap_or(0), 4);
    for (separator, value, width) in [
        ('-', u64::from(u8::from(t.month())), 2),
        ('-', u64::from(t.day()), 2),
        ('T', u64::from(t.hour()), 2),
        (':', u64::from(t.minute()), 2),
        (':', u64::from(t.second()), 2),
        ('.', u64::from(t.microsecond()), 6),
    ] {
        out.push(separator);
        padded(out, value, width);
    }
    out.push('Z');
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    #[derive(Clone, Default)]
    struct Lines(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Lines {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().map_err(|_| std::io::Error::other("poisoned"))?.extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// A subscriber writing these lines to `lines`.
    fn writing_to(lines: &Lines) -> impl tracing::Subscriber + Send + Sync {
        let writer = lines.clone();
        tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .fmt_fields(SpanFields)
            .event_format(JsonLine)
            .finish()
    }

    #[test]
    fn lines_are_json_with_the_event_and_span_fields_escaped_and_added_later_fields_kept() {
        let lines = Lines::default();
        tracing::subscriber::with_default(writing_to(&lines), || {
            let span = tracing::info_span!("request", request_id = "r-1", app = tracing::field::Empty);
            let _entered = span.enter();
            span.record("app", "a\"pp");
            let error = "bad\nline\u{1}";
            tracing::warn!(status = 502_u64, ratio = 0.5, missing = f64::NAN, ok = false, %error, "request failed");
        });
        tracing::subscriber::with_default(writing_to(&lines), || tracing::info!(n = -3_i64, "outside any span"));
        let text = String::from_utf8(lines.0.lock().unwrap().clone()).unwrap();
        let parsed: Vec<serde_json::Value> = text.lines().map(|line| serde_json::from_str(line).unwrap()).collect();
        assert_eq!(parsed.len(), 2, "{text}");
        let line = &parsed[0];
        assert_eq!((&line["level"], &line["message"]), (&"WARN".into(), &"request failed".into()), "{text}");
        assert_eq!((&line["status"], &line["ratio"], &line["ok"]), (&502.into(), &0.5.into(), &false.into()));
        assert_eq!((&line["missing"], &line["error"]), (&serde_json::Value::Null, &"bad\nline\u{1}".into()));
        assert_eq!(line["target"], "scim_proxy::observe::json_log::tests");
        assert_eq!(line["span"], serde_json::json!({"request_id": "r-1", "app": "a\"pp", "name": "request"}));
        let stamp = line["timestamp"].as_str().unwrap();
        assert!(time::OffsetDateTime::parse(stamp, &time::format_description::well_known::Rfc3339).is_ok(), "{stamp}");
        assert_eq!((&parsed[1]["n"], parsed[1].get("span")), (&(-3).into(), None));
    }

    #[test]
    fn numbers_and_timestamps_are_written_as_the_formatter_writes_them() {
        for value in [0, 7, 10, 99, 1_000_000, u64::MAX] {
            let mut out = String::new();
            digits(&mut out, value);
            assert_eq!(out, value.to_string());
        }
        let lines = Lines::default();
        tracing::subscriber::with_default(writing_to(&lines), || {
            tracing::info!(min = i64::MIN, neg = -1_i64, zero = 0_u64, max = u64::MAX, "numbers");
        });
        let text = String::from_utf8(lines.0.lock().unwrap().clone()).unwrap();
        assert!(text.contains(&format!(r#""min":{},"neg":-1,"zero":0,"max":{}"#, i64::MIN, u64::MAX)), "{text}");
        let mut out = String::new();
        let t = time::macros::datetime!(2026-01-02 03:04:05.000_006 UTC);
        timestamp(&mut out, t);
        assert_eq!(out, "2026-01-02T03:04:05.000006Z");
        out.clear();
        timestamp(&mut out, time::macros::datetime!(0999-12-31 23:59:59.999_999 UTC));
        assert_eq!(out, "0999-12-31T23:59:59.999999Z");
    }
}
