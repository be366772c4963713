//! Identity-provider profiles: what Entra ID and Okta send by default, and what an app keeps of it.
//!
//! A profile is data, one YAML file per identity provider (`entra.yaml`, `okta.yaml` beside
//! this file), compiled into the binary so that `scim-proxy check --idp` needs no file beside
//! it and a typo in one fails the tests. [`assess`] holds each attribute of a profile against
//! an app's published schema and its `schema.unsupported_attributes` policy; it is pure and
//! does what the request path does with the same attribute:
//! - **store**: the app publishes it writable, so the script receives it;
//! - **ignore**: the app publishes it readOnly, or does not publish it under `ignore`;
//! - **refuse**: the app does not publish it under `refuse`: a create carrying it is a `400`.

use std::fmt::Write as _;

use serde::Deserialize;

use crate::scim::definitions;
use crate::scim::filter::Filter;
use crate::scim::patch::parse_patch_path;
use crate::scim::path::AttrPath;
use crate::scim::schema::{ENTERPRISE_USER_SCHEMA, Mutability, ResourceKind, ResourceSchema};
use crate::scim::unpublished::UnsupportedAttributes;

/// The identity providers with a profile, as `check --idp` names them.
pub const NAMES: [&str; 2] = ["entra", "okta"];

/// What one identity provider sends by default.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    /// Its name, as people know it.
    pub(crate) name: String,
    /// Where its user attribute mappings are edited.
    pub(crate) user_mappings: String,
    /// Where its group attribute mappings are edited.
    pub(crate) group_mappings: String,
    /// How to stop it from provisioning groups.
    pub(crate) no_groups: String,
    /// The User attributes it sends.
    pub(crate) users: Vec<Sent>,
    /// The Group attributes it sends.
    pub(crate) groups: Vec<Sent>,
}

/// One attribute an identity provider sends.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Sent {
    /// The target attribute as the identity provider's mapping writes it, a SCIM PATCH path
    /// (`emails[type eq "work"].value`).
    pub attribute: String,
    /// The identity provider's source of the value.
    pub from: String,
    /// Sub-attributes sent beside it (`emails.primary`), besides those its filter names.
    #[serde(default)]
    pub also: Vec<String>,
    /// The fix on the identity provider's side, where removing the mapping is not one.
    #[serde(default)]
    pub fix: Option<String>,
}

/// What an app does with an attribute an identity provider sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Verdict {
    /// The script receives it.
    Store,
    /// It is dropped before the script, and the request goes on.
    Ignore,
    /// A request carrying it fails with `400`.
    Refuse,
}

impl Verdict {
    /// The word `check` prints.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Store => "store",
            Self::Ignore => "ignore",
            Self::Refuse => "refuse",
        }
    }
}

/// The verdict on one attribute of a profile, with why and what to change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// User or Group.
    pub(crate) kind: ResourceKind,
    /// The attribute as the identity provider names it.
    pub(crate) attribute: String,
    /// The identity provider's source of the value.
    pub(crate) from: String,
    /// What the app does with it.
    pub(crate) verdict: Verdict,
    /// Why, and what to change on either side; empty when nothing needs to.
    pub(crate) advice: String,
}

/// The profile of an identity provider named in [`NAMES`].
pub fn profile(name: &str) -> Result<Profile, String> {
    let text = match name {
        "entra" => include_str!("entra.yaml"),
        "okta" => include_str!("okta.yaml"),
        other => return Err(format!("no profile for {other:?}: choose one of {}", NAMES.join(", "))),
    };
    serde_yaml_ng::from_str(text).map_err(|e| format!("the {name} profile: {e}"))
}

/// Holds every attribute of `profile` against an app's published User schema and, when it
/// serves them, its Group schema; `None` for groups leaves the profile's groups out.
///
/// An attribute path of the profile that is no RFC 7643 attribute is an error (a fault of the
/// profile, which the tests rule out).
pub fn assess(
    profile: &Profile,
    users: &ResourceSchema,
    groups: Option<&ResourceSchema>,
    policy: UnsupportedAttributes,
) -> Result<Vec<Finding>, String> {
    let full_users = definitions::user_resource(vec![(definitions::enterprise_user_schema(), false)]);
    let full_groups = definitions::group_resource(Vec::new());
    let mut findings = Vec::new();
    for sent in &profile.users {
        findings.push(assess_one(profile, sent, &full_users, users, policy)?);
    }
    if let Some(groups) = groups {
        for sent in &profile.groups {
            findings.push(assess_one(profile, sent, &full_groups, groups, policy)?);
        }
    }
    Ok(findings)
}

