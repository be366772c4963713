//! Fuzz target: the filter parser, its printer (print → parse gives the same tree) and evaluation.

#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use scim_proxy::scim::evaluate::matches;
use scim_proxy::scim::filter::{Filter, MAX_FILTER_CHARS, parse_filter};
use scim_proxy::scim::schema::ResourceSchema;
use serde_json::Value;

static USERS: LazyLock<ResourceSchema> = LazyLock::new(scim_proxy_fuzz::user_type);
static USER: LazyLock<Value> = LazyLock::new(scim_proxy_fuzz::sample_user);

fuzz_target!(|data: &[u8]| {
    // Filters arrive as UTF-8 text (query string or JSON body); other bytes never reach the parser.
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Ok(filter) = parse_filter(text) else { return };

    let printed = filter.to_string();
    // Printing escapes control characters (`\u0000`), so a filter near the length limit can
    // print longer than the limit; refusing that is the limit working, not a printer fault.
    let printable = printed.chars().count() <= MAX_FILTER_CHARS;
    match parse_filter(&printed) {
        Err(_) if !printable => {}
        Ok(again) => assert_eq!(again, filter, "printed {printed:?} parses to another tree (input {text:?})"),
        Err(e) => panic!("printed {printed:?} does not parse: {e} (input {text:?})"),
    }
    let _ = filter.to_json();

    // An unknown attribute or unsupported operator is an error; anything else is a yes or no,
    // and `not` is its exact opposite (evaluation is two-valued).
    if let Ok(yes) = matches(&filter, &USER, &USERS) {
        let negated = Filter::Not(Box::new(filter.clone()));
        match matches(&negated, &USER, &USERS) {
            Ok(no) => assert_eq!(no, !yes, "not ({printed}) does not negate the match"),
            Err(e) => panic!("not ({printed}) is rejected though {printed} is accepted: {e}"),
        }
    }
});
