//! The recent requests as one self-contained HTML page for a person's browser: no script, no
//! outside asset, every value escaped.

use std::fmt::Write as _;
use std::sync::Arc;

use crate::state::recent::Entry;

/// The page's only style, allowed by the nonce of its response's Content-Security-Policy.
const STYLE: &str = "\
body{font:14px/1.45 system-ui,-apple-system,'Segoe UI',sans-serif;margin:1rem;color:#1f2328;background:#fff}\
h1{font-size:1.3rem;margin:0 0 .3rem}\
p.note{color:#59636e;margin:0 0 1rem}\
table{border-collapse:collapse;width:100%}\
th,td{text-align:left;vertical-align:top;padding:.45rem .55rem;border-bottom:1px solid #d1d9e0}\
th{background:#f6f8fa;font-weight:600;white-space:nowrap}\
td.time,td.app{white-space:nowrap;color:#59636e}\
td.request{min-width:14rem;overflow-wrap:anywhere}\
td.why{min-width:12rem;overflow-wrap:anywhere}\
td.calls{min-width:13rem;overflow-wrap:anywhere}\
td.body{min-width:14rem;max-width:20rem}\
code,pre{font:12px/1.4 ui-monospace,SFMono-Regular,Menlo,Consolas,monospace}\
pre{white-space:pre-wrap;overflow-wrap:anywhere;margin:.3rem 0 0;background:#f6f8fa;padding:.4rem}\
ul{margin:0;padding-left:1rem}\
.ok{color:#1a7f37;font-weight:600}.client{color:#9a6700;font-weight:600}.fault{color:#cf222e;font-weight:600}\
.muted{color:#59636e;font-size:12px}.label{color:#59636e}\
summary{cursor:pointer;color:#0969da}";

/// The page: every entry, newest first, as a table.
///
/// `nonce` must be the one the response's `Content-Security-Policy` names for its style.
pub(crate) fn render(entries: &[Arc<Entry>], capacity: usize, nonce: &str) -> String {
    let mut page = String::with_capacity(4096 + entries.len() * 1024);
    let _ = write!(
        page,
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
         <title>scim-proxy: recent requests</title><style nonce=\"{}\">{STYLE}</style></head><body>\n\
         <h1>Recent requests</h1>\n<p class=\"note\">The last {capacity} requests of each app, newest first, \
         {} shown; request bodies redacted. Reload the page to see new ones.</p>\n",
        escape(nonce),
        entries.len(),
    );
    if entries.is_empty() {
        page.push_str("<p>No requests yet.</p>\n</body></html>\n");
        return page;
    }
    page.push_str(
        "<table><thead><tr><th>time (UTC)</th><th>app</th><th>request</th><th>status</th>\
         <th>SCIM error, ignored attributes</th><th>legacy calls</th><th>request body</th></tr></thead><tbody>\n",
    );
    for entry in entries {
        row(&mut page, entry);
    }
    page.push_str("</tbody></table>\n</body></html>\n");
    page
}