/// What the app makes of one path the identity provider sends.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Fate {
    Stored {
        write_only: bool,
    },
    /// Published readOnly; `by_rfc` when RFC 7643 makes it so, not the app.
    ReadOnly {
        by_rfc: bool,
    },
    Unpublished,
}

fn assess_one(
    profile: &Profile,
    sent: &Sent,
    full: &ResourceSchema,
    app: &ResourceSchema,
    policy: UnsupportedAttributes,
) -> Result<Finding, String> {
    let paths = sent_paths(sent, full)?;
    let fates: Vec<(AttrPath, Fate)> = paths.into_iter().map(|p| (p.clone(), fate(&p, full, app))).collect();
    let refused = |fate: &Fate| *fate == Fate::Unpublished && policy == UnsupportedAttributes::Refuse;
    let (main, main_fate) = &fates[0];
    let verdict = if fates.iter().any(|(_, f)| refused(f)) {
        Verdict::Refuse
    } else if matches!(main_fate, Fate::Stored { .. }) {
        Verdict::Store
    } else {
        Verdict::Ignore
    };
    let idp_side = match &sent.fix {
        Some(fix) => format!("({fix})"),
        None => format!("or remove it from {}'s mapping", profile.name),
    };
    let publish = |path: &AttrPath| format!("add {} to {}", publishable(path), config_key(app.kind(), path));
    let mut advice = match (verdict, main_fate) {
        (Verdict::Store, Fate::Stored { write_only: true }) => {
            "writeOnly: the script receives it, answers never show it".to_owned()
        }
        (Verdict::Store, _) => String::new(),
        (Verdict::Refuse, _) => {
            let (path, _) = fates.iter().find(|(_, f)| refused(f)).unwrap_or(&fates[0]);
            format!(
                "{path} is not published, so a create carrying it fails with 400: {} and map it in the script, \
                 or set schema.unsupported_attributes: ignore; {idp_side}",
                publish(path)
            )
        }
        (Verdict::Ignore, Fate::ReadOnly { by_rfc: true }) => {
            "readOnly in SCIM (RFC 7643): always dropped, nothing to change".to_owned()
        }
        (Verdict::Ignore, Fate::ReadOnly { by_rfc: false }) => {
            format!("readOnly in this app (schema.overrides), so dropped: make it writable there; {idp_side}")
        }
        (Verdict::Ignore, _) => {
            format!("not published, so dropped: to keep it, {} and map it in the script; {idp_side}", publish(main))
        }
    };
    if verdict == Verdict::Store {
        // A companion the app does not keep is dropped beside a value it does: say so.
        let dropped: Vec<String> = fates
            .iter()
            .skip(1)
            .filter(|(_, f)| !matches!(f, Fate::Stored { .. }))
            .map(|(p, _)| p.to_string())
            .collect();
        if !dropped.is_empty() {
            let note = format!("{} dropped (not published or readOnly here)", dropped.join(", "));
            advice = if advice.is_empty() { note } else { format!("{advice}; {note}") };
        }
    }
    Ok(Finding { kind: app.kind(), attribute: sent.attribute.clone(), from: sent.from.clone(), verdict, advice })
}

/// The paths one profile entry makes the identity provider send: the attribute itself (first),
/// the sub-attributes its `[ ]` filter compares, and its `also`. Each must be an RFC 7643 path.
fn sent_paths(sent: &Sent, full: &ResourceSchema) -> Result<Vec<AttrPath>, String> {
    let bad = |path: &str, detail: String| format!("profile attribute {path:?}: {detail}");
    let parsed = parse_patch_path(&sent.attribute, full).map_err(|e| bad(&sent.attribute, e.to_string()))?;
    let top = AttrPath { sub: None, ..parsed.attr.clone() };
    let mut paths = vec![AttrPath { sub: parsed.attr.sub.clone().or(parsed.sub.clone()), ..top.clone() }];
    if let Some(filter) = &parsed.filter {
        compared(filter, &mut |name| paths.push(AttrPath { sub: Some(name.to_owned()), ..top.clone() }));
    }
    for also in &sent.also {
        let path = AttrPath::parse(also).map_err(|e| bad(also, e.to_string()))?;
        if full.resolve(&path).is_none() {
            return Err(bad(also, format!("no such attribute in {}", full.name)));
        }
        paths.push(path);
    }
    Ok(paths)
}

/// Calls `found` with each sub-attribute name a value filter compares.
fn compared(filter: &Filter, found: &mut dyn FnMut(&str)) {
    match filter {
        Filter::Compare { path, .. } | Filter::Present { path } => found(&path.name),
        Filter::And(a, b) | Filter::Or(a, b) => {
            compared(a, found);
            compared(b, found);
        }
        Filter::Not(inner) | Filter::ValuePath { filter: inner, .. } => compared(inner, found),
    }
}

