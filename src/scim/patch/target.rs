//! What an operation targets: its path parsed from text and checked against the resource type
//! ([`parse_patch_path`]), and a canonical path resolved to the definitions it names.

use super::operation::PatchPath;
use crate::scim::error::{ScimError, quoted};
use crate::scim::evaluate::Matcher;
use crate::scim::filter::{Filter, MAX_FILTER_CHARS, parse_filter};
use crate::scim::path::{AttrPath, is_attr_name};
use crate::scim::schema::{AttrType, Attribute, ResourceSchema, Schema};
use crate::scim::unpublished::{Unpublished, UnsupportedAttributes};

/// The longest path accepted, in bytes: a filter of [`MAX_FILTER_CHARS`] plus room for the attribute.
const MAX_PATH_CHARS: usize = MAX_FILTER_CHARS + 512;

/// Parses an operation's `path` and resolves it against the resource type (RFC 7644 §3.5.2,
/// Figure 1: `attrPath / valuePath [subAttr]`), returning it in the schema's spelling.
///
/// A path that does not parse or names no attribute is `invalidPath`; a `[ ]` filter that
/// does not parse, or compares something its attribute does not have, is `invalidFilter`
/// with the position counted from the start of the path; `schemas` is `mutability`, as the
/// service provider maintains it.
pub fn parse_patch_path(text: &str, rs: &ResourceSchema) -> Result<PatchPath, ScimError> {
    let mut refuse = Unpublished::new(UnsupportedAttributes::Refuse);
    resolve_patch_path(text, rs, &mut refuse)?
        .ok_or_else(|| ScimError::invalid_path(text.trim(), format!("names nothing in {}", rs.name)))
}

/// [`parse_patch_path`], with a path that names an attribute (or sub-attribute) the resource
/// type does not publish given to `unpublished`: `None` when it is ignored.
pub(super) fn resolve_patch_path(
    text: &str,
    rs: &ResourceSchema,
    unpublished: &mut Unpublished,
) -> Result<Option<PatchPath>, ScimError> {
    let text = text.trim();
    let bad = |detail: String| ScimError::invalid_path(text, detail);
    if text.len() > MAX_PATH_CHARS {
        return Err(bad(format!("longer than {MAX_PATH_CHARS} characters")));
    }
    let PathParts { head, filter: filter_text, sub: after } = split_value_path(text)?;
    if let Some((ext, _)) = rs.extensions.iter().find(|(ext, _)| ext.id.eq_ignore_ascii_case(head)) {
        if filter_text.is_some() || after.is_some() {
            return Err(bad("a bare extension URN takes no filter or sub-attribute".to_owned()));
        }
        return Ok(Some(PatchPath { attr: AttrPath::simple(ext.id.clone()), filter: None, sub: None }));
    }
    // attribute names and schema URNs are ASCII (RFC 7643 §2.1, RFC 8141)
    if !head.is_ascii() {
        return Err(bad(format!("{head:?} is not an attribute name")));
    }
    let attr = AttrPath::parse(head).map_err(|error| match error {
        ScimError::InvalidPath { detail, .. } => bad(detail),
        other => other,
    })?;
    if attr.name.eq_ignore_ascii_case("schemas") && attr.sub.is_none() && resolves_in_core(rs, &attr) {
        return Err(ScimError::Mutability {
            attribute: "schemas".to_owned(),
            detail: "maintained by the service provider from the extensions present".to_owned(),
        });
    }
    if filter_text.is_some() && attr.sub.is_some() {
        return Err(bad("a [ ] filter follows the attribute, not a sub-attribute".to_owned()));
    }
    let top = AttrPath { sub: None, ..attr.clone() };
    let Some(resolved) = rs.resolve(&top) else {
        unpublished.skip(top.to_string(), bad(format!("no attribute {top} in {}", rs.name)))?;
        return Ok(None);
    };
    let attribute = resolved.attribute;
    let sub = match attr.sub.as_deref().or(after) {
        Some(name) => match attribute.sub_attribute(name) {
            Some(sub) => Some(sub.name.clone()),
            None => {
                let refusal = bad(format!("{} has no sub-attribute {}", attribute.name, quoted(name)));
                unpublished.skip(format!("{top}.{name}"), refusal)?;
                return Ok(None);
            }
        },
        None => None,
    };
    let filter = match filter_text {
        None => None,
        Some((offset, inner)) => {
            if !attribute.multi_valued {
                return Err(bad(format!(
                    "{} is single-valued; a [ ] filter selects values of a multi-valued attribute",
                    attribute.name
                )));
            }
            let mut filter = parse_filter(inner).map_err(|error| shift_position(error, text, offset))?;
            canonical_value_filter(&mut filter, attribute)?;
            Some(filter)
        }
    };
    let urn = resolved.in_extension.then(|| resolved.schema.id.clone());
    let (attr_sub, sub) = if filter.is_some() { (None, sub) } else { (sub, None) };
    Ok(Some(PatchPath { attr: AttrPath { urn, name: attribute.name.clone(), sub: attr_sub }, filter, sub }))
}

