//! Fuzz target: a request body through the pure steps of POST/PUT /Users and POST /Users/.search.

#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use scim_proxy::pipeline::request::parse_json;
use scim_proxy::scim::evaluate::Matcher;
use scim_proxy::scim::filter::parse_filter;
use scim_proxy::scim::params::{list_params, search_request_pairs};
use scim_proxy::scim::path::AttrPath;
use scim_proxy::scim::projection::Projection;
use scim_proxy::scim::schema::ResourceSchema;
use scim_proxy::scim::sort::sort_resources;
use scim_proxy::scim::unpublished::{Unpublished, UnsupportedAttributes};
use scim_proxy::scim::validate::{WriteMode, validate_resource};
use serde_json::Value;

static USERS: LazyLock<ResourceSchema> = LazyLock::new(scim_proxy_fuzz::user_type);
static USER: LazyLock<Value> = LazyLock::new(scim_proxy_fuzz::sample_user);

fuzz_target!(|data: &[u8]| {
    let Ok(body) = parse_json(data, 100_000) else { return };
    // Every body is tried both ways: the route, not the body, decides which it is.
    as_user(&body);
    as_search(&body);
});

/// POST /Users: the validated user (unpublished attributes ignored, as by default) is an
/// object that names only published attributes, so it validates again to itself even when
/// they are refused.
fn as_user(body: &Value) {
    let mut ignore = Unpublished::new(UnsupportedAttributes::Ignore);
    let Ok(user) = validate_resource(&USERS, body, WriteMode::Create, &mut ignore) else { return };
    assert!(user.is_object(), "validate_resource returned a non-object: {user}");
    match validate_resource(&USERS, &user, WriteMode::Replace, &mut Unpublished::new(UnsupportedAttributes::Refuse)) {
        Ok(again) => assert_eq!(again, user, "validating a validated user changes it"),
        Err(e) => panic!("a validated user does not validate again: {e}; user {user}"),
    }
}

/// POST /Users/.search: the parameters, then what `list_users` does with them before any
/// legacy call (projection, filter, sortBy), applied to the sample user.
fn as_search(body: &Value) {
    let Ok(pairs) = search_request_pairs(body) else { return };
    let Ok(params) = list_params(&pairs) else { return };
    if let Ok(projection) =
        Projection::parse(&USERS, params.attributes.as_deref(), params.excluded_attributes.as_deref())
    {
        let _ = projection.apply(&USERS, &USER);
    }
    if let Some(Ok(filter)) = params.filter.as_deref().map(parse_filter) {
        if let Ok(matcher) = Matcher::new(&filter, &USERS) {
            let _ = matcher.matches(&USER);
        }
    }
    if let Some(Ok(sort_by)) = params.sort_by.as_deref().map(AttrPath::parse) {
        let mut page = vec![USER.clone(), Value::Null, body.clone(), USER.clone()];
        let _ = sort_resources(&mut page, &sort_by, params.descending, &USERS);
    }
}
