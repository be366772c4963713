//! Schema definitions: core User, Group and Enterprise User (RFC 7643 §4), custom extensions, per-app restriction.

use std::sync::LazyLock;

use serde::Deserialize;
use serde::de::IgnoredAny;

use super::error::{ScimError, quoted};
use super::path::{AttrPath, is_attr_name};
use super::schema::{
    AttrType, Attribute, ENTERPRISE_USER_SCHEMA, GROUP_SCHEMA, Mutability, ResourceSchema, Returned, Schema,
    USER_SCHEMA, Uniqueness,
};

/// `id`, `externalId` and `meta`, built once: `ResourceSchema::resolve` hands out references to them.
static COMMON: LazyLock<Vec<Attribute>> = LazyLock::new(common_attributes);

/// The attributes every resource has besides its schemas' own (RFC 7643 §3.1).
///
/// They are not listed in any schema's `attributes` (the RFC's own §8.7.1 leaves them out);
/// resolution, validation and projection find them through [`common_attribute`].
pub(crate) fn common_attributes() -> Vec<Attribute> {
    vec![
        attr("id", AttrType::String, "Identifier of the resource, assigned by the service provider")
            .required()
            .case_exact()
            .mutability(Mutability::ReadOnly)
            .returned(Returned::Always)
            .uniqueness(Uniqueness::Server),
        attr("externalId", AttrType::String, "Identifier of the resource in the provisioning client").case_exact(),
        attr("meta", AttrType::Complex, "Resource metadata maintained by the service provider")
            .mutability(Mutability::ReadOnly)
            .subs(read_only(vec![
                attr("resourceType", AttrType::String, "Name of the resource type").case_exact(),
                attr("created", AttrType::DateTime, "When the resource was added"),
                attr("lastModified", AttrType::DateTime, "When the resource was last changed"),
                attr("location", AttrType::Reference, "URI of the resource").refs(&["uri"]).case_exact(),
                attr("version", AttrType::String, "Version (entity tag) of the resource").case_exact(),
            ])),
    ]
}

/// The common attribute called `name` (case-insensitive), if it is one.
pub(crate) fn common_attribute(name: &str) -> Option<&'static Attribute> {
    COMMON.iter().find(|a| a.name.eq_ignore_ascii_case(name))
}

/// The core User schema (RFC 7643 §4.1, characteristics as in §8.7.1).
///
/// One departure from the §8.7.1 listing, backed by the RFC's own text: `addresses` has a
/// `primary` sub-attribute (§2.4 gives it to multi-valued attributes and the §8.2 example
/// uses it).
pub(crate) fn user_schema() -> Schema {
    let ims = ["aim", "gtalk", "icq", "xmpp", "msn", "skype", "qq", "yahoo"];
    let phones = ["work", "home", "mobile", "fax", "pager", "other"];
    Schema {
        id: USER_SCHEMA.to_owned(),
        name: "User".to_owned(),
        description: "A user account".to_owned(),
        attributes: vec![
            attr("userName", AttrType::String, "Unique name the user signs in with")
                .required()
                .uniqueness(Uniqueness::Server),
            attr("name", AttrType::Complex, "Parts of the user's real name").subs(vec![
                attr("formatted", AttrType::String, "The full name as displayed"),
                attr("familyName", AttrType::String, "Family (last) name"),
                attr("givenName", AttrType::String, "Given (first) name"),
                attr("middleName", AttrType::String, "Middle name(s)"),
                attr("honorificPrefix", AttrType::String, "Title before the name, such as Ms."),
                attr("honorificSuffix", AttrType::String, "Suffix after the name, such as III"),
            ]),
            attr("displayName", AttrType::String, "Name shown to end users"),
            attr("nickName", AttrType::String, "Casual name the user goes by"),
            attr("profileUrl", AttrType::Reference, "URL of the user's online profile").refs(&["external"]),
            attr("title", AttrType::String, "Job title"),
            attr("userType", AttrType::String, "Relationship to the organization, such as Employee"),
            attr("preferredLanguage", AttrType::String, "Preferred written or spoken language"),
            attr("locale", AttrType::String, "Locale for formatting dates, numbers and currency"),
            attr("timezone", AttrType::String, "Time zone name from the IANA database"),
            attr("active", AttrType::Boolean, "Whether the account is enabled"),
            attr("password", AttrType::String, "Clear-text password to set; never returned")
                .mutability(Mutability::WriteOnly)
                .returned(Returned::Never),
            plural(
                "emails",
                "Email addresses",
                attr("value", AttrType::String, "Email address"),
                &["work", "home", "other"],
            ),
            plural("phoneNumbers", "Phone numbers", attr("value", AttrType::String, "Phone number"), &phones),
            plural("ims", "Instant messaging addresses", attr("value", AttrType::String, "Messaging address"), &ims),
            plural(
                "photos",
                "Photos of the user",
                attr("value", AttrType::Reference, "URL of a photo").refs(&["external"]),
                &["photo", "thumbnail"],
            ),
            attr("addresses", AttrType::Complex, "Postal addresses").multi().subs(vec![
                attr("formatted", AttrType::String, "The full address as printed on a label"),
                attr("streetAddress", AttrType::String, "Street, house number, P.O. box"),
                attr("locality", AttrType::String, "City or locality"),
                attr("region", AttrType::String, "State or region"),
                attr("postalCode", AttrType::String, "Postal code"),
                attr("country", AttrType::String, "Country"),
                attr("type", AttrType::String, "Kind of address").canonical(&["work", "home", "other"]),
                attr("primary", AttrType::Boolean, "Whether this is the preferred address"),
            ]),
            attr("groups", AttrType::Complex, "Groups the user belongs to, maintained through the groups")
                .multi()
                .mutability(Mutability::ReadOnly)
                .subs(read_only(vec![
                    attr("value", AttrType::String, "Group id"),
                    attr("$ref", AttrType::Reference, "URI of the group").refs(&["User", "Group"]),
                    attr("display", AttrType::String, "Display name of the group"),
                    attr("type", AttrType::String, "Direct or indirect membership").canonical(&["direct", "indirect"]),
                ])),
            plural(
                "entitlements",
                "Things the user is entitled to",
                attr("value", AttrType::String, "Entitlement"),
                &[],
            ),
            plural("roles", "Roles the user has", attr("value", AttrType::String, "Role"), &[]),
            plural(
                "x509Certificates",
                "X.509 certificates of the user",
                attr("value", AttrType::Binary, "DER certificate, base64-encoded"),
                &[],
            ),
        ],
    }
}