fn row(page: &mut String, entry: &Entry) {
    let (date, time) = entry.time.trim_end_matches('Z').split_once('T').unwrap_or((&entry.time, ""));
    let _ = write!(
        page,
        "<tr><td class=\"time\">{}<br>{}</td><td class=\"app\">{}</td>\
         <td class=\"request\"><code>{} {}</code><br><span class=\"muted\">{}{} ms · id {}</span></td>\
         <td class=\"{}\">{}</td><td class=\"why\">",
        escape(time),
        escape(date),
        escape(&entry.app),
        escape(&entry.method),
        escape(&readable(&entry.target)),
        // Before routing (a refused token) there is no operation to name.
        if entry.operation == "-" { String::new() } else { format!("{} · ", escape(&entry.operation)) },
        entry.latency_ms.round(),
        escape(&entry.request_id),
        status_class(entry.status),
        entry.status,
    );
    if let Some(error) = &entry.error {
        if let Some(scim_type) = error.scim_type {
            let _ = write!(page, "<code>{}</code> ", escape(scim_type));
        }
        page.push_str(&escape(&error.detail));
        if let Some(cause) = &error.cause {
            let _ = write!(page, "<br><span class=\"muted\">cause: {}</span>", escape(cause));
        }
    }
    if !entry.ignored.is_empty() {
        page.push_str("<div class=\"label\">ignored attributes:</div><ul>");
        for path in &entry.ignored {
            let _ = write!(page, "<li><code>{}</code></li>", escape(path));
        }
        page.push_str("</ul>");
    }
    page.push_str("</td><td class=\"calls\">");
    if !entry.legacy_calls.is_empty() {
        page.push_str("<ul>");
        for call in &entry.legacy_calls {
            let answer = match (call.status, call.fault) {
                (Some(status), _) => format!("<span class=\"{}\">{status}</span>", status_class(status)),
                (None, Some(fault)) => format!("<span class=\"fault\">{}</span>", escape(fault)),
                (None, None) => "-".to_owned(),
            };
            let _ = write!(
                page,
                "<li><code>{} {}</code> → {answer} <span class=\"muted\">{:.1} ms</span></li>",
                escape(call.method.as_str()),
                escape(&readable(&call.path)),
                call.micros as f64 / 1000.0,
            );
        }
        page.push_str("</ul>");
    }
    let unlisted = (entry.legacy_calls_total as usize).saturating_sub(entry.legacy_calls.len());
    if unlisted > 0 {
        let _ = write!(page, "<span class=\"muted\">and {unlisted} more</span>");
    }
    page.push_str("</td><td class=\"body\">");
    if let Some(body) = &entry.body {
        // A whole body is shown indented; a cut one as it was kept.
        let shown = serde_json::from_str::<serde_json::Value>(body)
            .ok()
            .and_then(|value| serde_json::to_string_pretty(&value).ok())
            .unwrap_or_else(|| body.clone());
        let cut = if entry.body_truncated { ", cut" } else { "" };
        // What a refused request sent is what a person came to see: shown open.
        let open = if entry.status >= 400 { " open" } else { "" };
        let _ = write!(
            page,
            "<details{open}><summary>{} bytes{cut}</summary><pre>{}</pre></details>",
            body.len(),
            escape(&shown)
        );
    }
    page.push_str("</td></tr>\n");
}

/// A path and query as a person reads it: percent-escapes decoded (for display only; the
/// JSON keeps them as sent).
fn readable(target: &str) -> String {
    percent_encoding::percent_decode_str(target).decode_utf8_lossy().into_owned()
}

fn status_class(status: u16) -> &'static str {
    match status {
        0..=399 => "ok",
        400..=499 => "client",
        _ => "fault",
    }
}

/// Text made safe inside an HTML element or a quoted attribute.
pub(crate) fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::recording::Redactor;
    use crate::state::recent::tests::entry;
    use crate::state::recent::{Entry, Failure, body_text};
    use serde_json::json;

    #[test]
    fn every_value_from_a_client_is_escaped() {
        let hostile = "<script>alert('x')</script>\"&";
        let redactor = Redactor::default();
        let (body, _) = body_text(&redactor, &serde_json::json!({"userName": hostile}));
        let entry = Entry {
            request_id: "<b>id</b>".into(),
            target: "/scim/v2/Users/<img src=x>?filter=\"<i>\"&q=%3Cscript%3E".into(),
            error: Some(Failure { scim_type: Some("invalidValue"), detail: hostile.into(), cause: None }),
            ignored: vec![hostile.into()],
            body: Some(body),
            ..entry("acme")
        }
        .bounded(&redactor);
        let page = render(&[Arc::new(entry)], 200, "n\"once");
        for raw in ["<script", "<img", "<b>", "<i>", "n\"once"] {
            assert!(!page.contains(raw), "{raw} unescaped in {page}");
        }
        assert!(page.contains("&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;&quot;&amp;"), "{page}");
        assert_eq!(escape("a<b>&\"'"), "a&lt;b&gt;&amp;&quot;&#39;");
    }

    #[test]
    fn an_empty_page_says_so() {
        let page = render(&[], 200, "n");
        assert!(page.contains("No requests yet.") && !page.contains("<table>"), "{page}");
    }

    #[test]
    fn the_ignored_attributes_of_a_request_are_shown() {
        // The lead's `schema.unsupported_attributes: ignore` fills `CallStats::ignored`; this is
        // what an entry makes of it.
        let stats = crate::script::CallStats::noting_calls();
        stats.ignored.lock().unwrap().extend(["locale".to_owned(), "name.formatted".to_owned()]);
        let ignored = stats.ignored.lock().unwrap().clone();
        let entry = Entry { ignored, ..entry("acme") }.bounded(&Redactor::new(&["ssn".into()], std::iter::empty()));
        assert_eq!(entry.to_json()["ignored_attributes"], json!(["locale", "name.formatted"]));
        let html = render(&[Arc::new(entry)], 200, "nonce");
        assert!(html.contains("<li><code>locale</code></li>") && html.contains("name.formatted"), "{html}");
    }
}
