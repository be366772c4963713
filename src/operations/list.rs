//! Listing and searching: `GET /Users?filter=…`, `POST /.search`, and finding a resource by
//! name; pushed down to the script where it can, evaluated in the proxy where it must, bounded.

use rhai::Dynamic;
use serde_json::{Value, json};

use super::finish::{Keeper, finish_value_unsealed, identify, seal};
use super::read::{Wanted, fetch};
use super::{Call, Reply, bad_return, functions, meta_text};
use crate::error::{Error, RequestError};
use crate::operations::operation::ListSource;
use crate::scim::evaluate::Matcher;
use crate::scim::filter::{Filter, parse_filter};
use crate::scim::params::{self, ListParams};
use crate::scim::path::AttrPath;
use crate::scim::projection::Projection;
use crate::scim::schema::{ResourceKind, ResourceSchema, Returned};
use crate::scim::{ScimError, discovery, sort};
use crate::script::{ScriptEngine, Sieve};

pub(super) fn list_params(call: &Call<'_>, source: ListSource) -> Result<ListParams, ScimError> {
    match source {
        ListSource::Query => params::list_params(&call.query),
        ListSource::SearchBody => {
            let body =
                call.body.as_ref().ok_or_else(|| ScimError::invalid_syntax("a SearchRequest body is required"))?;
            params::list_params(&params::search_request_pairs(body)?)
        }
    }
}

/// The id of the resource whose name attribute is `name`, asked of the script's listing
/// (one native search where the script passes `eq` filters down); `None` when there is none.
pub(super) async fn find_by_name(
    call: &Call<'_>,
    kind: ResourceKind,
    rs: &ResourceSchema,
    name: &str,
) -> Result<Option<String>, Error> {
    let quoted = serde_json::to_string(name).unwrap_or_default();
    let params = ListParams {
        filter: Some(format!("{} eq {quoted}", kind.name_attribute())),
        start_index: 1,
        count: Some(1),
        ..ListParams::default()
    };
    let query = Query::parse(rs, &params)?;
    let wanted = Wanted::writable(rs);
    let (found, _) = select(call, kind, rs, &query, &params, &wanted, (1, 1)).await?;
    Ok(found.first().and_then(|r| r.get("id")).and_then(Value::as_str).map(str::to_owned))
}

/// True when a resource read back still carries the name a create is about to use.
pub(super) fn same_name(kind: ResourceKind, resource: &Value, name: &str) -> bool {
    resource.get(kind.name_attribute()).and_then(Value::as_str).is_some_and(|n| n.to_lowercase() == name)
}

/// A list request, parsed and checked against the schema before any legacy call.
pub(super) struct Query<'a> {
    filter: Option<Filter>,
    matcher: Option<Matcher<'a>>,
    sort_by: Option<AttrPath>,
    descending: bool,
}

impl<'a> Query<'a> {
    fn parse(rs: &'a ResourceSchema, params: &ListParams) -> Result<Self, ScimError> {
        let filter = params.filter.as_deref().map(parse_filter).transpose()?;
        let matcher = filter.as_ref().map(|f| Matcher::new(f, rs)).transpose()?;
        let sort_by = params.sort_by.as_deref().map(AttrPath::parse).transpose()?;
        if let Some(path) = &sort_by {
            if rs.resolve(path).is_none() {
                return Err(ScimError::invalid_path(
                    path.to_string(),
                    "sortBy names no attribute of this resource type",
                ));
            }
        }
        Ok(Self { filter, matcher, sort_by, descending: params.descending })
    }
}

pub(super) async fn list(call: &Call<'_>, kind: ResourceKind, params: ListParams) -> Result<Reply, Error> {
    let rs = call.app.resource(kind)?;
    let projection = Projection::parse(rs, params.attributes.as_deref(), params.excluded_attributes.as_deref())?;
    let query = Query::parse(rs, &params)?;
    let count = params.count.unwrap_or(call.app.config.list.default_count).min(call.app.config.list.max_results);
    let wanted = Wanted::by(rs, &projection, query.filter.as_ref());
    let (page, total) = select(call, kind, rs, &query, &params, &wanted, (params.start_index, count)).await?;
    let resources = page.into_iter().map(|r| projection.apply_owned(rs, r)).collect();
    Ok(Reply::ok(discovery::list_response(resources, total, params.start_index)))
}