/// The Enterprise User extension (RFC 7643 §4.3, characteristics as in §8.7.1).
pub fn enterprise_user_schema() -> Schema {
    Schema {
        id: ENTERPRISE_USER_SCHEMA.to_owned(),
        name: "EnterpriseUser".to_owned(),
        description: "Attributes of a user in an organization".to_owned(),
        attributes: vec![
            attr("employeeNumber", AttrType::String, "Employee number"),
            attr("costCenter", AttrType::String, "Cost center"),
            attr("organization", AttrType::String, "Organization"),
            attr("division", AttrType::String, "Division"),
            attr("department", AttrType::String, "Department"),
            attr("manager", AttrType::Complex, "The user's manager").subs(vec![
                attr("value", AttrType::String, "Id of the manager's user"),
                attr("$ref", AttrType::Reference, "URI of the manager's user").refs(&["User"]),
                attr("displayName", AttrType::String, "Display name of the manager").mutability(Mutability::ReadOnly),
            ]),
        ],
    }
}

/// The core Group schema (RFC 7643 §4.2).
///
/// Two departures from the §8.7.1 listing, both backed by the RFC's own text:
/// `displayName` is required (§4.2 says REQUIRED while §8.7.1 says `"required": false`), and
/// `members` has a `display` sub-attribute (used by the §8.4 example and sent by IdPs).
pub(crate) fn group_schema() -> Schema {
    Schema {
        id: GROUP_SCHEMA.to_owned(),
        name: "Group".to_owned(),
        description: "A group of users or groups".to_owned(),
        attributes: vec![
            attr("displayName", AttrType::String, "Name of the group").required(),
            // Members are added and removed whole; their sub-attributes never change (§4.2).
            attr("members", AttrType::Complex, "Members of the group").multi().subs(
                [
                    attr("value", AttrType::String, "Id of the member"),
                    attr("$ref", AttrType::Reference, "URI of the member").refs(&["User", "Group"]),
                    attr("display", AttrType::String, "Display name of the member"),
                    attr("type", AttrType::String, "Kind of member").canonical(&["User", "Group"]),
                ]
                .into_iter()
                .map(|a| a.mutability(Mutability::Immutable))
                .collect(),
            ),
        ],
    }
}

/// The User resource type: core User schema plus the given extensions (schema, required).
pub fn user_resource(extensions: Vec<(Schema, bool)>) -> ResourceSchema {
    ResourceSchema {
        name: "User".to_owned(),
        endpoint: "/Users".to_owned(),
        description: "User accounts".to_owned(),
        core: user_schema(),
        extensions,
    }
}

/// The Group resource type: core Group schema plus the given extensions (schema, required).
pub fn group_resource(extensions: Vec<(Schema, bool)>) -> ResourceSchema {
    ResourceSchema {
        name: "Group".to_owned(),
        endpoint: "/Groups".to_owned(),
        description: "Groups of users".to_owned(),
        core: group_schema(),
        extensions,
    }
}

/// Keeps only the attributes an app supports, when its config lists them.
///
/// An entry names an attribute (`emails`: kept whole), or a sub-attribute
/// (`name.givenName`: the parent kept with just the named subs); it may carry the schema's
/// URN. Required attributes and required sub-attributes are always kept. Common attributes
/// (`id`, `externalId`, `meta`) are accepted and have no effect. Runs at config load; an
/// entry the schema does not have is an `InvalidPath` error naming it.
pub(crate) fn restrict(schema: &Schema, supported: &[String]) -> Result<Schema, ScimError> {
    let mut keep: Vec<Keep> =
        schema.attributes.iter().map(|a| if a.required { Keep::Whole } else { Keep::Drop }).collect();
    for entry in supported {
        let path = AttrPath::parse(entry)?;
        if path.urn.as_ref().is_some_and(|urn| !urn.eq_ignore_ascii_case(&schema.id)) {
            return Err(ScimError::invalid_path(entry, format!("not an attribute of {}", schema.id)));
        }
        let Some(index) = schema.attributes.iter().position(|a| a.name.eq_ignore_ascii_case(&path.name)) else {
            if common_attribute(&path.name).is_some() {
                continue;
            }
            return Err(ScimError::invalid_path(entry, format!("no attribute {:?} in {}", path.name, schema.name)));
        };
        let attribute = &schema.attributes[index];
        let Some(sub) = &path.sub else {
            keep[index] = Keep::Whole;
            continue;
        };
        let Some(sub) = attribute.sub_attribute(sub) else {
            return Err(ScimError::invalid_path(
                entry,
                format!("no sub-attribute {} in {}", quoted(sub), attribute.name),
            ));
        };
        match &mut keep[index] {
            Keep::Whole => {}
            Keep::Subs(subs) => subs.push(&sub.name),
            slot @ Keep::Drop => *slot = Keep::Subs(vec![&sub.name]),
        }
    }
    let attributes = schema
        .attributes
        .iter()
        .zip(keep)
        .filter_map(|(attribute, keep)| match keep {
            Keep::Drop => None,
            Keep::Whole => Some(attribute.clone()),
            Keep::Subs(subs) => {
                let mut attribute = attribute.clone();
                attribute.sub_attributes.retain(|s| s.required || subs.contains(&s.name.as_str()));
                Some(attribute)
            }
        })
        .collect();
    Ok(Schema { attributes, ..schema.clone() })
}

