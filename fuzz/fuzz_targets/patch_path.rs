//! Fuzz target: PATCH `path` parsing, and its printer (print → parse gives the same path).

#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use scim_proxy::scim::filter::MAX_FILTER_CHARS;
use scim_proxy::scim::patch::parse_patch_path;
use scim_proxy::scim::schema::ResourceSchema;

static TYPES: LazyLock<[ResourceSchema; 2]> =
    LazyLock::new(|| [scim_proxy_fuzz::user_type(), scim_proxy_fuzz::group_type()]);

fuzz_target!(|data: &[u8]| {
    // A path arrives as a JSON string, so it is always UTF-8.
    let Ok(text) = std::str::from_utf8(data) else { return };
    for rs in TYPES.iter() {
        let Ok(path) = parse_patch_path(text, rs) else { continue };
        let printed = path.to_string();
        // The printed filter escapes control characters, so it can outgrow the length limits
        // the input met; refusing that is the limit working, not a printer fault.
        let printable = printed.len() <= text.len() || printed.len() <= MAX_FILTER_CHARS;
        match parse_patch_path(&printed, rs) {
            Err(_) if !printable => {}
            Ok(again) => {
                assert_eq!(again, path, "{}: printed {printed:?} parses to another path (input {text:?})", rs.name)
            }
            Err(e) => panic!("{}: printed {printed:?} does not parse: {e} (input {text:?})", rs.name),
        }
    }
});