/// The page `[start_index, start_index + count)` of the resources matching `query`, and the total.
pub(super) async fn select(
    call: &Call<'_>,
    kind: ResourceKind,
    rs: &ResourceSchema,
    query: &Query<'_>,
    params: &ListParams,
    wanted: &Wanted,
    (start_index, count): (usize, usize),
) -> Result<(Vec<Value>, usize), Error> {
    if let Some(found) = lookup_by_cached_key(call, kind, query, wanted).await? {
        let total = found.len();
        return Ok((page_of(found, start_index, count), total));
    }
    let function = functions(kind).list;
    let argument = script_query(call, params, query.filter.as_ref(), wanted, start_index, count);
    let sieve = ListingSieve::for_listing(call, kind, rs, query, function, (start_index, count));
    let answer = call.app.script.call_sifted(function, vec![argument], &call.scope, sieve).await?;
    settle_listing(call, kind, rs, query, function, answer, (start_index, count)).await
}

/// The script's answer to a listing, read, finished, filtered, sorted and paged.
pub(super) async fn settle_listing(
    call: &Call<'_>,
    kind: ResourceKind,
    rs: &ResourceSchema,
    query: &Query<'_>,
    function: &str,
    answer: Dynamic,
    (start_index, count): (usize, usize),
) -> Result<(Vec<Value>, usize), Error> {
    // `meta.location` and `meta.version` are built for the page answered only, unless the
    // filter or the sort reads `meta`.
    let reads_meta = query.filter.as_ref().is_some_and(|f| f.names_attribute("meta"))
        || query.sort_by.as_ref().is_some_and(|p| p.name.eq_ignore_ascii_case("meta"));
    let pretest = query.matcher.as_ref().and_then(|matcher| Pretest::new(matcher, rs));
    let listed = read_listing(call, kind, function, answer, reads_meta, pretest.as_ref()).await?;
    let sealed = |mut resources: Vec<Value>| {
        for resource in &mut resources {
            seal(call, kind, resource);
        }
        resources
    };
    if listed.paged {
        let total = listed.total.unwrap_or(listed.resources.len() + listed.beyond);
        let mut resources = listed.resources;
        resources.truncate(count);
        return Ok((sealed(resources), total));
    }
    let mut matching = listed.resources;
    if let (Some(matcher), false) = (&query.matcher, listed.filtered) {
        matching.retain(|resource| matcher.matches(resource));
    }
    if let Some(path) = &query.sort_by {
        sort::sort_resources(&mut matching, path, query.descending, rs)?;
    }
    // The matches cut out of a `results(query)` list as past this page count as matches.
    let total = matching.len() + listed.beyond;
    Ok((sealed(page_of(matching, start_index, count)), total))
}

/// `POST /.search`: the same query over every resource type the app serves (RFC 7644 §3.4.3).
pub(super) async fn search_all(call: &Call<'_>) -> Result<Reply, Error> {
    let params = list_params(call, ListSource::SearchBody)?;
    let count = params.count.unwrap_or(call.app.config.list.default_count).min(call.app.config.list.max_results);
    let max_scan = call.app.config.list.max_scan;
    let several = call.app.resource_types().count() > 1;
    let mut all = Vec::new();
    let mut sort_schema = None;
    for rs in call.app.resource_types() {
        let query = match Query::parse(rs, &params) {
            Ok(query) => query,
            // A filter naming attributes another resource type lacks matches none of its resources.
            Err(ScimError::InvalidFilter { .. } | ScimError::InvalidPath { .. }) if several => continue,
            Err(e) => return Err(e.into()),
        };
        if query.sort_by.is_some() && sort_schema.is_none() {
            sort_schema = Some(rs);
        }
        let unsorted = Query { sort_by: None, ..query };
        let projection = Projection::parse(rs, params.attributes.as_deref(), params.excluded_attributes.as_deref())?;
        let wanted = Wanted::by(rs, &projection, unsorted.filter.as_ref());
        let (found, total) = select(call, rs.kind(), rs, &unsorted, &params, &wanted, (1, max_scan)).await?;
        if total > found.len() || all.len() + found.len() > max_scan {
            return Err(too_many(max_scan).into());
        }
        all.extend(found);
    }
    if let (Some(sort_by), Some(rs)) = (params.sort_by.as_deref(), sort_schema) {
        // Resources of a type without the attribute have no value for it and sort last.
        sort::sort_resources(&mut all, &AttrPath::parse(sort_by)?, params.descending, rs)?;
    }
    let total = all.len();
    let mut resources = Vec::new();
    for resource in page_of(all, params.start_index, count) {
        let kind_name = meta_text(&resource, "resourceType").unwrap_or_default();
        let Some(rs) = call.app.resource_types().find(|rs| rs.name == kind_name) else { continue };
        let projection = Projection::parse(rs, params.attributes.as_deref(), params.excluded_attributes.as_deref())?;
        resources.push(projection.apply_owned(rs, resource));
    }
    Ok(Reply::ok(discovery::list_response(resources, total, params.start_index)))
}