/// What `restrict` keeps of one attribute.
enum Keep<'a> {
    Drop,
    Whole,
    /// Only these sub-attributes (schema spelling).
    Subs(Vec<&'a str>),
}

/// Reads a custom extension schema from config, in the JSON shape `/Schemas` publishes.
///
/// Missing characteristics take the RFC 7643 §2.2 defaults (type string, single-valued,
/// optional, case-insensitive, readWrite, returned by default, no uniqueness); `schemas`
/// and `meta` keys are accepted and ignored so a published document can be pasted as is.
/// Runs at config load; an error names the attribute and what is wrong with it.
pub(crate) fn custom_schema_from_json(value: &serde_json::Value) -> Result<Schema, ScimError> {
    let def = SchemaDef::deserialize(value).map_err(|e| ScimError::invalid_value("schema", e.to_string()))?;
    if !def.id.get(..4).is_some_and(|p| p.eq_ignore_ascii_case("urn:")) || def.id.ends_with(':') {
        return Err(ScimError::invalid_value("schema.id", format!("{:?} is not a schema URN", def.id)));
    }
    let attributes = convert_attributes(def.attributes, &def.id, false)?;
    let name = match def.name {
        Some(name) => name,
        None => def.id.rsplit(':').next().unwrap_or_default().to_owned(),
    };
    Ok(Schema { id: def.id, name, description: def.description, attributes })
}

/// A schema as written in config.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SchemaDef {
    id: String,
    name: Option<String>,
    #[serde(default)]
    description: String,
    attributes: Vec<AttributeDef>,
    #[serde(default, rename = "schemas")]
    _schemas: IgnoredAny,
    #[serde(default, rename = "meta")]
    _meta: IgnoredAny,
}

/// An attribute as written in config; absent characteristics take the RFC 7643 §2.2 defaults.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct AttributeDef {
    name: String,
    #[serde(rename = "type", default = "default_type")]
    kind: AttrType,
    #[serde(default)]
    multi_valued: bool,
    #[serde(default)]
    description: String,
    #[serde(default)]
    required: bool,
    #[serde(default)]
    case_exact: bool,
    #[serde(default = "default_mutability")]
    mutability: Mutability,
    #[serde(default = "default_returned")]
    returned: Returned,
    #[serde(default = "default_uniqueness")]
    uniqueness: Uniqueness,
    #[serde(default)]
    canonical_values: Vec<String>,
    #[serde(default)]
    reference_types: Vec<String>,
    #[serde(default)]
    sub_attributes: Vec<AttributeDef>,
}

fn default_type() -> AttrType {
    AttrType::String
}

fn default_mutability() -> Mutability {
    Mutability::ReadWrite
}

fn default_returned() -> Returned {
    Returned::Default
}

fn default_uniqueness() -> Uniqueness {
    Uniqueness::None
}

/// Checks and converts configured attributes: valid unique names, sub-attributes exactly
/// on complex attributes, and no complex sub-attributes (RFC 7643 §2.3.8).
fn convert_attributes(defs: Vec<AttributeDef>, parent: &str, nested: bool) -> Result<Vec<Attribute>, ScimError> {
    let mut out: Vec<Attribute> = Vec::with_capacity(defs.len());
    for def in defs {
        let path = if nested { format!("{parent}.{}", def.name) } else { format!("{parent}:{}", def.name) };
        let fail = |detail: &str| Err(ScimError::invalid_value(path.clone(), detail));
        if !is_attr_name(&def.name) {
            return fail("not a valid attribute name");
        }
        if out.iter().any(|a| a.name.eq_ignore_ascii_case(&def.name)) {
            return fail("defined twice");
        }
        let complex = def.kind == AttrType::Complex;
        if complex && nested {
            return fail("a sub-attribute cannot be complex");
        }
        if complex && def.sub_attributes.is_empty() {
            return fail("a complex attribute needs subAttributes");
        }
        if !complex && !def.sub_attributes.is_empty() {
            return fail("only a complex attribute can have subAttributes");
        }
        let sub_attributes = convert_attributes(def.sub_attributes, &path, true)?;
        out.push(Attribute {
            name: def.name,
            kind: def.kind,
            multi_valued: def.multi_valued,
            description: def.description,
            required: def.required,
            case_exact: def.case_exact,
            mutability: def.mutability,
            returned: def.returned,
            uniqueness: def.uniqueness,
            canonical_values: def.canonical_values,
            reference_types: def.reference_types,
            sub_attributes,
        });
    }
    Ok(out)
}