/// The parts of `attr[filter].sub` as written.
struct PathParts<'t> {
    /// The attribute text before any `[`.
    head: &'t str,
    /// The text between `[` and `]`, with the byte offset where it starts.
    filter: Option<(usize, &'t str)>,
    /// The sub-attribute after `].`.
    sub: Option<&'t str>,
}

/// Splits `attr[filter].sub` into its parts; brackets inside quoted filter strings do not count.
fn split_value_path(text: &str) -> Result<PathParts<'_>, ScimError> {
    let bad = |detail: &str| ScimError::invalid_path(text, detail);
    let Some(open) = text.find('[') else {
        if text.contains(']') {
            return Err(bad("\"]\" without a matching \"[\""));
        }
        return Ok(PathParts { head: text, filter: None, sub: None });
    };
    let start = open + 1;
    let (mut in_string, mut escaped, mut close) = (false, false, None);
    for (i, c) in text.get(start..).unwrap_or_default().char_indices() {
        if in_string {
            match c {
                _ if escaped => escaped = false,
                '\\' => escaped = true,
                '"' => in_string = false,
                _ => {}
            }
        } else if c == '"' {
            in_string = true;
        } else if c == ']' {
            close = Some(start + i);
            break;
        }
    }
    let Some(close) = close else {
        return Err(bad("\"[\" without a matching \"]\""));
    };
    let inner = text.get(start..close).unwrap_or_default();
    let sub = match text.get(close + 1..).unwrap_or_default() {
        "" => None,
        rest => match rest.strip_prefix('.') {
            Some(sub) if is_attr_name(sub) => Some(sub),
            _ => return Err(bad("only \".subAttribute\" may follow \"]\"")),
        },
    };
    Ok(PathParts { head: text.get(..open).unwrap_or_default().trim_end(), filter: Some((start, inner)), sub })
}

/// Counts a filter error's position from the start of the whole path.
fn shift_position(error: ScimError, text: &str, offset: usize) -> ScimError {
    match error {
        ScimError::InvalidFilter { position, detail } => ScimError::InvalidFilter {
            position: position + text.get(..offset).unwrap_or_default().chars().count(),
            detail,
        },
        other => other,
    }
}

/// True when an unqualified or core-qualified path would name a core attribute.
fn resolves_in_core(rs: &ResourceSchema, attr: &AttrPath) -> bool {
    attr.urn.as_ref().is_none_or(|urn| urn.eq_ignore_ascii_case(&rs.core.id))
}

/// Checks a `[ ]` filter against the values of `attribute` and rewrites its paths in the
/// schema's spelling. Its paths must be bare sub-attribute names (`value` for a multi-valued
/// attribute of simple values), and operators must suit their types.
fn canonical_value_filter(filter: &mut Filter, attribute: &Attribute) -> Result<(), ScimError> {
    let invalid = |detail: String| ScimError::InvalidFilter { position: 0, detail };
    // a work list, not recursion: `and` chains can be hundreds of terms long
    let mut pending: Vec<&mut Filter> = vec![filter];
    while let Some(node) = pending.pop() {
        match node {
            Filter::Compare { path, .. } | Filter::Present { path } => {
                let name = element_field(attribute, path).ok_or_else(|| {
                    invalid(format!(
                        "{} inside the filter is not a sub-attribute of {}",
                        quoted(&path.to_string()),
                        attribute.name
                    ))
                })?;
                path.name = name.to_owned();
            }
            Filter::And(left, right) | Filter::Or(left, right) => {
                pending.push(right);
                pending.push(left);
            }
            Filter::Not(inner) => pending.push(inner),
            Filter::ValuePath { path, .. } => {
                return Err(invalid(format!(
                    "\"{path}[…]\" inside the filter of {}: filters do not nest",
                    attribute.name
                )));
            }
        }
    }
    Matcher::new(filter, &element_schema(attribute)).map(drop)
}

/// The schema spelling of a sub-attribute named inside a `[ ]` filter on `attribute`.
fn element_field<'a>(attribute: &'a Attribute, path: &AttrPath) -> Option<&'a str> {
    if path.urn.is_some() || path.sub.is_some() {
        return None;
    }
    if attribute.kind == AttrType::Complex {
        return attribute.sub_attribute(&path.name).map(|sub| sub.name.as_str());
    }
    path.name.eq_ignore_ascii_case("value").then_some("value")
}