pub(super) fn too_many(max_scan: usize) -> ScimError {
    ScimError::TooMany {
        detail: format!(
            "answering needs more than {max_scan} resources filtered in the proxy; narrow the filter (e.g. userName eq \"…\")"
        ),
    }
}

/// Answers `userName eq "x"` from the ID cache and one read.
///
/// The cache is only a hint: the resource read back must still match the filter, else the
/// normal listing answers. Only a key the schema makes unique can answer this way: a user's
/// `userName` (uniqueness `server`, RFC 7643 §4.1.1). `externalId` and a group's
/// `displayName` may be shared by several resources, and one read can say that one of them
/// matches but not that it is the only one, so those filters go to the listing (which the
/// script can answer with one native search).
pub(super) async fn lookup_by_cached_key(
    call: &Call<'_>,
    kind: ResourceKind,
    query: &Query<'_>,
    wanted: &Wanted,
) -> Result<Option<Vec<Value>>, Error> {
    let (Some((path, value)), Some(matcher)) = (query.filter.as_ref().and_then(Filter::as_simple_eq), &query.matcher)
    else {
        return Ok(None);
    };
    let (Some(text), None, None) = (value.as_str(), &path.sub, &path.urn) else {
        return Ok(None);
    };
    if call.scope.journal.as_ref().is_some_and(|j| j.is_recording()) {
        return Ok(None);
    }
    let unique = kind == ResourceKind::User && path.name.eq_ignore_ascii_case(kind.name_attribute());
    let Some(id) = call.app.ids.id_for_name(kind, text).filter(|_| unique) else {
        return Ok(None);
    };
    match fetch(call, kind, &id, wanted).await {
        Ok(resource) if matcher.matches(&resource) => Ok(Some(vec![resource])),
        Ok(_) | Err(Error::Request(RequestError::NotFound { .. })) => Ok(None),
        Err(e) => Err(e),
    }
}

/// The `query` map `list_*` receives.
pub(super) fn script_query(
    call: &Call<'_>,
    params: &ListParams,
    filter: Option<&Filter>,
    wanted: &Wanted,
    start_index: usize,
    count: usize,
) -> Dynamic {
    let attributes: Option<Vec<Value>> =
        params.attributes.as_deref().map(|a| a.split(',').map(|s| Value::String(s.trim().to_owned())).collect());
    let excluded: Option<Vec<Value>> = params
        .excluded_attributes
        .as_deref()
        .map(|a| a.split(',').map(|s| Value::String(s.trim().to_owned())).collect());
    let query = json!({
        "filter": filter.map(Filter::to_json),
        "filter_text": filter.map(|f| f.to_string()),
        "start_index": start_index,
        "count": count,
        "sort_by": params.sort_by,
        "sort_order": if params.descending { "descending" } else { "ascending" },
        "attributes": attributes,
        "excluded_attributes": excluded,
        "max_scan": call.app.config.list.max_scan,
    });
    let mut query = ScriptEngine::to_dynamic(&query);
    if let Some(mut map) = query.write_lock::<rhai::Map>() {
        map.insert("wanted".into(), wanted.to_dynamic());
    }
    query
}

/// What a `list_*` function returned, finished.
pub(super) struct Listing {
    resources: Vec<Value>,
    total: Option<usize>,
    /// The script applied the filter, sort and paging itself.
    paged: bool,
    /// The script applied the whole filter exactly (its legacy search is exact).
    filtered: bool,
    /// How many matching resources a `results(query)` list cut out as past the page.
    beyond: usize,
}

