//! The SCIM PATCH engine (RFC 7644 §3.5.2): a PatchOp message to checked operations, and operations to a new resource.
//!
//! [`parse_patch`] reads and checks the message against the resource type and returns the
//! operations in a normal form; [`apply_patch`] applies operations to a copy of a resource,
//! all or none. Everything static (paths, value types, readOnly, required) fails in
//! [`parse_patch`]; what depends on the stored resource (immutable values already set, a
//! filter that matches nothing) fails in [`apply_patch`].
//!
//! One step per file: `message.rs` reads the body, `target.rs` parses paths and resolves them
//! against the resource type, `prepare.rs` checks operations and puts them in normal form;
//! `apply.rs` edits a copy of the resource, choosing values with `select.rs`, doing runs of
//! operations in one pass with `runs.rs`, following the rules of `multi_valued.rs` and writing
//! the JSON through `resource.rs`; `members.rs` reads membership changes for the script hooks.
//!
//! Decisions where the RFC leaves room, or where real IdPs need leniency:
//! - Message errors (no PatchOp URN in `schemas`, no or empty `Operations`, an operation that
//!   is not an object, an unknown `op`) are `invalidSyntax` ("the request body message
//!   structure was invalid", §3.12). `Operations`, `op`, `path` and `value` are found in any
//!   case, and `op` is read in any case (Entra sends `Add`, `Replace`, `Remove`).
//! - More than [`MAX_OPERATIONS`] operations is `invalidValue` on `Operations`: `tooMany` is
//!   defined for filters that yield too many results, not for request size.
//! - A path that does not parse, or names nothing in the resource type, is `invalidPath`; a
//!   `[ ]` filter that does not parse or names something its attribute does not have is
//!   `invalidFilter` (§3.12 lists "PATCH (Path Filter)" for it). In a pathless value, a key
//!   naming nothing is `invalidValue`, as in a POST body.
//! - A missing `value` for add or replace is `invalidValue` ("a required value was missing").
//!   `replace` with `null` (or `[]` for a multi-valued attribute) unassigns the target, as
//!   RFC 7643 §2.5 makes them equivalent; `add` with `null` is `invalidValue`.
//! - `remove` without a path is `noTarget` (§3.5.2.2). A `remove` whose filter matches nothing
//!   succeeds without change: §3.5.2.2 says of its example "If the user was not a member of
//!   this group, no changes should be made to the resource, and a success response should be
//!   returned". A `replace` whose filter matches nothing is `noTarget` (§3.5.2.3).
//! - `add` with a filter that matches nothing (§3.5.2.1 is silent; Entra sends
//!   `emails[type eq "work"].value` for a user without a work email) adds a new value built
//!   from the filter's `eq` terms when the filter is an `and` of them; otherwise `noTarget`.
//! - Removing or unassigning a required or readOnly attribute, writing a readOnly one, or
//!   changing an immutable value that is already set is `mutability` (§3.5.2, §3.5.2.2).
//!   `id`, `meta` and `schemas` inside a pathless value are ignored, as IdPs echo them
//!   (Okta sends the group `id`); `schemas` is recomputed from the extensions present.
//!   readOnly sub-attributes inside a value object are ignored, as in a POST body (§3.3).
//! - `add` to a multi-valued attribute does not add a value that is already there (§3.5.2.1):
//!   two values are the same when their `value` sub-attributes are equal (as the schema
//!   compares them) and their `type`s are equal or one is absent; attributes without `value`
//!   compare whole. A repeated value is merged into the existing one, keeping immutable
//!   sub-attributes already set (so re-adding a member never fails over its `display`).
//! - A value marked `primary` by an operation makes the others lose `primary` (§3.5.2); one
//!   operation marking two values primary is `invalidValue`.
//! - `attr.sub` on a multi-valued attribute without a filter is accepted for `remove` (from
//!   every value) and refused for add and replace (`invalidPath`): which values are meant is
//!   unclear, and a filter says it.
//! - `remove` of a multi-valued attribute with a `value` removes only the values given (the
//!   form Entra sends to remove group members), matched as for duplicates above.
//! - Pathless add and replace are expanded into one operation per attribute, so every
//!   operation [`parse_patch`] returns has a path. Keys may be dotted (`name.givenName`),
//!   URN-qualified (`urn:…:User:department`) or a bare extension URN holding an object.
//! - Values are read leniently: `"True"`/`"False"` for booleans, any case for attribute
//!   names, a single value where an array is expected, a bare string for a singular complex
//!   attribute with a `value` sub-attribute (Entra's `manager`), and `""` or a `value` of
//!   `""`/null for such an attribute meaning "remove it".

mod apply;
mod members;
mod message;
mod multi_valued;
mod operation;
mod prepare;
mod resource;
mod runs;
mod select;
mod target;

#[cfg(test)]
mod fixtures;

pub use apply::apply_patch;
pub use members::{MemberChanges, member_changes};
pub use message::parse_patch;
#[cfg(test)]
pub(crate) use message::{MAX_OPERATIONS, PATCH_OP_SCHEMA};
pub use operation::{PatchOp, PatchPath};
pub use target::parse_patch_path;