fn fate(path: &AttrPath, full: &ResourceSchema, app: &ResourceSchema) -> Fate {
    let Some(resolved) = app.resolve(path) else {
        return Fate::Unpublished;
    };
    match resolved.target().mutability {
        Mutability::ReadOnly => {
            Fate::ReadOnly { by_rfc: full.resolve(path).is_some_and(|r| r.target().mutability == Mutability::ReadOnly) }
        }
        Mutability::WriteOnly => Fate::Stored { write_only: true },
        Mutability::ReadWrite | Mutability::Immutable => Fate::Stored { write_only: false },
    }
}

/// The configuration key that publishes an attribute.
fn config_key(kind: ResourceKind, path: &AttrPath) -> &'static str {
    match (kind, &path.urn) {
        (ResourceKind::Group, _) => "schema.group_attributes",
        (ResourceKind::User, Some(urn)) if urn.eq_ignore_ascii_case(ENTERPRISE_USER_SCHEMA) => "schema.enterprise_user",
        (ResourceKind::User, _) => "schema.user_attributes",
    }
}

/// The path as the configuration lists it: without its URN (the key says which schema).
fn publishable(path: &AttrPath) -> String {
    AttrPath { urn: None, ..path.clone() }.to_string()
}

/// The report `check --idp` prints for one app: a heading, then one line per attribute,
/// grouped by verdict (store, ignore, refuse), each with its fix.
pub fn render(
    app: &str,
    profile: &Profile,
    policy: UnsupportedAttributes,
    findings: &[Finding],
    groups: bool,
) -> String {
    let policy = match policy {
        UnsupportedAttributes::Ignore => "ignore",
        UnsupportedAttributes::Refuse => "refuse",
    };
    let mut out = String::new();
    let _ =
        writeln!(out, "app {app}: what {} sends by default (schema.unsupported_attributes: {policy})", profile.name);
    // Enterprise URNs are long: past this width a name pushes its own line out, not every line.
    let width = findings.iter().map(|f| f.attribute.len()).max().unwrap_or(0).min(40);
    for verdict in [Verdict::Store, Verdict::Ignore, Verdict::Refuse] {
        let these: Vec<&Finding> = findings.iter().filter(|f| f.verdict == verdict).collect();
        let _ = writeln!(out, "  {} ({}):", verdict.as_str(), these.len());
        for f in these {
            let _ = write!(out, "    {:<5} {:<width$}  <- {}", f.kind.name(), f.attribute, f.from);
            if !f.advice.is_empty() {
                let _ = write!(out, "  -- {}", f.advice);
            }
            out.push('\n');
        }
    }
    let _ = writeln!(out, "  {}'s user mappings: {}", profile.name, profile.user_mappings);
    if groups {
        let _ = writeln!(out, "  {}'s group mappings: {}", profile.name, profile.group_mappings);
    } else {
        let _ = writeln!(
            out,
            "  groups: not served (the script defines no get_group): {}, or /Groups answers 501",
            profile.no_groups
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn app_users(published: &[&str], enterprise: &[&str]) -> ResourceSchema {
        let names = |list: &[&str]| list.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        let core = definitions::restrict(&definitions::user_schema(), &names(published)).unwrap();
        let enterprise = definitions::restrict(&definitions::enterprise_user_schema(), &names(enterprise)).unwrap();
        let mut users = definitions::user_resource(vec![(enterprise, false)]);
        users.core = core;
        users
    }

    /// Fails unless each attribute got its verdict.
    fn assert_verdicts(findings: &[Finding], expected: &[(&str, Verdict)]) {
        let table: Vec<(&str, Verdict)> = findings.iter().map(|f| (f.attribute.as_str(), f.verdict)).collect();
        for pair in expected {
            assert!(table.contains(pair), "{pair:?}: {table:?}");
        }
    }

    #[test]
    fn every_profile_parses_and_every_path_resolves_in_the_rfc_schema() {
        let full_users = definitions::user_resource(vec![(definitions::enterprise_user_schema(), false)]);
        let full_groups = definitions::group_resource(Vec::new());
        for name in NAMES {
            let profile = profile(name).unwrap();
            assert!(profile.users.len() >= 10 && !profile.groups.is_empty(), "{name}");
            for (sent, full) in
                profile.users.iter().map(|s| (s, &full_users)).chain(profile.groups.iter().map(|s| (s, &full_groups)))
            {
                let paths = sent_paths(sent, full).unwrap_or_else(|e| panic!("{name}: {e}"));
                for path in &paths {
                    assert!(full.resolve(path).is_some(), "{name}: {path} of {}", sent.attribute);
                }
            }
            // Against the whole RFC schema, everything an identity provider sends is kept or
            // readOnly: the profiles name no attribute SCIM lacks.
            let findings = assess(&profile, &full_users, Some(&full_groups), UnsupportedAttributes::Refuse).unwrap();
            assert!(findings.iter().all(|f| f.verdict != Verdict::Refuse), "{name}: {findings:?}");
        }
        assert!(profile("onelogin").unwrap_err().contains("entra, okta"));
    }

    #[test]
    fn a_path_scim_does_not_have_is_an_error_naming_it() {
        let mut broken = profile("okta").unwrap();
        broken.users.push(Sent { attribute: "name.givenNmae".into(), from: "x".into(), also: vec![], fix: None });
        let full = definitions::user_resource(vec![]);
        let error = assess(&broken, &full, None, UnsupportedAttributes::Ignore).unwrap_err();
        assert!(error.contains("name.givenNmae"), "{error}");
    }

    #[test]
    fn verdicts_follow_the_published_schema_and_the_policy() {
        let okta = profile("okta").unwrap();
        let users = app_users(&["userName", "name.givenName", "emails.value", "password", "groups", "active"], &[]);
        let pick = |findings: &[Finding], name: &str| -> Finding {
            findings.iter().find(|f| f.attribute == name).cloned().unwrap()
        };
        let ignore = assess(&okta, &users, None, UnsupportedAttributes::Ignore).unwrap();
        assert_verdicts(
            &ignore,
            &[
                ("userName", Verdict::Store),
                ("name.givenName", Verdict::Store),
                ("password", Verdict::Store),
                ("externalId", Verdict::Store),
                ("locale", Verdict::Ignore),
                ("name.familyName", Verdict::Ignore),
                ("groups", Verdict::Ignore),
                ("emails[type eq \"work\"].value", Verdict::Store),
            ],
        );
        assert!(pick(&ignore, "password").advice.contains("writeOnly"));
        let locale = pick(&ignore, "locale").advice;
        assert!(
            locale.contains("add locale to schema.user_attributes") && locale.contains("Okta's mapping"),
            "{locale}"
        );
        assert!(pick(&ignore, "groups").advice.contains("readOnly in SCIM"));
        // emails.type and emails.primary are not published: dropped beside the value.
        let email = pick(&ignore, "emails[type eq \"work\"].value").advice;
        assert!(email.contains("emails.type") && email.contains("emails.primary"), "{email}");

        let refuse = assess(&okta, &users, None, UnsupportedAttributes::Refuse).unwrap();
        assert_verdicts(
            &refuse,
            &[
                ("userName", Verdict::Store),
                ("locale", Verdict::Refuse),
                ("groups", Verdict::Ignore),
                // The value is kept, but the type beside it is refused, and with it the create.
                ("emails[type eq \"work\"].value", Verdict::Refuse),
            ],
        );
        let locale = pick(&refuse, "locale").advice;
        assert!(locale.contains("400") && locale.contains("unsupported_attributes: ignore"), "{locale}");
    }

    #[test]
    fn enterprise_and_group_attributes_name_their_own_configuration_key() {
        let entra = profile("entra").unwrap();
        let users = app_users(&["userName"], &["department"]);
        let groups = definitions::group_resource(Vec::new());
        let findings = assess(&entra, &users, Some(&groups), UnsupportedAttributes::Ignore).unwrap();
        let of = |name: &str| findings.iter().find(|f| f.attribute.ends_with(name)).unwrap();
        assert_eq!(of("User:department").verdict, Verdict::Store);
        assert!(of("User:manager").advice.contains("add manager to schema.enterprise_user"), "{:?}", of("manager"));
        assert!(of("meta.resourceType").advice.contains("readOnly in SCIM"));
        assert!(findings.iter().any(|f| f.kind == ResourceKind::Group && f.attribute == "members"));
        let text = render("hr", &entra, UnsupportedAttributes::Ignore, &findings, true);
        assert!(text.starts_with("app hr: what Microsoft Entra ID sends by default"), "{text}");
        let store = text.find("  store (").unwrap();
        let ignore = text.find("  ignore (").unwrap();
        let refuse = text.find("  refuse (0):").unwrap();
        assert!(store < ignore && ignore < refuse, "{text}");
        assert!(!text.contains("groups: not served"));
        let without_groups = assess(&entra, &users, None, UnsupportedAttributes::Ignore).unwrap();
        assert!(without_groups.iter().all(|f| f.kind == ResourceKind::User));
        let text = render("hr", &entra, UnsupportedAttributes::Ignore, &without_groups, false);
        assert!(text.contains("groups: not served") && text.contains("Provision Microsoft Entra ID Groups to No"));
    }
}