/// Reads a listing: an array of resources (or a `results()` list), or `#{ resources,
/// total_results, paged }`; its resources are finished, and sealed only when `seal_now` (else
/// [`seal`] them once paged). With a `pretest`, a resource it turns away is not converted nor
/// finished, only checked and kept in the ID cache as every listed resource is.
pub(super) async fn read_listing(
    call: &Call<'_>,
    kind: ResourceKind,
    function: &str,
    answer: Dynamic,
    seal_now: bool,
    pretest: Option<&Pretest<'_>>,
) -> Result<Listing, Error> {
    let answer = answer.flatten();
    // How deep the resources lie in the answer, for the nesting bound of what is converted.
    let (list, depth, total, paged, filtered) = if answer.is_map() {
        let mut map = answer.cast::<rhai::Map>();
        let Some(list) =
            map.remove("resources").map(Dynamic::flatten).filter(|l| ScriptEngine::item_count(l).is_some())
        else {
            return Err(bad_return(function, "a map without a resources array").into());
        };
        let rest = ScriptEngine::to_json(&Dynamic::from_map(map)).map_err(|e| bad_return(function, &e))?;
        let total = rest.get("total_results").and_then(Value::as_u64).map(|n| n as usize);
        let paged = rest.get("paged").and_then(Value::as_bool).unwrap_or(false);
        let filtered = paged || rest.get("filtered").and_then(Value::as_bool).unwrap_or(false);
        if paged && total.is_none() {
            return Err(bad_return(function, "paged: true without total_results").into());
        }
        (list, 2, total, paged, filtered)
    } else if ScriptEngine::item_count(&answer).is_some() {
        (answer, 1, None, false, false)
    } else {
        return Err(bad_return(function, "neither an array nor a map").into());
    };
    // A `results(query)` list counts the resources its sieve took out: they were scanned too.
    let scanned = ScriptEngine::item_count(&list).unwrap_or(0);
    let (items, beyond) =
        ScriptEngine::into_items(list).ok_or_else(|| bad_return(function, "a results() list that is unavailable"))?;
    let max_scan = call.app.config.list.max_scan;
    if !paged && scanned.max(items.len()) > max_scan {
        return Err(too_many(max_scan).into());
    }
    // A listing the script filtered itself is not filtered again.
    let pretest = pretest.filter(|_| !filtered);
    let rs = call.app.resource(kind)?;
    let mut resources = Vec::with_capacity(if pretest.is_some() { 0 } else { items.len() });
    // Each item is dropped once read, and the thread serves other requests between turns:
    // reading thousands takes tens of milliseconds, which on a single-threaded runtime would
    // otherwise hold up every request behind it.
    for (read, item) in items.into_iter().enumerate() {
        if read > 0 && read % LISTING_TURN == 0 {
            tokio::task::yield_now().await;
        }
        if let Some(pretest) = pretest {
            if !pretest.admits(&Keeper::of(call), kind, rs, function, &item, depth)? {
                continue;
            }
        }
        let json = ScriptEngine::resource_to_json_within(&item, depth).map_err(|e| bad_return(function, &e))?;
        resources.push(finish_value_unsealed(call, kind, function, json, seal_now)?);
    }
    Ok(Listing { resources, total, paged, filtered, beyond })
}

/// How many listed items are read in one turn of the thread, between which it serves other
/// requests: a turn of a few hundred microseconds to a millisecond or two.
const LISTING_TURN: usize = 256;

/// A listing's filter, tested on the few members of each listed resource it reads before the
/// resource is converted and finished whole: of a listing of thousands, only what matches is.
///
/// Only where finishing leaves what the filter reads as the script gave it, so for filters
/// reading none of: `id` (a number becomes text), `schemas` and `meta` (the proxy writes
/// them), `members`, `groups` and attributes with a `$ref` (references are filled in),
/// attributes never returned or holding sub-attributes never returned (they are taken out).
pub(super) struct Pretest<'m> {
    matcher: &'m Matcher<'m>,
    /// The top-level attributes the filter reads.
    names: Vec<&'m str>,
}

impl<'m> Pretest<'m> {
    fn new(matcher: &'m Matcher<'m>, rs: &ResourceSchema) -> Option<Self> {
        let names = matcher
            .reads()
            .into_iter()
            .map(|(extension, name)| as_given(rs, extension, name))
            .collect::<Option<_>>()?;
        Some(Self { matcher, names })
    }

