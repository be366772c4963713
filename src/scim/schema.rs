//! Schema definitions (RFC 7643 §2, §7): attribute characteristics and how paths resolve to them.

use serde::{Deserialize, Serialize};

use super::definitions::common_attribute;
use super::path::AttrPath;

/// The core User schema URN.
pub(crate) const USER_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
/// The Enterprise User extension URN.
pub(crate) const ENTERPRISE_USER_SCHEMA: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";
/// The core Group schema URN.
pub(crate) const GROUP_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";

/// The resource types the proxy serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ResourceKind {
    /// `/Users`: the core User schema and its extensions.
    User,
    /// `/Groups`: the core Group schema.
    Group,
}

impl ResourceKind {
    /// The resource type's name, as in `meta.resourceType` and `/ResourceTypes/{name}`.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::User => "User",
            Self::Group => "Group",
        }
    }

    /// The endpoint's path segment, without its slash.
    pub(crate) fn endpoint(self) -> &'static str {
        match self {
            Self::User => "Users",
            Self::Group => "Groups",
        }
    }

    /// The attribute that names a resource uniquely: `userName` or `displayName`.
    pub(crate) fn name_attribute(self) -> &'static str {
        match self {
            Self::User => "userName",
            Self::Group => "displayName",
        }
    }
}

/// An attribute's data type (RFC 7643 §2.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) enum AttrType {
    String,
    Boolean,
    Decimal,
    Integer,
    DateTime,
    Binary,
    Reference,
    Complex,
}

/// Whether and when an attribute may be written (RFC 7643 §7).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) enum Mutability {
    ReadOnly,
    ReadWrite,
    Immutable,
    WriteOnly,
}

/// When an attribute is returned in a response (RFC 7643 §7).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) enum Returned {
    Always,
    Never,
    Default,
    Request,
}

/// How unique an attribute's value is (RFC 7643 §7).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) enum Uniqueness {
    None,
    Server,
    Global,
}

/// One attribute definition with its characteristics, as published in `/Schemas`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Attribute {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: AttrType,
    pub multi_valued: bool,
    pub description: String,
    pub required: bool,
    pub case_exact: bool,
    pub mutability: Mutability,
    pub returned: Returned,
    pub uniqueness: Uniqueness,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub canonical_values: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub reference_types: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub sub_attributes: Vec<Attribute>,
}

impl Attribute {
    /// The sub-attribute called `name` (case-insensitive).
    pub(crate) fn sub_attribute(&self, name: &str) -> Option<&Attribute> {
        self.sub_attributes.iter().find(|a| a.name.eq_ignore_ascii_case(name))
    }
}

/// A schema: its URN and its attributes.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Schema {
    pub(crate) id: String,
    pub(crate) name: String,
    pub(crate) description: String,
    pub(crate) attributes: Vec<Attribute>,
}

impl Schema {
    /// The top-level attribute called `name` (case-insensitive).
    pub(crate) fn attribute(&self, name: &str) -> Option<&Attribute> {
        self.attributes.iter().find(|a| a.name.eq_ignore_ascii_case(name))
    }
}

/// A resource type (User, Group) with its core schema and its extensions.
#[derive(Debug, Clone, PartialEq)]
pub struct ResourceSchema {
    /// `User` or `Group`.
    pub name: String,
    /// `/Users` or `/Groups`.
    pub(crate) endpoint: String,
    pub(crate) description: String,
    pub(crate) core: Schema,
    /// Extension schemas, each with whether the extension is required.
    pub(crate) extensions: Vec<(Schema, bool)>,
}

/// Where a path landed in a resource schema.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Resolved<'a> {
    /// The schema the attribute belongs to.
    pub schema: &'a Schema,
    /// True when that schema is an extension (its attributes live under the URN key in JSON).
    pub in_extension: bool,
    /// The top-level attribute.
    pub attribute: &'a Attribute,
    /// The sub-attribute, when the path names one.
    pub sub: Option<&'a Attribute>,
}

impl<'a> Resolved<'a> {
    /// The definition of the attribute the path ends at.
    pub(crate) fn target(&self) -> &'a Attribute {
        self.sub.unwrap_or(self.attribute)
    }
}

impl ResourceSchema {
    /// Which resource type this is, from its core schema.
    pub(crate) fn kind(&self) -> ResourceKind {
        if self.core.id == GROUP_SCHEMA { ResourceKind::Group } else { ResourceKind::User }
    }

    /// Every schema of this resource type, core first.
    pub(crate) fn schemas(&self) -> impl Iterator<Item = &Schema> {
        std::iter::once(&self.core).chain(self.extensions.iter().map(|(s, _)| s))
    }

    /// The extension schema with this URN (case-insensitive).
    pub(crate) fn extension(&self, urn: &str) -> Option<&Schema> {
        self.extensions.iter().map(|(s, _)| s).find(|s| s.id.eq_ignore_ascii_case(urn))
    }

    /// A top-level attribute of the core schema, or one of the common attributes every
    /// resource has (`id`, `externalId`, `meta`, RFC 7643 §3.1), which live beside them in JSON.
    pub(crate) fn core_attribute(&self, name: &str) -> Option<&Attribute> {
        self.core.attribute(name).or_else(|| common_attribute(name))
    }

    /// Resolves a path to its attribute definitions; `None` when the schema has no such attribute.
    ///
    /// An unqualified name is looked up in the core schema first, then among the common
    /// attributes, then in the extensions (RFC 7644 §3.10 allows a client to omit the URN of
    /// a core attribute). Common attributes resolve as part of the core schema.
    pub(crate) fn resolve(&self, path: &AttrPath) -> Option<Resolved<'_>> {
        let (schema, in_extension, attribute) = match &path.urn {
            Some(urn) if urn.eq_ignore_ascii_case(&self.core.id) => {
                (&self.core, false, self.core_attribute(&path.name)?)
            }
            Some(urn) => {
                let ext = self.extension(urn)?;
                (ext, true, ext.attribute(&path.name)?)
            }
            None => match self.core_attribute(&path.name) {
                Some(attribute) => (&self.core, false, attribute),
                None => self.extensions.iter().find_map(|(s, _)| s.attribute(&path.name).map(|a| (s, true, a)))?,
            },
        };
        let sub = match &path.sub {
            Some(name) => Some(attribute.sub_attribute(name)?),
            None => None,
        };
        Some(Resolved { schema, in_extension, attribute, sub })
    }
}