/// An attribute with the RFC 7643 §2.2 default characteristics, refined by the builders below.
fn attr(name: &str, kind: AttrType, description: &str) -> Attribute {
    Attribute {
        name: name.to_owned(),
        kind,
        multi_valued: false,
        description: description.to_owned(),
        required: false,
        case_exact: false,
        mutability: Mutability::ReadWrite,
        returned: Returned::Default,
        uniqueness: Uniqueness::None,
        canonical_values: Vec::new(),
        reference_types: Vec::new(),
        sub_attributes: Vec::new(),
    }
}

/// The same sub-attributes, all readOnly: the service provider maintains them.
fn read_only(subs: Vec<Attribute>) -> Vec<Attribute> {
    subs.into_iter().map(|a| a.mutability(Mutability::ReadOnly)).collect()
}

/// A multi-valued complex attribute with the usual `value`, `display`, `type`, `primary` subs (RFC 7643 §2.4).
fn plural(name: &str, description: &str, value: Attribute, types: &[&str]) -> Attribute {
    attr(name, AttrType::Complex, description).multi().subs(vec![
        value,
        attr("display", AttrType::String, "Human-readable form of the value"),
        attr("type", AttrType::String, "Function of the value, such as work or home").canonical(types),
        attr("primary", AttrType::Boolean, "Whether this is the preferred value; true at most once"),
    ])
}

/// Builders for the characteristics that differ from the defaults (a private trait, so the
/// names cannot clash with methods added to `Attribute` elsewhere).
trait Refine {
    fn required(self) -> Self;
    fn multi(self) -> Self;
    fn case_exact(self) -> Self;
    fn mutability(self, mutability: Mutability) -> Self;
    fn returned(self, returned: Returned) -> Self;
    fn uniqueness(self, uniqueness: Uniqueness) -> Self;
    fn canonical(self, values: &[&str]) -> Self;
    fn refs(self, types: &[&str]) -> Self;
    fn subs(self, subs: Vec<Attribute>) -> Self;
}

impl Refine for Attribute {
    fn required(mut self) -> Self {
        self.required = true;
        self
    }

    fn multi(mut self) -> Self {
        self.multi_valued = true;
        self
    }

    fn case_exact(mut self) -> Self {
        self.case_exact = true;
        self
    }

    fn mutability(mut self, mutability: Mutability) -> Self {
        self.mutability = mutability;
        self
    }

    fn returned(mut self, returned: Returned) -> Self {
        self.returned = returned;
        self
    }

    fn uniqueness(mut self, uniqueness: Uniqueness) -> Self {
        self.uniqueness = uniqueness;
        self
    }

    fn canonical(mut self, values: &[&str]) -> Self {
        self.canonical_values = values.iter().map(|v| (*v).to_owned()).collect();
        self
    }

    fn refs(mut self, types: &[&str]) -> Self {
        self.reference_types = types.iter().map(|t| (*t).to_owned()).collect();
        self
    }

    fn subs(mut self, subs: Vec<Attribute>) -> Self {
        self.sub_attributes = subs;
        self
    }
}

/// The RFC's own example resources, shared by the tests of the SCIM core.
#[cfg(test)]
pub(crate) mod rfc_examples {
    use serde_json::{Value, json};