    /// False for a listed item (found `depth` levels down) that does not match: its id and
    /// name checked and kept in the ID cache first, as finishing checks and keeps them.
    fn admits(
        &self,
        keeper: &Keeper<'_>,
        kind: ResourceKind,
        rs: &ResourceSchema,
        function: &str,
        item: &Dynamic,
        depth: usize,
    ) -> Result<bool, Error> {
        let read = |key: &str| identifies(kind, key) || self.names.iter().any(|n| n.eq_ignore_ascii_case(key));
        // Anything but a map is refused by finishing, with the same words.
        let Some(members) = ScriptEngine::to_json_entries(item, depth, read) else { return Ok(true) };
        let members = members.map_err(|e| bad_return(function, &e))?;
        let identity = identify(kind, function, &members)?;
        let resource = Value::Object(members);
        if self.matcher.matches(&resource) {
            return Ok(true);
        }
        keeper.keep(kind, &rs.name, &identity);
        Ok(false)
    }
}

/// Whether `key` is a member of a listed resource that [`identify`] reads: `id`, the name
/// attribute, `externalId`.
fn identifies(kind: ResourceKind, key: &str) -> bool {
    key == "id" || key == kind.name_attribute() || key == "externalId"
}

/// The member of a listed resource that holds the attribute `name` (of the extension
/// `extension`, if any), where finishing leaves the attribute as the script gave it; `None`
/// where it does not: `id` (a number becomes text), `schemas` and `meta` (the proxy writes
/// them), `members`, `groups` and attributes with a `$ref` (references are filled in),
/// attributes never returned or holding sub-attributes never returned (they are taken out).
fn as_given<'n>(rs: &ResourceSchema, extension: Option<&'n str>, name: &'n str) -> Option<&'n str> {
    let attribute = match extension {
        Some(urn) => rs.extension(urn)?.attribute(name)?,
        None if ["id", "schemas", "meta", "members", "groups"].iter().any(|n| n.eq_ignore_ascii_case(name)) => {
            return None;
        }
        None => rs.core_attribute(name)?,
    };
    let never = |a: &crate::scim::schema::Attribute| a.returned == Returned::Never;
    // A `$ref` is filled in by finishing (an enterprise user's `manager`).
    if never(attribute) || attribute.sub_attributes.iter().any(never) || attribute.sub_attribute("$ref").is_some() {
        return None;
    }
    // An extension attribute is read inside the extension's member.
    Some(extension.unwrap_or(name))
}

/// The [`Sieve`] of a listing's `results(query)` lists: its filter's [`Pretest`], applied to
/// each page the script appends, so that the listing holds what can match rather than all it
/// scanned (a listing of 10,000 users held some 70 MiB until the proxy read it); and of the
/// matches, those that can still make the page the request answers with, by its `sortBy`
/// (else in the order listed), so that a sorted listing of everything holds a page or two
/// rather than all (10,000 users sorted held some 70 MiB too).
#[derive(Debug)]
struct ListingSieve {
    kind: ResourceKind,
    schema: std::sync::Arc<ResourceSchema>,
    filter: Option<Filter>,
    /// `sortBy` and whether descending.
    sort: Option<(AttrPath, bool)>,
    /// How many matches the page needs at most: `startIndex - 1 + count`.
    bound: Option<usize>,
    function: &'static str,
    ids: std::sync::Arc<crate::cache::IdCache>,
    app: String,
    dry_run: bool,
}

impl ListingSieve {
    /// A sieve for the listing of the page `[start_index, start_index + count)` of `query`:
    /// its filter, when it has one, is tested with a [`Pretest`] (`None` for a filter no
    /// pretest can test), and its matches are cut back to the page where its sort value can
    /// be read on resources as the script gave them. `None` when it would do neither.
    fn for_listing(
        call: &Call<'_>,
        kind: ResourceKind,
        rs: &ResourceSchema,
        query: &Query<'_>,
        function: &'static str,
        (start_index, count): (usize, usize),
    ) -> Option<std::sync::Arc<dyn Sieve>> {
        if query.filter.is_some() {
            Pretest::new(query.matcher.as_ref()?, rs)?;
        }
        let ranked = query.sort_by.as_ref().is_none_or(|path| {
            sort::SortKey::new(path, rs).is_ok_and(|key| {
                let (extension, name) = key.member();
                as_given(rs, extension, name).is_some()
            })
        });
        let bound = start_index.saturating_sub(1).saturating_add(count);
        let bound = (ranked && bound < call.app.config.list.max_scan).then_some(bound);
        if query.filter.is_none() && bound.is_none() {
            return None;
        }
        let keeper = Keeper::of(call);
        Some(std::sync::Arc::new(Self {
            kind,
            schema: call.app.shared_resource(kind)?,
            filter: query.filter.clone(),
            sort: query.sort_by.clone().map(|path| (path, query.descending)),
            bound,
            function,
            ids: call.app.ids.clone(),
            app: keeper.app.to_owned(),
            dry_run: keeper.dry_run,
        }))
    }