/// A resource type whose attributes are the sub-attributes of `attribute`, so that a `[ ]`
/// filter can be evaluated against one of its values by the filter evaluator. A value of a
/// multi-valued attribute of simple values is seen as `{"value": v}`.
pub(super) fn element_schema(attribute: &Attribute) -> ResourceSchema {
    let attributes = if attribute.kind == AttrType::Complex {
        attribute.sub_attributes.clone()
    } else {
        vec![Attribute {
            name: "value".to_owned(),
            multi_valued: false,
            sub_attributes: Vec::new(),
            ..attribute.clone()
        }]
    };
    ResourceSchema {
        name: attribute.name.clone(),
        endpoint: String::new(),
        description: String::new(),
        core: Schema {
            id: format!("urn:scim-proxy:values:{}", attribute.name),
            name: attribute.name.clone(),
            description: String::new(),
            attributes,
        },
        extensions: Vec::new(),
    }
}

/// What a path resolves to in a resource type.
pub(super) enum Target<'s> {
    /// A bare extension URN: the whole object under it; the flag says the extension is required.
    Extension(&'s Schema, bool),
    Attribute(Slot<'s>),
}

/// An attribute and where it sits in the resource JSON.
#[derive(Clone, Copy)]
pub(super) struct Slot<'s> {
    /// The extension URN key holding the attribute; `None` for core and common attributes.
    pub(super) ext: Option<&'s str>,
    pub(super) attribute: &'s Attribute,
    /// The sub-attribute named by the path, before or after a filter.
    pub(super) sub: Option<&'s Attribute>,
}

/// Resolves a canonical path (as [`parse_patch_path`] returns it) to its definitions.
pub(super) fn resolve_target<'s>(rs: &'s ResourceSchema, path: &PatchPath) -> Result<Target<'s>, ScimError> {
    let bad = || ScimError::invalid_path(path.to_string(), format!("no such attribute in {}", rs.name));
    let bare = path.attr.urn.is_none() && path.attr.sub.is_none() && path.filter.is_none() && path.sub.is_none();
    if bare {
        if let Some((ext, required)) =
            rs.extensions.iter().find(|(ext, _)| ext.id.eq_ignore_ascii_case(&path.attr.name))
        {
            return Ok(Target::Extension(ext, *required));
        }
    }
    let resolved = rs.resolve(&AttrPath { sub: None, ..path.attr.clone() }).ok_or_else(bad)?;
    let sub = match path.attr.sub.as_deref().or(path.sub.as_deref()) {
        Some(name) => Some(resolved.attribute.sub_attribute(name).ok_or_else(bad)?),
        None => None,
    };
    let ext = resolved.in_extension.then_some(resolved.schema.id.as_str());
    Ok(Target::Attribute(Slot { ext, attribute: resolved.attribute, sub }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scim::patch::fixtures::{ENTERPRISE, users};

    #[test]
    fn paths_print_canonically_and_parse_back() {
        let cases = [
            ("emails", "emails"),
            ("name.familyName", "name.familyName"),
            ("addresses[type eq \"work\"]", "addresses[type eq \"work\"]"),
            ("roles[value eq \"2819c223\"]", "roles[value eq \"2819c223\"]"),
            (
                "Emails[Type EQ \"work\" and not (VALUE ew \"x\")].Display",
                "emails[type eq \"work\" and not (value ew \"x\")].display",
            ),
            (
                "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager.value",
                "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager.value",
            ),
            ("department", "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department"),
            ("urn:ietf:params:scim:schemas:core:2.0:User:userName", "userName"),
            ("URN:IETF:PARAMS:SCIM:SCHEMAS:EXTENSION:ENTERPRISE:2.0:USER", ENTERPRISE),
            (" externalId ", "externalId"),
            ("emails[value eq \"a]b\"].type", "emails[value eq \"a]b\"].type"),
        ];
        for (text, printed) in cases {
            let path = parse_patch_path(text, &users()).unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!(path.to_string(), printed, "{text}");
            assert_eq!(parse_patch_path(&path.to_string(), &users()).unwrap(), path, "{text}");
        }
        let path = parse_patch_path("emails[type eq \"work\"].value", &users()).unwrap();
        assert_eq!(path.attr, AttrPath::simple("emails"));
        assert_eq!(path.sub.as_deref(), Some("value"));
        assert_eq!(path.filter.unwrap().to_string(), "type eq \"work\"");
    }
}