    /// RFC 7643 §8.2, the full User representation.
    pub(crate) fn full_user() -> Value {
        let certificate = concat!(
            "MIIDQzCCAqygAwIBAgICEAAwDQYJKoZIhvcNAQEFBQAwTjELMAkGA1UEBhMCVVMx",
            "EzARBgNVBAgMCkNhbGlmb3JuaWExFDASBgNVBAoMC2V4YW1wbGUuY29tMRQwEgYD",
            "VQQDDAtleGFtcGxlLmNvbTAeFw0xMTEwMjIwNjI0MzFaFw0xMjEwMDQwNjI0MzFa",
            "MH8xCzAJBgNVBAYTAlVTMRMwEQYDVQQIDApDYWxpZm9ybmlhMRQwEgYDVQQKDAtl",
            "eGFtcGxlLmNvbTEhMB8GA1UEAwwYTXMuIEJhcmJhcmEgSiBKZW5zZW4gSUlJMSIw",
            "IAYJKoZIhvcNAQkBFhNiamVuc2VuQGV4YW1wbGUuY29tMIIBIjANBgkqhkiG9w0B",
            "AQEFAAOCAQ8AMIIBCgKCAQEA7Kr+Dcds/JQ5GwejJFcBIP682X3xpjis56AK02bc",
            "1FLgzdLI8auoR+cC9/Vrh5t66HkQIOdA4unHh0AaZ4xL5PhVbXIPMB5vAPKpzz5i",
            "PSi8xO8SL7I7SDhcBVJhqVqr3HgllEG6UClDdHO7nkLuwXq8HcISKkbT5WFTVfFZ",
            "zidPl8HZ7DhXkZIRtJwBweq4bvm3hM1Os7UQH05ZS6cVDgweKNwdLLrT51ikSQG3",
            "DYrl+ft781UQRIqxgwqCfXEuDiinPh0kkvIi5jivVu1Z9QiwlYEdRbLJ4zJQBmDr",
            "SGTMYn4lRc2HgHO4DqB/bnMVorHB0CC6AV1QoFK4GPe1LwIDAQABo3sweTAJBgNV",
            "HRMEAjAAMCwGCWCGSAGG+EIBDQQfFh1PcGVuU1NMIEdlbmVyYXRlZCBDZXJ0aWZp",
            "Y2F0ZTAdBgNVHQ4EFgQU8pD0U0vsZIsaA16lL8En8bx0F/gwHwYDVR0jBBgwFoAU",
            "dGeKitcaF7gnzsNwDx708kqaVt0wDQYJKoZIhvcNAQEFBQADgYEAA81SsFnOdYJt",
            "Ng5Tcq+/ByEDrBgnusx0jloUhByPMEVkoMZ3J7j1ZgI8rAbOkNngX8+pKfTiDz1R",
            "C4+dx8oU6Za+4NJXUjlL5CvV6BEYb1+QAEJwitTVvxB/A67g42/vzgAtoRUeDov1",
            "+GFiBZ+GNF/cAYKcMtGcrs2i97ZkJMo=",
        );
        json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
            "id": "2819c223-7f76-453a-919d-413861904646",
            "externalId": "701984",
            "userName": "bjensen@example.com",
            "name": {
                "formatted": "Ms. Barbara J Jensen, III",
                "familyName": "Jensen",
                "givenName": "Barbara",
                "middleName": "Jane",
                "honorificPrefix": "Ms.",
                "honorificSuffix": "III"
            },
            "displayName": "Babs Jensen",
            "nickName": "Babs",
            "profileUrl": "https://login.example.com/bjensen",
            "emails": [
                { "value": "bjensen@example.com", "type": "work", "primary": true },
                { "value": "babs@jensen.org", "type": "home" }
            ],
            "addresses": [
                {
                    "type": "work",
                    "streetAddress": "100 Universal City Plaza",
                    "locality": "Hollywood",
                    "region": "CA",
                    "postalCode": "91608",
                    "country": "USA",
                    "formatted": "100 Universal City Plaza\nHollywood, CA 91608 USA",
                    "primary": true
                },
                {
                    "type": "home",
                    "streetAddress": "456 Hollywood Blvd",
                    "locality": "Hollywood",
                    "region": "CA",
                    "postalCode": "91608",
                    "country": "USA",
                    "formatted": "456 Hollywood Blvd\nHollywood, CA 91608 USA"
                }
            ],
            "phoneNumbers": [
                { "value": "555-555-5555", "type": "work" },
                { "value": "555-555-4444", "type": "mobile" }
            ],
            "ims": [{ "value": "someaimhandle", "type": "aim" }],
            "photos": [
                { "value": "https://photos.example.com/profilephoto/72930000000Ccne/F", "type": "photo" },
                { "value": "https://photos.example.com/profilephoto/72930000000Ccne/T", "type": "thumbnail" }
            ],
            "userType": "Employee",
            "title": "Tour Guide",
            "preferredLanguage": "en-US",
            "locale": "en-US",
            "timezone": "America/Los_Angeles",
            "active": true,
            "password": "t1meMa$heen",
            "groups": [
                {
                    "value": "e9e30dba-f08f-4109-8486-d5c6a331660a",
                    "$ref": "https://example.com/v2/Groups/e9e30dba-f08f-4109-8486-d5c6a331660a",
                    "display": "Tour Guides"
                },
                {
                    "value": "fc348aa8-3835-40eb-a20b-c726e15c55b5",
                    "$ref": "https://example.com/v2/Groups/fc348aa8-3835-40eb-a20b-c726e15c55b5",
                    "display": "Employees"
                },
                {
                    "value": "71ddacd2-a8e7-49b8-a5db-ae50d0a5bfd7",
                    "$ref": "https://example.com/v2/Groups/71ddacd2-a8e7-49b8-a5db-ae50d0a5bfd7",
                    "display": "US Employees"
                }
            ],
            "x509Certificates": [{ "value": certificate }],
            "meta": {
                "resourceType": "User",
                "created": "2010-01-23T04:56:22Z",
                "lastModified": "2011-05-13T04:42:34Z",
                "version": "W/\"a330bc54f0671c9\"",
                "location": "https://example.com/v2/Users/2819c223-7f76-453a-919d-413861904646"
            }
        })
    }

    /// The full User of §8.2 with the Enterprise User extension data of §8.3.
    pub(crate) fn enterprise_user() -> Value {
        let mut user = full_user();
        user["schemas"] = json!([
            "urn:ietf:params:scim:schemas:core:2.0:User",
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
        ]);
        user["urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"] = json!({
            "employeeNumber": "701984",
            "costCenter": "4130",
            "organization": "Universal Studios",
            "division": "Theme Park",
            "department": "Tour Operations",
            "manager": {
                "value": "26118915-6090-4610-87e4-49d8ca9f808d",
                "$ref": "../Users/26118915-6090-4610-87e4-49d8ca9f808d",
                "displayName": "John Smith"
            }
        });
        user
    }

    /// RFC 7643 §8.4, a Group with two members.
    pub(crate) fn group() -> Value {
        json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
            "id": "e9e30dba-f08f-4109-8486-d5c6a331660a",
            "displayName": "Tour Guides",
            "members": [
                {
                    "value": "2819c223-7f76-453a-919d-413861904646",
                    "$ref": "https://example.com/v2/Users/2819c223-7f76-453a-919d-413861904646",
                    "display": "Babs Jensen"
                },
                {
                    "value": "902c246b-6245-4190-8e05-00816be7344a",
                    "$ref": "https://example.com/v2/Users/902c246b-6245-4190-8e05-00816be7344a",
                    "display": "Mandy Pepperidge"
                }
            ],
            "meta": {
                "resourceType": "Group",
                "created": "2010-01-23T04:56:22Z",
                "lastModified": "2011-05-13T04:42:34Z",
                "version": "W/\"3694e05e9dff592\"",
                "location": "https://example.com/v2/Groups/e9e30dba-f08f-4109-8486-d5c6a331660a"
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    /// RFC 7643 §8.7.1 as (name, type, multiValued, required, caseExact, mutability, returned, uniqueness).
    type Row = (&'static str, &'static str, bool, bool, bool, &'static str, &'static str, &'static str);

    fn check_rows(schema: &Schema, rows: &[Row]) {
        let names: Vec<&str> = schema.attributes.iter().map(|a| a.name.as_str()).collect();
        let expected: Vec<&str> = rows.iter().map(|r| r.0).collect();
        assert_eq!(names, expected, "{}", schema.id);
        for (row, attribute) in rows.iter().zip(&schema.attributes) {
            let got = serde_json::to_value(attribute).unwrap();
            let (name, kind, multi, required, case_exact, mutability, returned, uniqueness) = *row;
            let want = json!({
                "name": name, "type": kind, "multiValued": multi, "required": required, "caseExact": case_exact,
                "mutability": mutability, "returned": returned, "uniqueness": uniqueness,
            });
            for (key, value) in want.as_object().unwrap() {
                assert_eq!(&got[key], value, "{name}.{key}");
            }
        }
    }

    #[test]
    fn user_attributes_match_rfc_7643() {
        let (rw, d, n) = ("readWrite", "default", "none");
        check_rows(
            &user_schema(),
            &[
                ("userName", "string", false, true, false, rw, d, "server"),
                ("name", "complex", false, false, false, rw, d, n),
                ("displayName", "string", false, false, false, rw, d, n),
                ("nickName", "string", false, false, false, rw, d, n),
                ("profileUrl", "reference", false, false, false, rw, d, n),
                ("title", "string", false, false, false, rw, d, n),
                ("userType", "string", false, false, false, rw, d, n),
                ("preferredLanguage", "string", false, false, false, rw, d, n),
                ("locale", "string", false, false, false, rw, d, n),
                ("timezone", "string", false, false, false, rw, d, n),
                ("active", "boolean", false, false, false, rw, d, n),
                ("password", "string", false, false, false, "writeOnly", "never", n),
                ("emails", "complex", true, false, false, rw, d, n),
                ("phoneNumbers", "complex", true, false, false, rw, d, n),
                ("ims", "complex", true, false, false, rw, d, n),
                ("photos", "complex", true, false, false, rw, d, n),
                ("addresses", "complex", true, false, false, rw, d, n),
                ("groups", "complex", true, false, false, "readOnly", d, n),
                ("entitlements", "complex", true, false, false, rw, d, n),
                ("roles", "complex", true, false, false, rw, d, n),
                ("x509Certificates", "complex", true, false, false, rw, d, n),
            ],
        );
    }

    #[test]
    fn group_and_enterprise_attributes_match_rfc_7643() {
        let (rw, d, n) = ("readWrite", "default", "none");
        check_rows(
            &group_schema(),
            &[
                ("displayName", "string", false, true, false, rw, d, n),
                ("members", "complex", true, false, false, rw, d, n),
            ],
        );
        check_rows(
            &enterprise_user_schema(),
            &[
                ("employeeNumber", "string", false, false, false, rw, d, n),
                ("costCenter", "string", false, false, false, rw, d, n),
                ("organization", "string", false, false, false, rw, d, n),
                ("division", "string", false, false, false, rw, d, n),
                ("department", "string", false, false, false, rw, d, n),
                ("manager", "complex", false, false, false, rw, d, n),
            ],
        );
    }

    #[test]
    fn paths_resolve_to_rfc_characteristics() {
        let users = user_resource(vec![(enterprise_user_schema(), false)]);
        let groups = group_resource(vec![]);
        let enterprise = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";
        // (resource, path, type, multiValued, caseExact, mutability, returned, uniqueness, referenceTypes)
        let cases = [
            (
                &users,
                "id".to_owned(),
                AttrType::String,
                false,
                true,
                Mutability::ReadOnly,
                Returned::Always,
                Uniqueness::Server,
                vec![],
            ),
            (
                &users,
                format!("{USER_SCHEMA}:id"),
                AttrType::String,
                false,
                true,
                Mutability::ReadOnly,
                Returned::Always,
                Uniqueness::Server,
                vec![],
            ),
            (
                &groups,
                "ID".to_owned(),
                AttrType::String,
                false,
                true,
                Mutability::ReadOnly,
                Returned::Always,
                Uniqueness::Server,
                vec![],
            ),
            (
                &users,
                "externalId".to_owned(),
                AttrType::String,
                false,
                true,
                Mutability::ReadWrite,
                Returned::Default,
                Uniqueness::None,
                vec![],
            ),
            (
                &users,
                "meta".to_owned(),
                AttrType::Complex,
                false,
                false,
                Mutability::ReadOnly,
                Returned::Default,
                Uniqueness::None,
                vec![],
            ),
            (
                &users,
                "meta.lastModified".to_owned(),
                AttrType::DateTime,
                false,
                false,
                Mutability::ReadOnly,
                Returned::Default,
                Uniqueness::None,
                vec![],
            ),
            (
                &users,
                "meta.location".to_owned(),
                AttrType::Reference,
                false,
                true,
                Mutability::ReadOnly,
                Returned::Default,
                Uniqueness::None,
                vec!["uri"],
            ),
            (
                &users,
                "userName".to_owned(),
                AttrType::String,
                false,
                false,
                Mutability::ReadWrite,
                Returned::Default,
                Uniqueness::Server,
                vec![],
            ),
            (
                &users,
                "password".to_owned(),
                AttrType::String,
                false,
                false,
                Mutability::WriteOnly,
                Returned::Never,
                Uniqueness::None,
                vec![],
            ),
            (
                &users,
                "groups".to_owned(),
                AttrType::Complex,
                true,
                false,
                Mutability::ReadOnly,
                Returned::Default,
                Uniqueness::None,
                vec![],
            ),
            (
                &users,
                "groups.$ref".to_owned(),
                AttrType::Reference,
                false,
                false,
                Mutability::ReadOnly,
                Returned::Default,
                Uniqueness::None,
                vec!["User", "Group"],
            ),
            (
                &users,
                "emails".to_owned(),
                AttrType::Complex,
                true,
                false,
                Mutability::ReadWrite,
                Returned::Default,
                Uniqueness::None,
                vec![],
            ),
            (
                &users,
                "emails.primary".to_owned(),
                AttrType::Boolean,
                false,
                false,
                Mutability::ReadWrite,
                Returned::Default,
                Uniqueness::None,
                vec![],
            ),
            (
                &users,
                "photos.value".to_owned(),
                AttrType::Reference,
                false,
                false,
                Mutability::ReadWrite,
                Returned::Default,
                Uniqueness::None,
                vec!["external"],
            ),
            (
                &users,
                "x509Certificates.value".to_owned(),
                AttrType::Binary,
                false,
                false,
                Mutability::ReadWrite,
                Returned::Default,
                Uniqueness::None,
                vec![],
            ),
            (
                &users,
                "profileUrl".to_owned(),
                AttrType::Reference,
                false,
                false,
                Mutability::ReadWrite,
                Returned::Default,
                Uniqueness::None,
                vec!["external"],
            ),
            (
                &users,
                format!("{enterprise}:manager"),
                AttrType::Complex,
                false,
                false,
                Mutability::ReadWrite,
                Returned::Default,
                Uniqueness::None,
                vec![],
            ),
            (
                &users,
                format!("{enterprise}:manager.value"),
                AttrType::String,
                false,
                false,
                Mutability::ReadWrite,
                Returned::Default,
                Uniqueness::None,
                vec![],
            ),
            (
                &users,
                format!("{enterprise}:manager.$ref"),
                AttrType::Reference,
                false,
                false,
                Mutability::ReadWrite,
                Returned::Default,
                Uniqueness::None,
                vec!["User"],
            ),
            (
                &users,
                "manager.displayName".to_owned(),
                AttrType::String,
                false,
                false,
                Mutability::ReadOnly,
                Returned::Default,
                Uniqueness::None,
                vec![],
            ),
            (
                &groups,
                "members.value".to_owned(),
                AttrType::String,
                false,
                false,
                Mutability::Immutable,
                Returned::Default,
                Uniqueness::None,
                vec![],
            ),
            (
                &groups,
                "members.$ref".to_owned(),
                AttrType::Reference,
                false,
                false,
                Mutability::Immutable,
                Returned::Default,
                Uniqueness::None,
                vec!["User", "Group"],
            ),
        ];
        for (rs, path, kind, multi, case_exact, mutability, returned, uniqueness, refs) in cases {
            let resolved =
                rs.resolve(&AttrPath::parse(&path).unwrap()).unwrap_or_else(|| panic!("{path} does not resolve"));
            let a = resolved.target();
            assert_eq!(
                (
                    a.kind,
                    a.multi_valued,
                    a.case_exact,
                    a.mutability,
                    a.returned,
                    a.uniqueness,
                    a.reference_types.clone()
                ),
                (
                    kind,
                    multi,
                    case_exact,
                    mutability,
                    returned,
                    uniqueness,
                    refs.iter().map(|r| r.to_string()).collect()
                ),
                "{path}"
            );
        }
        let user_schema = user_schema();
        let sub_names = |name: &str| -> Vec<String> {
            user_schema.attribute(name).unwrap().sub_attributes.iter().map(|s| s.name.clone()).collect()
        };
        assert_eq!(sub_names("emails"), ["value", "display", "type", "primary"]);
        assert_eq!(sub_names("groups"), ["value", "$ref", "display", "type"]);
        let manager = enterprise_user_schema().attribute("manager").unwrap().clone();
        assert_eq!(
            manager.sub_attributes.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(),
            ["value", "$ref", "displayName"]
        );
        assert_eq!(
            user_schema.attribute("phoneNumbers").unwrap().sub_attribute("type").unwrap().canonical_values,
            ["work", "home", "mobile", "fax", "pager", "other"]
        );
        for missing in ["nope", "name.nope", "urn:example:Other:userName", "userName.value"] {
            assert!(users.resolve(&AttrPath::parse(missing).unwrap()).is_none(), "{missing}");
        }
        let unqualified = users.resolve(&AttrPath::parse("employeeNumber").unwrap()).unwrap();
        assert!(unqualified.in_extension && unqualified.schema.id == enterprise);
        assert!(!users.resolve(&AttrPath::parse("meta.version").unwrap()).unwrap().in_extension);
    }

    #[test]
    fn restrict_keeps_what_is_listed() {
        let list = |items: &[&str]| items.iter().map(|i| i.to_string()).collect::<Vec<_>>();
        let shape = |schema: &Schema| -> Vec<String> {
            schema
                .attributes
                .iter()
                .map(|a| {
                    let subs: Vec<&str> = a.sub_attributes.iter().map(|s| s.name.as_str()).collect();
                    if subs.is_empty() { a.name.clone() } else { format!("{}({})", a.name, subs.join(",")) }
                })
                .collect()
        };
        let cases: [(&[&str], &[&str]); 5] = [
            (&["emails"], &["userName", "emails(value,display,type,primary)"]),
            (&["name.givenName", "NAME.familyName", "active"], &["userName", "name(familyName,givenName)", "active"]),
            (
                &["name.givenName", "name"],
                &["userName", "name(formatted,familyName,givenName,middleName,honorificPrefix,honorificSuffix)"],
            ),
            (
                &["id", "externalId", "meta", "urn:ietf:params:scim:schemas:core:2.0:User:displayName"],
                &["userName", "displayName"],
            ),
            (&[], &["userName"]),
        ];
        for (supported, expected) in cases {
            let restricted = restrict(&user_schema(), &list(supported)).unwrap();
            assert_eq!(shape(&restricted), expected, "{supported:?}");
            assert_eq!(restricted.id, USER_SCHEMA);
        }
        let department = restrict(&enterprise_user_schema(), &list(&["department", "manager.value"])).unwrap();
        assert_eq!(shape(&department), ["department", "manager(value)"]);
        for bad in [
            "nickname2",
            "name.nick",
            "emails[type eq \"work\"]",
            "urn:ietf:params:scim:schemas:core:2.0:Group:displayName",
        ] {
            let err = restrict(&user_schema(), &list(&[bad])).unwrap_err();
            assert!(matches!(&err, ScimError::InvalidPath { path, .. } if path == bad), "{bad}: {err}");
        }
    }

    #[test]
    fn custom_schema_defaults_and_characteristics() {
        let schema = custom_schema_from_json(&json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Schema"],
            "id": "urn:example:params:scim:schemas:extension:acme:2.0:User",
            "description": "Acme additions",
            "attributes": [
                { "name": "badge" },
                {
                    "name": "hireDate", "type": "dateTime", "required": true, "mutability": "immutable",
                    "returned": "request", "uniqueness": "global", "caseExact": true
                },
                {
                    "name": "sites", "type": "complex", "multiValued": true,
                    "subAttributes": [
                        { "name": "code", "canonicalValues": ["HQ", "LAB"] },
                        { "name": "$ref", "type": "reference", "referenceTypes": ["external"] }
                    ]
                }
            ],
            "meta": { "resourceType": "Schema" }
        }))
        .unwrap();
        assert_eq!(schema.name, "User");
        assert_eq!(schema.description, "Acme additions");
        let badge = schema.attribute("badge").unwrap();
        assert_eq!(
            (
                badge.kind,
                badge.multi_valued,
                badge.required,
                badge.case_exact,
                badge.mutability,
                badge.returned,
                badge.uniqueness
            ),
            (AttrType::String, false, false, false, Mutability::ReadWrite, Returned::Default, Uniqueness::None)
        );
        let hire = schema.attribute("HIREDATE").unwrap();
        assert_eq!(
            (hire.kind, hire.required, hire.case_exact, hire.mutability, hire.returned, hire.uniqueness),
            (AttrType::DateTime, true, true, Mutability::Immutable, Returned::Request, Uniqueness::Global)
        );
        let sites = schema.attribute("sites").unwrap();
        assert!(sites.multi_valued);
        assert_eq!(sites.sub_attribute("code").unwrap().canonical_values, ["HQ", "LAB"]);
        assert_eq!(sites.sub_attribute("$ref").unwrap().reference_types, ["external"]);

        let id = "urn:example:ext:1.0:Thing";
        let bad = [
            (json!({ "id": "acme", "attributes": [] }), "schema.id"),
            (json!({ "id": id, "attributes": [{ "name": "x", "type": "text" }] }), "schema"),
            (json!({ "id": id, "attributes": [{ "name": "x", "colour": "red" }] }), "schema"),
            (json!({ "id": id, "attributes": [{ "name": "1x" }] }), "urn:example:ext:1.0:Thing:1x"),
            (json!({ "id": id, "attributes": [{ "name": "x" }, { "name": "X" }] }), "urn:example:ext:1.0:Thing:X"),
            (json!({ "id": id, "attributes": [{ "name": "c", "type": "complex" }] }), "urn:example:ext:1.0:Thing:c"),
            (
                json!({ "id": id, "attributes": [{ "name": "s", "subAttributes": [{ "name": "a" }] }] }),
                "urn:example:ext:1.0:Thing:s",
            ),
            (
                json!({ "id": id, "attributes": [{ "name": "c", "type": "complex", "subAttributes": [
                    { "name": "d", "type": "complex", "subAttributes": [{ "name": "e" }] }
                ] }] }),
                "urn:example:ext:1.0:Thing:c.d",
            ),
        ];
        for (value, attribute) in bad {
            let err = custom_schema_from_json(&value).unwrap_err();
            assert!(matches!(&err, ScimError::InvalidValue { attribute: a, .. } if a == attribute), "{value}: {err}");
        }
    }
}