    fn keeper(&self) -> Keeper<'_> {
        Keeper { ids: &self.ids, app: &self.app, dry_run: self.dry_run }
    }
}

impl Sieve for ListingSieve {
    fn sift(&self, items: rhai::Array) -> rhai::Array {
        let Some(filter) = &self.filter else { return items };
        let Ok(matcher) = Matcher::new(filter, &self.schema) else { return items };
        let Some(pretest) = Pretest::new(&matcher, &self.schema) else { return items };
        let keeper = self.keeper();
        // The resources lie two levels down in an answer `#{ resources: list }`, the deeper of
        // the two places a list can be. An item the pretest cannot read is kept: reading the
        // listing refuses it with the words it always has.
        items
            .into_iter()
            .filter(|item| pretest.admits(&keeper, self.kind, &self.schema, self.function, item, 2).unwrap_or(true))
            .collect()
    }

    fn bound(&self) -> Option<usize> {
        self.bound
    }

    fn cut(&self, held: &mut Vec<Dynamic>) -> Vec<Dynamic> {
        let Some(bound) = self.bound else { return Vec::new() };
        let (key, descending) = match &self.sort {
            Some((path, descending)) => match sort::SortKey::new(path, &self.schema) {
                Ok(key) => (Some(key), *descending),
                Err(_) => return Vec::new(),
            },
            None => (None, false),
        };
        let member = key.as_ref().map(|key| {
            let (extension, name) = key.member();
            extension.unwrap_or(name)
        });
        let read = |key: &str| identifies(self.kind, key) || member.is_some_and(|m| m.eq_ignore_ascii_case(key));
        // Each resource's sort value, place and identity. One that cannot be read this way is
        // kept: reading the listing refuses it with the words it always has.
        let mut ranked = Vec::with_capacity(held.len());
        for (at, item) in held.iter().enumerate() {
            let Some(Ok(members)) = ScriptEngine::to_json_entries(item, 2, read) else { continue };
            let Ok(identity) = identify(self.kind, self.function, &members) else { continue };
            let value = key.as_ref().and_then(|key| key.read(&Value::Object(members)));
            ranked.push((value, at, identity));
        }
        if ranked.len() <= bound {
            return Vec::new();
        }
        // The page's order is a stable sort's: by sort value, ties in the order listed.
        ranked.select_nth_unstable_by(bound, |(a, at_a, _), (b, at_b, _)| {
            sort::order(a.as_ref(), b.as_ref(), descending).then(at_a.cmp(at_b))
        });
        // What is cut out was listed, and lands in the ID cache as every listed resource does.
        let keeper = self.keeper();
        let mut out = vec![false; held.len()];
        for (_, at, identity) in &ranked[bound..] {
            out[*at] = true;
            keeper.keep(self.kind, &self.schema.name, identity);
        }
        let (mut kept, mut cut) = (Vec::with_capacity(held.len() - (ranked.len() - bound)), Vec::new());
        for (item, out) in std::mem::take(held).into_iter().zip(out) {
            if out { cut.push(item) } else { kept.push(item) }
        }
        *held = kept;
        cut
    }
}

pub(super) fn page_of(mut items: Vec<Value>, start_index: usize, count: usize) -> Vec<Value> {
    let skip = start_index.saturating_sub(1);
    if skip >= items.len() {
        return Vec::new();
    }
    items.drain(..skip);
    items.truncate(count);
    items
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_are_one_based_and_bounded() {
        let items: Vec<Value> = (1..=5).map(|i| json!(i)).collect();
        assert_eq!(page_of(items.clone(), 1, 2), vec![json!(1), json!(2)]);
        assert_eq!(page_of(items.clone(), 4, 10), vec![json!(4), json!(5)]);
        assert!(page_of(items.clone(), 6, 10).is_empty());
        assert!(page_of(items, 1, 0).is_empty());
    }
}
