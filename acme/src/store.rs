//! In-memory storage of the Acme Directory: users, teams and memberships behind one lock.
//!
//! Everything here is plain synchronous Rust with no I/O, so the HTTP layer, the tests and
//! the benchmarks all go through the same rules (validation, uniqueness, cascades).

use std::collections::{BTreeMap, BTreeSet, HashMap, btree_map};
use std::fmt;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::{PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

/// Longest login accepted, in characters.
pub const MAX_LOGIN_LEN: usize = 64;
/// Longest value accepted for a team name, a team's external reference and every optional
/// text field of a user.
pub const MAX_TEXT_LEN: usize = 256;
/// Longest team description accepted, in characters.
pub const MAX_DESCRIPTION_LEN: usize = 1024;
/// Page size of user and team listings when the caller gives none.
pub const DEFAULT_PER_PAGE: u32 = 50;
/// Page size of member listings when the caller gives none.
pub const DEFAULT_MEMBERS_PER_PAGE: u32 = 100;

/// Validation failures keyed by field name, each with a short reason (`"is required"`).
pub type FieldErrors = BTreeMap<String, String>;

/// Why a store operation was refused; the HTTP layer turns each variant into one error JSON.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// No user has this id.
    #[error("user {0} does not exist")]
    UserNotFound(u64),
    /// No team has this id.
    #[error("team {0} does not exist")]
    TeamNotFound(u64),
    /// Another user already has this login (compared case-insensitively).
    #[error("login \"{0}\" is already taken")]
    LoginTaken(String),
    /// Another team already has this name (compared case-insensitively).
    #[error("team name \"{0}\" is already taken")]
    NameTaken(String),
    /// A membership operation named users that do not exist (sorted, without duplicates).
    #[error("{}", unknown_users_message(.0))]
    UnknownUsers(Vec<u64>),
    /// The user is not a member of the team.
    #[error("user {user_id} is not a member of team {team_id}")]
    NotAMember {
        /// The team that was asked about.
        team_id: u64,
        /// The user that is not in it.
        user_id: u64,
    },
    /// One or more fields hold values the directory does not accept.
    #[error("invalid fields: {}", field_list(.0))]
    Invalid(FieldErrors),
}

fn unknown_users_message(ids: &[u64]) -> String {
    match ids {
        [id] => format!("user {id} does not exist"),
        _ => {
            let list: Vec<String> = ids.iter().map(u64::to_string).collect();
            format!("users {} do not exist", list.join(", "))
        }
    }
}

fn field_list(fields: &FieldErrors) -> String {
    fields.keys().map(String::as_str).collect::<Vec<_>>().join(", ")
}

/// A password as sent by a client; its `Debug` output never shows the value.
#[derive(Clone, PartialEq, Eq)]
pub struct Password(String);

impl Password {
    /// Wraps a clear-text password received from a client.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    fn digest(&self) -> PasswordDigest {
        let mut hasher = DefaultHasher::new();
        self.0.hash(&mut hasher);
        PasswordDigest(hasher.finish())
    }
}

impl From<&str> for Password {
    fn from(value: &str) -> Self {
        Self::new(value)
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(<redacted>)")
    }
}

/// What the directory keeps of a password: a fake hash that lets tests check which password
/// was last set. It is not a password hash fit for real use; the directory is a demo.
#[derive(Clone, Copy, PartialEq, Eq)]
struct PasswordDigest(u64);

impl fmt::Debug for PasswordDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PasswordDigest(<redacted>)")
    }
}

/// A user account as the directory returns it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    /// Numeric id, assigned sequentially from 1 and never reused.
    pub id: u64,
    /// Unique login (case-insensitively), 1–64 characters of `[A-Za-z0-9._@-]`.
    pub login: String,
    /// Given name.
    pub first_name: Option<String>,
    /// Family name.
    pub last_name: Option<String>,
    /// Name to show in user interfaces.
    pub display_name: Option<String>,
    /// E-mail address.
    pub mail: Option<String>,
    /// Whether the account may sign in.
    pub enabled: bool,
    /// Department name.
    pub department: Option<String>,
    /// Job title.
    pub title: Option<String>,
    /// Employee number, free form.
    pub employee_no: Option<String>,
    /// Id of another user who is this user's manager.
    pub manager_id: Option<u64>,
    /// Phone number, free form.
    pub phone: Option<String>,
    /// Reference held by an external system (the SCIM mapping keeps `externalId` here).
    pub external_ref: Option<String>,
    /// When the user was created (RFC 3339, UTC, seconds).
    pub created_at: String,
    /// When the user was last changed (RFC 3339, UTC, seconds).
    pub updated_at: String,
    #[serde(skip)]
    password: Option<PasswordDigest>,
}

impl User {
    /// Whether a password has been set for this user.
    pub fn has_password(&self) -> bool {
        self.password.is_some()
    }

    /// Whether `candidate` is the password last set for this user.
    pub fn password_matches(&self, candidate: &str) -> bool {
        self.password == Some(Password::new(candidate).digest())
    }
}

/// The writable fields of a user, for a create or a full replacement.
///
/// Optional fields left `None` are stored as null; `password: None` on a replacement keeps
/// the current password, since clients cannot read it back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewUser {
    /// Login; an empty string fails validation with "is required".
    pub login: String,
    /// Given name.
    pub first_name: Option<String>,
    /// Family name.
    pub last_name: Option<String>,
    /// Name to show in user interfaces.
    pub display_name: Option<String>,
    /// E-mail address.
    pub mail: Option<String>,
    /// Whether the account may sign in.
    pub enabled: bool,
    /// Department name.
    pub department: Option<String>,
    /// Job title.
    pub title: Option<String>,
    /// Employee number.
    pub employee_no: Option<String>,
    /// Id of an existing user.
    pub manager_id: Option<u64>,
    /// Phone number.
    pub phone: Option<String>,
    /// Reference held by an external system.
    pub external_ref: Option<String>,
    /// New password, if one is to be set.
    pub password: Option<Password>,
}

impl Default for NewUser {
    fn default() -> Self {
        Self {
            login: String::new(),
            first_name: None,
            last_name: None,
            display_name: None,
            mail: None,
            enabled: true,
            department: None,
            title: None,
            employee_no: None,
            manager_id: None,
            phone: None,
            external_ref: None,
            password: None,
        }
    }
}

/// A partial update of a user: `None` leaves a field alone, `Some(None)` clears it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UserPatch {
    /// New login.
    pub login: Option<String>,
    /// New given name.
    pub first_name: Option<Option<String>>,
    /// New family name.
    pub last_name: Option<Option<String>>,
    /// New display name.
    pub display_name: Option<Option<String>>,
    /// New e-mail address.
    pub mail: Option<Option<String>>,
    /// New enabled flag.
    pub enabled: Option<bool>,
    /// New department.
    pub department: Option<Option<String>>,
    /// New job title.
    pub title: Option<Option<String>>,
    /// New employee number.
    pub employee_no: Option<Option<String>>,
    /// New manager.
    pub manager_id: Option<Option<u64>>,
    /// New phone number.
    pub phone: Option<Option<String>>,
    /// New external reference.
    pub external_ref: Option<Option<String>>,
    /// New password, or `Some(None)` to remove it.
    pub password: Option<Option<Password>>,
}

/// A team (the directory's notion of a group). Members are listed separately.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Team {
    /// Numeric id, assigned sequentially from 1 and never reused.
    pub id: u64,
    /// Unique name (case-insensitively).
    pub name: String,
    /// Free-form description.
    pub description: Option<String>,
    /// Reference held by an external system (the SCIM mapping keeps `externalId` here).
    pub external_ref: Option<String>,
    /// When the team was created (RFC 3339, UTC, seconds).
    pub created_at: String,
    /// When the team or its membership last changed (RFC 3339, UTC, seconds).
    pub updated_at: String,
    /// How many users are in the team.
    pub member_count: u64,
}

/// The writable fields of a team, for a create or a full replacement.
///
/// Optional fields left `None` are stored as null.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NewTeam {
    /// Name; blank fails validation with "is required".
    pub name: String,
    /// Free-form description.
    pub description: Option<String>,
    /// Reference held by an external system.
    pub external_ref: Option<String>,
}

/// A partial update of a team: `None` leaves a field alone, `Some(None)` clears it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TeamPatch {
    /// New name.
    pub name: Option<String>,
    /// New description.
    pub description: Option<Option<String>>,
    /// New external reference.
    pub external_ref: Option<Option<String>>,
}

/// One entry of a team's member listing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    /// The member's user id.
    pub user_id: u64,
    /// The member's login.
    pub login: String,
    /// The member's display name, if the user has one.
    pub display_name: Option<String>,
    /// When the user joined the team (RFC 3339, UTC, seconds).
    pub added_at: String,
}

/// Result of [`Store::add_member`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberAdded {
    /// The membership as it now stands.
    pub member: Member,
    /// `false` when the user was already a member (nothing changed).
    pub created: bool,
}

/// One page of a listing, in the directory's own envelope.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Page<T> {
    /// The items of this page, in id order.
    pub data: Vec<T>,
    /// Page number, from 1.
    pub page: u32,
    /// Page size used.
    pub per_page: u32,
    /// Number of items matching the query over all pages.
    pub total: u64,
}

/// Which page of an unfiltered listing to return.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageRequest {
    /// Page number, from 1 (0 is read as 1).
    pub page: u32,
    /// Page size.
    pub per_page: u32,
}

impl Default for PageRequest {
    fn default() -> Self {
        Self { page: 1, per_page: DEFAULT_MEMBERS_PER_PAGE }
    }
}

/// Search and paging of [`Store::list_users`]; filters that are set must all match.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserQuery {
    /// Page number, from 1 (0 is read as 1).
    pub page: u32,
    /// Page size.
    pub per_page: u32,
    /// Exact login, case-insensitive.
    pub login: Option<String>,
    /// Exact e-mail address, case-insensitive.
    pub mail: Option<String>,
    /// Exact external reference.
    pub external_ref: Option<String>,
    /// Exact employee number.
    pub employee_no: Option<String>,
    /// Exact department.
    pub department: Option<String>,
    /// Enabled flag.
    pub enabled: Option<bool>,
    /// Case-insensitive substring of login, first name, last name or e-mail address.
    pub q: Option<String>,
}

impl Default for UserQuery {
    fn default() -> Self {
        Self {
            page: 1,
            per_page: DEFAULT_PER_PAGE,
            login: None,
            mail: None,
            external_ref: None,
            employee_no: None,
            department: None,
            enabled: None,
            q: None,
        }
    }
}

/// Search and paging of [`Store::list_teams`]; filters that are set must all match.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TeamQuery {
    /// Page number, from 1 (0 is read as 1).
    pub page: u32,
    /// Page size.
    pub per_page: u32,
    /// Exact name, case-insensitive.
    pub name: Option<String>,
    /// Exact external reference.
    pub external_ref: Option<String>,
    /// Case-insensitive substring of the name.
    pub q: Option<String>,
    /// Only teams this user belongs to.
    pub member: Option<u64>,
}

impl Default for TeamQuery {
    fn default() -> Self {
        Self { page: 1, per_page: DEFAULT_PER_PAGE, name: None, external_ref: None, q: None, member: None }
    }
}

/// The directory's data. Every method takes the lock once and never across an `.await`.
#[derive(Debug, Default)]
pub struct Store {
    inner: RwLock<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    users: BTreeMap<u64, User>,
    /// Lowercased login → user id.
    logins: HashMap<String, u64>,
    /// Manager id → ids of the users that have it as `manager_id`.
    reports: HashMap<u64, BTreeSet<u64>>,
    /// User id → ids of the teams it belongs to.
    memberships: HashMap<u64, BTreeSet<u64>>,
    last_user_id: u64,
    teams: BTreeMap<u64, TeamEntry>,
    /// Lowercased team name → team id.
    team_names: HashMap<String, u64>,
    last_team_id: u64,
}

#[derive(Debug)]
struct TeamEntry {
    team: Team,
    /// User id → when it was added.
    members: BTreeMap<u64, String>,
}

impl TeamEntry {
    fn touch(&mut self, now: &str) {
        self.team.member_count = u64::try_from(self.members.len()).unwrap_or(u64::MAX);
        now.clone_into(&mut self.team.updated_at);
    }
}

impl Store {
    /// Creates an empty directory.
    pub fn new() -> Self {
        Self::default()
    }

    // A panic while the lock is held cannot leave the data half-written (writers only
    // mutate after every check has passed), so a poisoned lock is safe to keep using.
    fn read(&self) -> RwLockReadGuard<'_, Inner> {
        self.inner.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> RwLockWriteGuard<'_, Inner> {
        self.inner.write().unwrap_or_else(PoisonError::into_inner)
    }

    /// Number of users in the directory.
    pub fn user_count(&self) -> usize {
        self.read().users.len()
    }

    /// Number of teams in the directory.
    pub fn team_count(&self) -> usize {
        self.read().teams.len()
    }

    /// Creates a user with the next id; fails on invalid fields or a taken login.
    pub fn create_user(&self, new: NewUser) -> Result<User, StoreError> {
        let mut inner = self.write();
        let now = now();
        let id = inner.last_user_id + 1;
        let user = user_from(id, new, None, now.clone(), now);
        inner.check_user(&user)?;
        inner.last_user_id = id;
        inner.commit_user(user.clone());
        Ok(user)
    }

    /// Returns the user with this id, if any.
    pub fn get_user(&self, id: u64) -> Option<User> {
        self.read().users.get(&id).cloned()
    }

    /// Returns one page of the users matching every filter of `query`, in id order.
    pub fn list_users(&self, query: &UserQuery) -> Page<User> {
        let inner = self.read();
        let filter = UserFilter::new(query);
        if filter.is_empty() {
            return paginate_exact(inner.users.values(), query.page, query.per_page, User::clone);
        }
        // A login names at most one user: use the index instead of a scan.
        if let Some(login) = &query.login {
            let found = inner
                .logins
                .get(&login.to_ascii_lowercase())
                .and_then(|id| inner.users.get(id))
                .filter(|user| filter.matches(user));
            return paginate(found.into_iter(), query.page, query.per_page, User::clone);
        }
        let matching = inner.users.values().filter(|user| filter.matches(user));
        paginate(matching, query.page, query.per_page, User::clone)
    }

    /// Replaces every writable field of a user; keeps `created_at` (and the password when
    /// none is given).
    pub fn replace_user(&self, id: u64, new: NewUser) -> Result<User, StoreError> {
        let mut inner = self.write();
        let old = inner.users.get(&id).ok_or(StoreError::UserNotFound(id))?;
        let user = user_from(id, new, old.password, old.created_at.clone(), now());
        inner.check_user(&user)?;
        inner.commit_user(user.clone());
        Ok(user)
    }

    /// Changes only the fields set in `patch`; keeps `created_at`.
    pub fn patch_user(&self, id: u64, patch: UserPatch) -> Result<User, StoreError> {
        let mut inner = self.write();
        let old = inner.users.get(&id).ok_or(StoreError::UserNotFound(id))?;
        let mut user = old.clone();
        apply_user_patch(&mut user, patch);
        user.updated_at = now();
        inner.check_user(&user)?;
        inner.commit_user(user.clone());
        Ok(user)
    }

    /// Deletes a user, removes it from every team and clears `manager_id` wherever it was
    /// the manager.
    pub fn delete_user(&self, id: u64) -> Result<(), StoreError> {
        let mut inner = self.write();
        let user = inner.users.remove(&id).ok_or(StoreError::UserNotFound(id))?;
        let now = now();
        inner.logins.remove(&user.login.to_ascii_lowercase());
        if let Some(manager) = user.manager_id {
            inner.unlink_report(manager, id);
        }
        for report in inner.reports.remove(&id).unwrap_or_default() {
            if let Some(report) = inner.users.get_mut(&report) {
                report.manager_id = None;
                now.clone_into(&mut report.updated_at);
            }
        }
        for team_id in inner.memberships.remove(&id).unwrap_or_default() {
            if let Some(entry) = inner.teams.get_mut(&team_id) {
                entry.members.remove(&id);
                entry.touch(&now);
            }
        }
        Ok(())
    }

    /// Creates `n` users named `user00001`, `user00002`, … (numbered by their id) with
    /// plausible names, e-mail addresses and departments; returns their ids.
    pub fn seed_users(&self, n: usize) -> Vec<u64> {
        let mut inner = self.write();
        let now = now();
        let mut ids = Vec::with_capacity(n);
        for _ in 0..n {
            let id = inner.last_user_id + 1;
            inner.last_user_id = id;
            let user = seeded_user(&inner, id, &now);
            inner.commit_user(user);
            ids.push(id);
        }
        ids
    }

    /// Creates a team with the next id; fails on invalid fields or a taken name.
    pub fn create_team(&self, new: NewTeam) -> Result<Team, StoreError> {
        let mut inner = self.write();
        let now = now();
        let id = inner.last_team_id + 1;
        let NewTeam { name, description, external_ref } = new;
        let team =
            Team { id, name, description, external_ref, created_at: now.clone(), updated_at: now, member_count: 0 };
        inner.check_team(&team)?;
        inner.last_team_id = id;
        inner.team_names.insert(team.name.to_lowercase(), id);
        let entry = TeamEntry { team: team.clone(), members: BTreeMap::new() };
        inner.teams.insert(id, entry);
        Ok(team)
    }

    /// Returns the team with this id, if any.
    pub fn get_team(&self, id: u64) -> Option<Team> {
        self.read().teams.get(&id).map(|entry| entry.team.clone())
    }

    /// Returns one page of the teams matching every filter of `query`, in id order.
    pub fn list_teams(&self, query: &TeamQuery) -> Page<Team> {
        let inner = self.read();
        let q = query.q.as_deref().map(str::to_lowercase);
        let name = query.name.as_deref().map(str::to_lowercase);
        let external_ref = query.external_ref.as_ref();
        let matches = |team: &Team| {
            name.as_ref().is_none_or(|name| team.name.to_lowercase() == *name)
                && external_ref.is_none_or(|wanted| team.external_ref.as_ref() == Some(wanted))
                && q.as_ref().is_none_or(|q| contains_folded(&team.name, q))
        };
        let to_team = |entry: &TeamEntry| entry.team.clone();
        if let Some(user_id) = query.member {
            let teams = inner
                .memberships
                .get(&user_id)
                .into_iter()
                .flatten()
                .filter_map(|id| inner.teams.get(id))
                .filter(|entry| matches(&entry.team));
            return paginate(teams, query.page, query.per_page, to_team);
        }
        if name.is_none() && external_ref.is_none() && q.is_none() {
            return paginate_exact(inner.teams.values(), query.page, query.per_page, to_team);
        }
        let teams = inner.teams.values().filter(|entry| matches(&entry.team));
        paginate(teams, query.page, query.per_page, to_team)
    }

    /// Replaces every writable field of a team; keeps its members and `created_at`.
    pub fn replace_team(&self, id: u64, new: NewTeam) -> Result<Team, StoreError> {
        let NewTeam { name, description, external_ref } = new;
        let patch = TeamPatch { name: Some(name), description: Some(description), external_ref: Some(external_ref) };
        self.patch_team(id, patch)
    }

    /// Changes only the fields set in `patch`; keeps members and `created_at`.
    pub fn patch_team(&self, id: u64, patch: TeamPatch) -> Result<Team, StoreError> {
        let mut inner = self.write();
        let entry = inner.teams.get(&id).ok_or(StoreError::TeamNotFound(id))?;
        let mut team = entry.team.clone();
        let TeamPatch { name, description, external_ref } = patch;
        if let Some(name) = name {
            team.name = name;
        }
        for (field, change) in [(&mut team.description, description), (&mut team.external_ref, external_ref)] {
            if let Some(value) = change {
                *field = value;
            }
        }
        team.updated_at = now();
        inner.check_team(&team)?;
        let old_key = entry.team.name.to_lowercase();
        let new_key = team.name.to_lowercase();
        if old_key != new_key {
            inner.team_names.remove(&old_key);
            inner.team_names.insert(new_key, id);
        }
        if let Some(entry) = inner.teams.get_mut(&id) {
            entry.team = team.clone();
        }
        Ok(team)
    }

    /// Deletes a team and its memberships; the users themselves stay.
    pub fn delete_team(&self, id: u64) -> Result<(), StoreError> {
        let mut inner = self.write();
        let entry = inner.teams.remove(&id).ok_or(StoreError::TeamNotFound(id))?;
        inner.team_names.remove(&entry.team.name.to_lowercase());
        for user_id in entry.members.keys() {
            inner.leave(*user_id, id);
        }
        Ok(())
    }

    /// Adds a user to a team. Adding a current member changes nothing and reports
    /// `created: false`.
    pub fn add_member(&self, team_id: u64, user_id: u64) -> Result<MemberAdded, StoreError> {
        let mut inner = self.write();
        let Inner { users, teams, memberships, .. } = &mut *inner;
        let entry = teams.get_mut(&team_id).ok_or(StoreError::TeamNotFound(team_id))?;
        let user = users.get(&user_id).ok_or_else(|| StoreError::UnknownUsers(vec![user_id]))?;
        let now = now();
        let created = join(entry, memberships, user_id, &now);
        if created {
            entry.touch(&now);
        }
        let added_at = entry.members.get(&user_id).cloned().unwrap_or_default();
        Ok(MemberAdded { member: member_of(user, added_at), created })
    }

    /// Removes a user from a team.
    pub fn remove_member(&self, team_id: u64, user_id: u64) -> Result<(), StoreError> {
        let mut inner = self.write();
        let entry = inner.teams.get_mut(&team_id).ok_or(StoreError::TeamNotFound(team_id))?;
        if entry.members.remove(&user_id).is_none() {
            return Err(StoreError::NotAMember { team_id, user_id });
        }
        entry.touch(&now());
        inner.leave(user_id, team_id);
        Ok(())
    }

    /// Returns one page of a team's members, in user id order.
    pub fn list_members(&self, team_id: u64, page: PageRequest) -> Result<Page<Member>, StoreError> {
        let inner = self.read();
        let entry = inner.teams.get(&team_id).ok_or(StoreError::TeamNotFound(team_id))?;
        let members =
            entry.members.iter().filter_map(|(id, added_at)| inner.users.get(id).map(|user| (user, added_at)));
        let to_member = |(user, added_at): (&User, &String)| member_of(user, added_at.clone());
        Ok(paginate_known(members, entry.members.len(), page.page, page.per_page, to_member))
    }

    /// Makes `user_ids` the whole membership of a team. Every id is checked first: if any
    /// is unknown nothing changes. Members that stay keep their `added_at`.
    pub fn replace_members(&self, team_id: u64, user_ids: &[u64]) -> Result<Team, StoreError> {
        let mut inner = self.write();
        let wanted: BTreeSet<u64> = user_ids.iter().copied().collect();
        inner.check_members(team_id, &wanted)?;
        let now = now();
        let Inner { teams, memberships, .. } = &mut *inner;
        let entry = teams.get_mut(&team_id).ok_or(StoreError::TeamNotFound(team_id))?;
        let leaving: Vec<u64> = entry.members.keys().filter(|id| !wanted.contains(id)).copied().collect();
        let mut changed = !leaving.is_empty();
        for user_id in leaving {
            entry.members.remove(&user_id);
            remove_from_index(memberships, user_id, team_id);
        }
        for user_id in wanted {
            changed |= join(entry, memberships, user_id, &now);
        }
        if changed {
            entry.touch(&now);
        }
        Ok(entry.team.clone())
    }

    /// Adds many users to a team at once (for tests and benchmarks); all ids are checked
    /// first. Returns how many were not members before.
    pub fn seed_team_members(&self, team_id: u64, user_ids: &[u64]) -> Result<usize, StoreError> {
        let mut inner = self.write();
        let wanted: BTreeSet<u64> = user_ids.iter().copied().collect();
        inner.check_members(team_id, &wanted)?;
        let now = now();
        let Inner { teams, memberships, .. } = &mut *inner;
        let entry = teams.get_mut(&team_id).ok_or(StoreError::TeamNotFound(team_id))?;
        let added = wanted.into_iter().filter(|user_id| join(entry, memberships, *user_id, &now)).count();
        if added > 0 {
            entry.touch(&now);
        }
        Ok(added)
    }
}

impl Inner {
    /// Checks a user about to be stored (new or changed) against every rule.
    fn check_user(&self, user: &User) -> Result<(), StoreError> {
        let mut errors = FieldErrors::new();
        if let Some(reason) = login_problem(&user.login) {
            errors.insert("login".into(), reason.into());
        }
        let texts = [
            ("first_name", &user.first_name),
            ("last_name", &user.last_name),
            ("display_name", &user.display_name),
            ("mail", &user.mail),
            ("department", &user.department),
            ("title", &user.title),
            ("employee_no", &user.employee_no),
            ("phone", &user.phone),
            ("external_ref", &user.external_ref),
        ];
        for (field, value) in texts {
            if value.as_ref().is_some_and(|v| v.chars().count() > MAX_TEXT_LEN) {
                errors.insert(field.into(), format!("must be at most {MAX_TEXT_LEN} characters"));
            }
        }
        if user.mail.as_deref().is_some_and(|mail| !is_mail_address(mail)) && !errors.contains_key("mail") {
            errors.insert("mail".into(), "is not an e-mail address".into());
        }
        if let Some(manager) = user.manager_id {
            if manager == user.id {
                errors.insert("manager_id".into(), "cannot reference the user itself".into());
            } else if !self.users.contains_key(&manager) {
                errors.insert("manager_id".into(), "references no existing user".into());
            }
        }
        if !errors.is_empty() {
            return Err(StoreError::Invalid(errors));
        }
        match self.logins.get(&user.login.to_ascii_lowercase()) {
            Some(owner) if *owner != user.id => Err(StoreError::LoginTaken(user.login.clone())),
            _ => Ok(()),
        }
    }

    /// Stores a checked user (new or changed) and keeps the login and manager indexes in step.
    fn commit_user(&mut self, user: User) {
        let (id, key, manager) = (user.id, user.login.to_ascii_lowercase(), user.manager_id);
        if let Some(old) = self.users.insert(id, user) {
            let old_key = old.login.to_ascii_lowercase();
            if old_key != key {
                self.logins.remove(&old_key);
            }
            if let Some(old_manager) = old.manager_id.filter(|m| Some(*m) != manager) {
                self.unlink_report(old_manager, id);
            }
        }
        self.logins.insert(key, id);
        if let Some(manager) = manager {
            self.reports.entry(manager).or_default().insert(id);
        }
    }

    fn unlink_report(&mut self, manager: u64, user_id: u64) {
        remove_from_index(&mut self.reports, manager, user_id);
    }

    /// Drops `team_id` from the teams `user_id` belongs to.
    fn leave(&mut self, user_id: u64, team_id: u64) {
        remove_from_index(&mut self.memberships, user_id, team_id);
    }

    fn check_team(&self, team: &Team) -> Result<(), StoreError> {
        let mut errors = FieldErrors::new();
        let name_len = team.name.chars().count();
        if team.name.trim().is_empty() {
            errors.insert("name".into(), "is required".into());
        } else if name_len > MAX_TEXT_LEN {
            errors.insert("name".into(), format!("must be at most {MAX_TEXT_LEN} characters"));
        }
        let description_len = team.description.as_ref().map_or(0, |d| d.chars().count());
        if description_len > MAX_DESCRIPTION_LEN {
            let reason = format!("must be at most {MAX_DESCRIPTION_LEN} characters");
            errors.insert("description".into(), reason);
        }
        if team.external_ref.as_ref().is_some_and(|r| r.chars().count() > MAX_TEXT_LEN) {
            errors.insert("external_ref".into(), format!("must be at most {MAX_TEXT_LEN} characters"));
        }
        if !errors.is_empty() {
            return Err(StoreError::Invalid(errors));
        }
        match self.team_names.get(&team.name.to_lowercase()) {
            Some(owner) if *owner != team.id => Err(StoreError::NameTaken(team.name.clone())),
            _ => Ok(()),
        }
    }

    /// Checks that the team exists and that every user does, before any membership change.
    fn check_members(&self, team_id: u64, user_ids: &BTreeSet<u64>) -> Result<(), StoreError> {
        if !self.teams.contains_key(&team_id) {
            return Err(StoreError::TeamNotFound(team_id));
        }
        let unknown: Vec<u64> = user_ids.iter().filter(|id| !self.users.contains_key(id)).copied().collect();
        if unknown.is_empty() { Ok(()) } else { Err(StoreError::UnknownUsers(unknown)) }
    }
}

/// Adds a user to a team unless it is a member already; returns whether it was added.
fn join(entry: &mut TeamEntry, memberships: &mut HashMap<u64, BTreeSet<u64>>, user_id: u64, now: &str) -> bool {
    match entry.members.entry(user_id) {
        btree_map::Entry::Occupied(_) => false,
        btree_map::Entry::Vacant(slot) => {
            slot.insert(now.to_owned());
            memberships.entry(user_id).or_default().insert(entry.team.id);
            true
        }
    }
}

fn remove_from_index(index: &mut HashMap<u64, BTreeSet<u64>>, key: u64, value: u64) {
    if let Some(set) = index.get_mut(&key) {
        set.remove(&value);
        if set.is_empty() {
            index.remove(&key);
        }
    }
}

fn user_from(
    id: u64,
    new: NewUser,
    kept_password: Option<PasswordDigest>,
    created_at: String,
    updated_at: String,
) -> User {
    User {
        id,
        login: new.login,
        first_name: new.first_name,
        last_name: new.last_name,
        display_name: new.display_name,
        mail: new.mail,
        enabled: new.enabled,
        department: new.department,
        title: new.title,
        employee_no: new.employee_no,
        manager_id: new.manager_id,
        phone: new.phone,
        external_ref: new.external_ref,
        created_at,
        updated_at,
        password: new.password.map(|p| p.digest()).or(kept_password),
    }
}

fn apply_user_patch(user: &mut User, patch: UserPatch) {
    let UserPatch {
        login,
        first_name,
        last_name,
        display_name,
        mail,
        enabled,
        department,
        title,
        employee_no,
        manager_id,
        phone,
        external_ref,
        password,
    } = patch;
    if let Some(login) = login {
        user.login = login;
    }
    if let Some(enabled) = enabled {
        user.enabled = enabled;
    }
    let optional = [
        (&mut user.first_name, first_name),
        (&mut user.last_name, last_name),
        (&mut user.display_name, display_name),
        (&mut user.mail, mail),
        (&mut user.department, department),
        (&mut user.title, title),
        (&mut user.employee_no, employee_no),
        (&mut user.phone, phone),
        (&mut user.external_ref, external_ref),
    ];
    for (field, change) in optional {
        if let Some(value) = change {
            *field = value;
        }
    }
    if let Some(manager_id) = manager_id {
        user.manager_id = manager_id;
    }
    if let Some(password) = password {
        user.password = password.map(|p| p.digest());
    }
}

fn member_of(user: &User, added_at: String) -> Member {
    Member { user_id: user.id, login: user.login.clone(), display_name: user.display_name.clone(), added_at }
}

/// Why a login is refused, or `None` when it is acceptable.
fn login_problem(login: &str) -> Option<&'static str> {
    if login.is_empty() {
        Some("is required")
    } else if login.len() > MAX_LOGIN_LEN {
        // Every allowed character is one byte, so bytes count characters here.
        Some("must be at most 64 characters")
    } else if !login.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'@' | b'-')) {
        Some("may only contain letters, digits, '.', '_', '@' and '-'")
    } else {
        None
    }
}

/// A deliberately loose check, like the in-house apps it imitates: `local@domain`.
fn is_mail_address(mail: &str) -> bool {
    match mail.split_once('@') {
        Some((local, domain)) => {
            !local.is_empty() && !domain.is_empty() && !domain.contains('@') && !mail.chars().any(char::is_whitespace)
        }
        None => false,
    }
}

/// Filters of a [`UserQuery`], prepared once per listing.
struct UserFilter<'a> {
    query: &'a UserQuery,
    q: Option<String>,
}

impl<'a> UserFilter<'a> {
    fn new(query: &'a UserQuery) -> Self {
        Self { query, q: query.q.as_deref().map(str::to_lowercase) }
    }

    fn is_empty(&self) -> bool {
        let q = self.query;
        q.login.is_none()
            && q.mail.is_none()
            && q.external_ref.is_none()
            && q.employee_no.is_none()
            && q.department.is_none()
            && q.enabled.is_none()
            && q.q.is_none()
    }

    fn matches(&self, user: &User) -> bool {
        let query = self.query;
        let exact =
            |wanted: &Option<String>, value: &Option<String>| wanted.as_ref().is_none_or(|w| value.as_ref() == Some(w));
        query.login.as_ref().is_none_or(|w| eq_folded(&user.login, w))
            && query.mail.as_ref().is_none_or(|w| user.mail.as_deref().is_some_and(|m| eq_folded(m, w)))
            && exact(&query.external_ref, &user.external_ref)
            && exact(&query.employee_no, &user.employee_no)
            && exact(&query.department, &user.department)
            && query.enabled.is_none_or(|e| user.enabled == e)
            && self.q.as_ref().is_none_or(|q| {
                contains_folded(&user.login, q)
                    || [&user.first_name, &user.last_name, &user.mail]
                        .into_iter()
                        .flatten()
                        .any(|value| contains_folded(value, q))
            })
    }
}

/// Case-insensitive equality that avoids allocating for ASCII text.
fn eq_folded(a: &str, b: &str) -> bool {
    if a.is_ascii() && b.is_ascii() { a.eq_ignore_ascii_case(b) } else { a.to_lowercase() == b.to_lowercase() }
}

/// Whether `haystack` contains `needle_lower` (already lowercased), ignoring case.
fn contains_folded(haystack: &str, needle_lower: &str) -> bool {
    if needle_lower.is_empty() {
        return true;
    }
    if needle_lower.is_ascii() {
        let needle = needle_lower.as_bytes();
        haystack.as_bytes().windows(needle.len()).any(|window| window.eq_ignore_ascii_case(needle))
    } else {
        haystack.to_lowercase().contains(needle_lower)
    }
}

fn page_bounds(page: u32, per_page: u32) -> (u32, usize, usize) {
    let page = page.max(1);
    let per_page_len = usize::try_from(per_page).unwrap_or(usize::MAX);
    let start = usize::try_from(page - 1).unwrap_or(usize::MAX).saturating_mul(per_page_len);
    (page, start, per_page_len)
}

/// Pages through filtered items, counting all of them for `total`.
fn paginate<I, T, F>(items: I, page: u32, per_page: u32, mut build: F) -> Page<T>
where
    I: Iterator,
    F: FnMut(I::Item) -> T,
{
    let (page, start, len) = page_bounds(page, per_page);
    let end = start.saturating_add(len);
    let mut data = Vec::new();
    let mut total: usize = 0;
    for item in items {
        if (start..end).contains(&total) {
            data.push(build(item));
        }
        total += 1;
    }
    Page { data, page, per_page, total: u64::try_from(total).unwrap_or(u64::MAX) }
}

/// Pages through all items of a collection whose size is known, building only the page.
fn paginate_exact<I, T, F>(items: I, page: u32, per_page: u32, build: F) -> Page<T>
where
    I: ExactSizeIterator,
    F: FnMut(I::Item) -> T,
{
    let total = items.len();
    paginate_known(items, total, page, per_page, build)
}

fn paginate_known<I, T, F>(items: I, total: usize, page: u32, per_page: u32, build: F) -> Page<T>
where
    I: Iterator,
    F: FnMut(I::Item) -> T,
{
    let (page, start, len) = page_bounds(page, per_page);
    let data: Vec<T> = items.skip(start).take(len).map(build).collect();
    Page { data, page, per_page, total: u64::try_from(total).unwrap_or(u64::MAX) }
}

/// Current time as the directory writes it: RFC 3339, UTC, whole seconds.
fn now() -> String {
    let t = OffsetDateTime::now_utc();
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

const FIRST_NAMES: [&str; 24] = [
    "Ada", "Barbara", "Carlos", "Dana", "Emeka", "Fatima", "Grace", "Hiro", "Ines", "Jonas", "Kavya", "Liam", "Mei",
    "Nils", "Olga", "Pedro", "Quinn", "Rosa", "Sven", "Tariq", "Ursula", "Victor", "Wanda", "Yusuf",
];

const LAST_NAMES: [&str; 20] = [
    "Jensen",
    "Okafor",
    "Garcia",
    "Nakamura",
    "Smith",
    "Kowalski",
    "Haddad",
    "Larsen",
    "Moreau",
    "Schmidt",
    "Rossi",
    "Novak",
    "Fischer",
    "Silva",
    "Kim",
    "Patel",
    "Andersson",
    "Dubois",
    "Murphy",
    "Weber",
];

const DEPARTMENTS: [&str; 8] =
    ["Engineering", "Sales", "Marketing", "Finance", "Human Resources", "Support", "Legal", "Operations"];

const TITLES: [&str; 6] = ["Associate", "Specialist", "Analyst", "Engineer", "Team Lead", "Manager"];

/// Builds the seeded user with this id; the login is made unique if someone took it.
fn seeded_user(inner: &Inner, id: u64, now: &str) -> User {
    let n = usize::try_from(id).unwrap_or(usize::MAX);
    let first = FIRST_NAMES[n % FIRST_NAMES.len()];
    let last = LAST_NAMES[(n / FIRST_NAMES.len()) % LAST_NAMES.len()];
    let mut login = format!("user{id:05}");
    let mut suffix = 1;
    while inner.logins.contains_key(&login) {
        login = format!("user{id:05}.{suffix}");
        suffix += 1;
    }
    User {
        id,
        login,
        first_name: Some(first.to_owned()),
        last_name: Some(last.to_owned()),
        display_name: Some(format!("{first} {last}")),
        mail: Some(format!("{}.{}{id}@acme.example", first.to_ascii_lowercase(), last.to_ascii_lowercase())),
        enabled: true,
        department: Some(DEPARTMENTS[n % DEPARTMENTS.len()].to_owned()),
        title: Some(TITLES[(n / DEPARTMENTS.len()) % TITLES.len()].to_owned()),
        employee_no: Some(format!("E{id:06}")),
        manager_id: None,
        phone: Some(format!("+1 555 {:04}", id % 10_000)),
        external_ref: None,
        created_at: now.to_owned(),
        updated_at: now.to_owned(),
        password: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn new_user(login: &str) -> NewUser {
        NewUser { login: login.to_owned(), ..NewUser::default() }
    }

    fn new_team(name: &str) -> NewTeam {
        NewTeam { name: name.to_owned(), ..NewTeam::default() }
    }

    fn invalid_fields(err: StoreError) -> FieldErrors {
        match err {
            StoreError::Invalid(fields) => fields,
            other => panic!("expected a validation error, got {other:?}"),
        }
    }

    #[test]
    fn ids_are_sequential_from_one_and_never_reused() {
        let store = Store::new();
        let a = store.create_user(new_user("a")).unwrap();
        let b = store.create_user(new_user("b")).unwrap();
        assert_eq!((a.id, b.id), (1, 2));
        store.delete_user(2).unwrap();
        assert_eq!(store.create_user(new_user("c")).unwrap().id, 3);
        let t = store.create_team(new_team("Ops")).unwrap();
        assert_eq!(t.id, 1);
    }

    #[test]
    fn created_user_has_defaults_and_timestamps() {
        let store = Store::new();
        let user = store.create_user(new_user("bjensen")).unwrap();
        assert!(user.enabled);
        assert_eq!(user.created_at, user.updated_at);
        assert_eq!(user.created_at.len(), "2026-11-29T21:40:00Z".len());
        assert!(user.created_at.ends_with('Z'));
        assert!(time::OffsetDateTime::parse(&user.created_at, &time::format_description::well_known::Rfc3339).is_ok());
    }

    #[test]
    fn login_is_unique_case_insensitively() {
        let store = Store::new();
        store.create_user(new_user("BJensen")).unwrap();
        let err = store.create_user(new_user("bjensen")).unwrap_err();
        assert_eq!(err, StoreError::LoginTaken("bjensen".into()));
        assert_eq!(err.to_string(), "login \"bjensen\" is already taken");
        // A user may change the case of its own login.
        let patch = UserPatch { login: Some("bjensen".into()), ..UserPatch::default() };
        assert_eq!(store.patch_user(1, patch).unwrap().login, "bjensen");
        // Renaming frees the old login.
        store.replace_user(1, new_user("barbara")).unwrap();
        assert!(store.create_user(new_user("BJENSEN")).is_ok());
        let taken = store.replace_user(2, new_user("Barbara")).unwrap_err();
        assert_eq!(taken, StoreError::LoginTaken("Barbara".into()));
    }

    #[test]
    fn validation_reports_every_bad_field() {
        let store = Store::new();
        let err = store
            .create_user(NewUser {
                mail: Some("not-a-mail".into()),
                manager_id: Some(99),
                phone: Some("9".repeat(MAX_TEXT_LEN + 1)),
                ..NewUser::default()
            })
            .unwrap_err();
        assert_eq!(err.to_string(), "invalid fields: login, mail, manager_id, phone");
        let fields = invalid_fields(err);
        assert_eq!(fields["login"], "is required");
        assert_eq!(fields["mail"], "is not an e-mail address");
        assert_eq!(fields["manager_id"], "references no existing user");
        assert_eq!(fields["phone"], "must be at most 256 characters");
        assert_eq!(store.user_count(), 0);
    }

    #[test]
    fn login_rules() {
        let store = Store::new();
        for bad in ["bad login", "ünïcode", &"x".repeat(65), "a/b"] {
            let fields = invalid_fields(store.create_user(new_user(bad)).unwrap_err());
            assert!(fields.contains_key("login"), "{bad:?} was accepted");
        }
        for good in ["a", "b.jensen@example.com", "x_y-z.1", &"x".repeat(64)] {
            assert!(store.create_user(new_user(good)).is_ok(), "{good:?} was refused");
        }
    }

    #[test]
    fn mail_rules() {
        for (mail, ok) in [
            ("a@b", true),
            ("bjensen@example.com", true),
            ("@example.com", false),
            ("bjensen@", false),
            ("a@b@c", false),
            ("b jensen@example.com", false),
            ("example.com", false),
        ] {
            assert_eq!(is_mail_address(mail), ok, "{mail}");
        }
    }

    #[test]
    fn manager_cannot_be_self() {
        let store = Store::new();
        store.create_user(new_user("a")).unwrap();
        let patch = UserPatch { manager_id: Some(Some(1)), ..UserPatch::default() };
        let fields = invalid_fields(store.patch_user(1, patch).unwrap_err());
        assert_eq!(fields["manager_id"], "cannot reference the user itself");
    }

    #[test]
    fn replace_clears_absent_fields_and_keeps_created_at() {
        let store = Store::new();
        let created = store
            .create_user(NewUser {
                login: "bjensen".into(),
                first_name: Some("Barbara".into()),
                enabled: false,
                password: Some("s3cret".into()),
                ..NewUser::default()
            })
            .unwrap();
        let replaced = store.replace_user(1, new_user("bjensen")).unwrap();
        assert_eq!(replaced.first_name, None);
        assert!(replaced.enabled);
        assert_eq!(replaced.created_at, created.created_at);
        // The password cannot be read back, so a replacement without one keeps it.
        assert!(replaced.password_matches("s3cret"));
        assert_eq!(store.replace_user(7, new_user("x")).unwrap_err(), StoreError::UserNotFound(7));
    }

    #[test]
    fn patch_changes_only_given_fields_and_null_clears() {
        let store = Store::new();
        store
            .create_user(NewUser {
                login: "bjensen".into(),
                first_name: Some("Barbara".into()),
                last_name: Some("Jensen".into()),
                password: Some("old".into()),
                ..NewUser::default()
            })
            .unwrap();
        let patched = store
            .patch_user(
                1,
                UserPatch {
                    first_name: Some(None),
                    title: Some(Some("CTO".into())),
                    enabled: Some(false),
                    password: Some(Some("new".into())),
                    ..UserPatch::default()
                },
            )
            .unwrap();
        assert_eq!(patched.first_name, None);
        assert_eq!(patched.last_name.as_deref(), Some("Jensen"));
        assert_eq!(patched.title.as_deref(), Some("CTO"));
        assert!(!patched.enabled);
        assert!(patched.password_matches("new"));
        assert!(!patched.password_matches("old"));
        let cleared = store.patch_user(1, UserPatch { password: Some(None), ..UserPatch::default() }).unwrap();
        assert!(!cleared.has_password());
        let bad = UserPatch { mail: Some(Some("nope".into())), ..UserPatch::default() };
        assert!(matches!(store.patch_user(1, bad), Err(StoreError::Invalid(_))));
        assert_eq!(store.get_user(1).unwrap().mail, None, "a refused patch changes nothing");
    }

    #[test]
    fn password_is_never_serialized_or_debug_printed() {
        let store = Store::new();
        let user = store
            .create_user(NewUser { login: "a".into(), password: Some("hunter2".into()), ..NewUser::default() })
            .unwrap();
        let json = serde_json::to_string(&user).unwrap();
        assert!(!json.contains("password") && !json.contains("hunter2"), "{json}");
        assert!(!format!("{user:?}").contains("hunter2"));
        let new = NewUser { password: Some("hunter2".into()), ..NewUser::default() };
        assert!(!format!("{new:?}").contains("hunter2"));
    }

    fn seeded_directory() -> Store {
        let store = Store::new();
        let people = [
            ("bjensen", "Barbara", "Jensen", "bjensen@example.com", "Sales", true),
            ("jsmith", "John", "Smith", "John.Smith@Example.com", "Engineering", true),
            ("asmithers", "Anna", "Smithers", "anna@example.com", "Engineering", false),
            ("kowalski", "Kim", "Kowalski", "kim@example.com", "Sales", true),
        ];
        for (i, (login, first, last, mail, department, enabled)) in people.into_iter().enumerate() {
            store
                .create_user(NewUser {
                    login: login.into(),
                    first_name: Some(first.into()),
                    last_name: Some(last.into()),
                    mail: Some(mail.into()),
                    department: Some(department.into()),
                    enabled,
                    employee_no: Some(format!("E{i}")),
                    external_ref: Some(format!("ext-{login}")),
                    ..NewUser::default()
                })
                .unwrap();
        }
        store
    }

    fn ids(page: &Page<User>) -> Vec<u64> {
        page.data.iter().map(|u| u.id).collect()
    }

    #[test]
    fn search_parameters_are_anded() {
        let store = seeded_directory();
        type Case = (fn(&mut UserQuery), &'static [u64]);
        let cases: [Case; 12] = [
            (|_| {}, &[1, 2, 3, 4]),
            (|q| q.login = Some("BJENSEN".into()), &[1]),
            (|q| q.login = Some("nobody".into()), &[]),
            (|q| q.mail = Some("john.smith@example.COM".into()), &[2]),
            (|q| q.department = Some("Engineering".into()), &[2, 3]),
            (|q| q.department = Some("engineering".into()), &[]),
            (|q| q.external_ref = Some("ext-kowalski".into()), &[4]),
            (|q| q.employee_no = Some("E0".into()), &[1]),
            (|q| q.q = Some("SMITH".into()), &[2, 3]),
            (|q| q.q = Some("kim@".into()), &[4]),
            (
                |q| {
                    q.department = Some("Engineering".into());
                    q.enabled = Some(true);
                },
                &[2],
            ),
            (
                |q| {
                    q.login = Some("bjensen".into());
                    q.department = Some("Engineering".into());
                },
                &[],
            ),
        ];
        for (set, expected) in cases {
            let mut query = UserQuery::default();
            set(&mut query);
            let page = store.list_users(&query);
            assert_eq!(ids(&page), expected, "{query:?}");
            assert_eq!(page.total, expected.len() as u64, "{query:?}");
        }
    }

    #[test]
    fn pagination_edges() {
        let store = Store::new();
        store.seed_users(5);
        let page = |page, per_page| store.list_users(&UserQuery { page, per_page, ..UserQuery::default() });
        assert_eq!(ids(&page(1, 2)), [1, 2]);
        assert_eq!(ids(&page(3, 2)), [5]);
        assert_eq!(ids(&page(4, 2)), Vec::<u64>::new());
        assert_eq!(page(4, 2).total, 5);
        assert_eq!(ids(&page(0, 2)), [1, 2], "page 0 reads as page 1");
        assert_eq!(page(0, 2).page, 1);
        assert_eq!(ids(&page(1, 0)), Vec::<u64>::new());
        assert_eq!(ids(&page(u32::MAX, u32::MAX)), Vec::<u64>::new());
        assert_eq!(ids(&page(1, u32::MAX)).len(), 5);
        // Filtered listings page the same way.
        let filtered =
            store.list_users(&UserQuery { page: 2, per_page: 1, q: Some("user0000".into()), ..UserQuery::default() });
        assert_eq!((ids(&filtered), filtered.total), (vec![2], 5));
    }

    #[test]
    fn delete_cascades_to_teams_and_managers() {
        let store = Store::new();
        let boss = store.create_user(new_user("boss")).unwrap();
        let report = store
            .create_user(NewUser { login: "report".into(), manager_id: Some(boss.id), ..NewUser::default() })
            .unwrap();
        let team = store.create_team(new_team("Leads")).unwrap();
        store.add_member(team.id, boss.id).unwrap();
        store.add_member(team.id, report.id).unwrap();

        store.delete_user(boss.id).unwrap();

        assert_eq!(store.get_user(boss.id), None);
        assert_eq!(store.get_user(report.id).unwrap().manager_id, None);
        assert_eq!(store.get_team(team.id).unwrap().member_count, 1);
        let members = store.list_members(team.id, PageRequest::default()).unwrap();
        assert_eq!(members.data.iter().map(|m| m.user_id).collect::<Vec<_>>(), [report.id]);
        let teams_of_boss = store.list_teams(&TeamQuery { member: Some(boss.id), ..TeamQuery::default() });
        assert_eq!(teams_of_boss.total, 0);
        assert_eq!(store.delete_user(boss.id), Err(StoreError::UserNotFound(boss.id)));
        // The login is free again.
        assert!(store.create_user(new_user("boss")).is_ok());
    }

    #[test]
    fn changing_manager_moves_the_report() {
        let store = Store::new();
        store.seed_users(3);
        let set_manager = |manager| UserPatch { manager_id: Some(Some(manager)), ..UserPatch::default() };
        store.patch_user(3, set_manager(1)).unwrap();
        store.patch_user(3, set_manager(2)).unwrap();
        store.delete_user(1).unwrap();
        assert_eq!(store.get_user(3).unwrap().manager_id, Some(2));
        store.delete_user(2).unwrap();
        assert_eq!(store.get_user(3).unwrap().manager_id, None);
    }

    #[test]
    fn team_names_are_unique_case_insensitively_and_validated() {
        let store = Store::new();
        store.create_team(new_team("Engineering")).unwrap();
        let err = store.create_team(new_team("ENGINEERING")).unwrap_err();
        assert_eq!(err, StoreError::NameTaken("ENGINEERING".into()));
        let fields = invalid_fields(store.create_team(new_team("  ")).unwrap_err());
        assert_eq!(fields["name"], "is required");
        let renamed = store
            .patch_team(
                1,
                TeamPatch {
                    name: Some("engineering".into()),
                    description: Some(Some("builds things".into())),
                    ..TeamPatch::default()
                },
            )
            .unwrap();
        assert_eq!(renamed.name, "engineering");
        let replaced = store.replace_team(1, new_team("Eng")).unwrap();
        assert_eq!(replaced.description, None);
        assert!(store.create_team(new_team("Engineering")).is_ok());
    }

    #[test]
    fn team_external_ref_is_set_replaced_patched_and_validated() {
        let store = Store::new();
        let with_ref = |name: &str, external_ref: &str| NewTeam {
            name: name.to_owned(),
            external_ref: Some(external_ref.to_owned()),
            ..NewTeam::default()
        };
        let created = store.create_team(with_ref("Ops", "ext-1")).unwrap();
        assert_eq!(created.external_ref.as_deref(), Some("ext-1"));
        let renamed = store.patch_team(1, TeamPatch { name: Some("Ops2".into()), ..TeamPatch::default() }).unwrap();
        assert_eq!(renamed.external_ref.as_deref(), Some("ext-1"), "an absent field is left alone");
        let patched = store
            .patch_team(1, TeamPatch { external_ref: Some(Some("ext-2".into())), ..TeamPatch::default() })
            .unwrap();
        assert_eq!(patched.external_ref.as_deref(), Some("ext-2"));
        let cleared = store.patch_team(1, TeamPatch { external_ref: Some(None), ..TeamPatch::default() }).unwrap();
        assert_eq!(cleared.external_ref, None);
        store.replace_team(1, with_ref("Ops", "ext-3")).unwrap();
        let replaced = store.replace_team(1, new_team("Ops")).unwrap();
        assert_eq!(replaced.external_ref, None, "a replacement without it clears it");

        let too_long = "r".repeat(MAX_TEXT_LEN + 1);
        let fields = invalid_fields(store.create_team(with_ref("Long", &too_long)).unwrap_err());
        assert_eq!(fields["external_ref"], "must be at most 256 characters");
        let patch = TeamPatch { external_ref: Some(Some(too_long)), ..TeamPatch::default() };
        assert!(matches!(store.patch_team(1, patch), Err(StoreError::Invalid(_))));
        assert_eq!(store.get_team(1).unwrap().external_ref, None, "a refused patch changes nothing");
        assert!(store.create_team(with_ref("Long", &"r".repeat(MAX_TEXT_LEN))).is_ok());
    }

    #[test]
    fn team_listing_filters() {
        let store = Store::new();
        store.seed_users(2);
        for (name, external_ref) in [("Engineering", "ext-a"), ("Sales Engineering", "ext-b"), ("Sales", "ext-a")] {
            store.create_team(NewTeam { external_ref: Some(external_ref.into()), ..new_team(name) }).unwrap();
        }
        store.add_member(2, 1).unwrap();
        store.add_member(3, 1).unwrap();
        let list = |query: TeamQuery| -> Vec<u64> { store.list_teams(&query).data.iter().map(|t| t.id).collect() };
        assert_eq!(list(TeamQuery::default()), [1, 2, 3]);
        let by_name = TeamQuery { name: Some("sales".into()), ..TeamQuery::default() };
        assert_eq!(list(by_name), [3]);
        let by_q = TeamQuery { q: Some("ENGIN".into()), ..TeamQuery::default() };
        assert_eq!(list(by_q), [1, 2]);
        let by_member = TeamQuery { member: Some(1), ..TeamQuery::default() };
        assert_eq!(list(by_member), [2, 3]);
        let by_member_and_q = TeamQuery { member: Some(1), q: Some("engin".into()), ..TeamQuery::default() };
        assert_eq!(list(by_member_and_q), [2]);
        let by_other = TeamQuery { member: Some(2), ..TeamQuery::default() };
        assert_eq!(list(by_other), Vec::<u64>::new());
        let by_ref = TeamQuery { external_ref: Some("ext-a".into()), ..TeamQuery::default() };
        assert_eq!(list(by_ref), [1, 3]);
        let by_ref_exact = TeamQuery { external_ref: Some("EXT-A".into()), ..TeamQuery::default() };
        assert_eq!(list(by_ref_exact), Vec::<u64>::new(), "external_ref is compared exactly");
        let by_ref_and_member =
            TeamQuery { external_ref: Some("ext-a".into()), member: Some(1), ..TeamQuery::default() };
        assert_eq!(list(by_ref_and_member), [3]);
        let by_ref_and_q =
            TeamQuery { external_ref: Some("ext-a".into()), q: Some("engin".into()), ..TeamQuery::default() };
        assert_eq!(list(by_ref_and_q), [1]);
    }

    #[test]
    fn add_member_is_idempotent() {
        let store = Store::new();
        store.seed_users(1);
        let team = store.create_team(new_team("Ops")).unwrap();
        let first = store.add_member(team.id, 1).unwrap();
        assert!(first.created);
        assert_eq!(first.member.login, "user00001");
        let again = store.add_member(team.id, 1).unwrap();
        assert!(!again.created);
        assert_eq!(again.member, first.member);
        assert_eq!(store.get_team(team.id).unwrap().member_count, 1);
        assert_eq!(store.add_member(team.id, 9).unwrap_err(), StoreError::UnknownUsers(vec![9]));
        assert_eq!(store.add_member(5, 1).unwrap_err(), StoreError::TeamNotFound(5));
    }

    #[test]
    fn remove_member() {
        let store = Store::new();
        store.seed_users(2);
        let team = store.create_team(new_team("Ops")).unwrap();
        store.add_member(team.id, 1).unwrap();
        store.remove_member(team.id, 1).unwrap();
        assert_eq!(store.get_team(team.id).unwrap().member_count, 0);
        assert_eq!(store.remove_member(team.id, 1), Err(StoreError::NotAMember { team_id: team.id, user_id: 1 }));
        assert_eq!(store.remove_member(9, 1), Err(StoreError::TeamNotFound(9)));
    }

    #[test]
    fn replace_members_is_all_or_none() {
        let store = Store::new();
        store.seed_users(4);
        let team = store.create_team(new_team("Ops")).unwrap();
        store.replace_members(team.id, &[1, 2]).unwrap();
        let before = store.list_members(team.id, PageRequest::default()).unwrap();

        let err = store.replace_members(team.id, &[3, 42, 41, 42]).unwrap_err();
        assert_eq!(err, StoreError::UnknownUsers(vec![41, 42]));
        assert_eq!(err.to_string(), "users 41, 42 do not exist");
        assert_eq!(store.list_members(team.id, PageRequest::default()).unwrap(), before);

        let team = store.replace_members(team.id, &[4, 2, 3, 2]).unwrap();
        assert_eq!(team.member_count, 3);
        let after = store.list_members(team.id, PageRequest::default()).unwrap();
        let ids: Vec<u64> = after.data.iter().map(|m| m.user_id).collect();
        assert_eq!(ids, [2, 3, 4]);
        assert_eq!(after.data[0].added_at, before.data[1].added_at, "kept member keeps added_at");
        let of_user_1 = store.list_teams(&TeamQuery { member: Some(1), ..TeamQuery::default() });
        assert_eq!(of_user_1.total, 0);
        assert_eq!(store.replace_members(team.id, &[]).unwrap().member_count, 0);
    }

    #[test]
    fn delete_team_drops_memberships_but_not_users() {
        let store = Store::new();
        store.seed_users(2);
        let team = store.create_team(new_team("Ops")).unwrap();
        store.seed_team_members(team.id, &[1, 2]).unwrap();
        store.delete_team(team.id).unwrap();
        assert_eq!(store.user_count(), 2);
        let of_user_1 = store.list_teams(&TeamQuery { member: Some(1), ..TeamQuery::default() });
        assert_eq!(of_user_1.total, 0);
        assert_eq!(store.delete_team(team.id), Err(StoreError::TeamNotFound(team.id)));
        assert!(store.create_team(new_team("ops")).is_ok(), "the name is free again");
    }

    #[test]
    fn seeds_fifty_thousand_users_and_a_big_team() {
        let store = Store::new();
        let seeded = store.seed_users(50_000);
        assert_eq!(seeded.len(), 50_000);
        assert_eq!((seeded[0], seeded[49_999]), (1, 50_000));
        assert_eq!(store.user_count(), 50_000);
        let last = store.get_user(50_000).unwrap();
        assert_eq!(last.login, "user50000");
        assert!(last.mail.as_deref().is_some_and(is_mail_address));
        assert!(last.first_name.is_some() && last.department.is_some());
        let by_login = store.list_users(&UserQuery { login: Some("USER00042".into()), ..UserQuery::default() });
        assert_eq!(ids(&by_login), [42]);

        let team = store.create_team(new_team("Everyone")).unwrap();
        assert_eq!(store.seed_team_members(team.id, &seeded).unwrap(), 50_000);
        assert_eq!(store.seed_team_members(team.id, &seeded[..10]).unwrap(), 0);
        let page = store.list_members(team.id, PageRequest { page: 500, per_page: 100 }).unwrap();
        assert_eq!(page.total, 50_000);
        assert_eq!(page.data.first().map(|m| m.user_id), Some(49_901));
        store.delete_user(50_000).unwrap();
        assert_eq!(store.get_team(team.id).unwrap().member_count, 49_999);
    }

    #[test]
    fn seeding_twice_keeps_logins_unique() {
        let store = Store::new();
        store.create_user(new_user("user00002")).unwrap();
        let seeded = store.seed_users(2);
        assert_eq!(seeded, [2, 3]);
        assert_eq!(store.get_user(2).unwrap().login, "user00002.1");
        assert_eq!(store.get_user(3).unwrap().login, "user00003");
    }

    #[test]
    fn concurrent_creates_never_share_a_login_or_id() {
        let store = std::sync::Arc::new(Store::new());
        let handles: Vec<_> = (0..4)
            .map(|_| {
                let store = store.clone();
                std::thread::spawn(move || {
                    (0..200).filter(|i| store.create_user(new_user(&format!("u{i}"))).is_ok()).count()
                })
            })
            .collect();
        let created: usize = handles.into_iter().map(|h| h.join().unwrap()).sum();
        assert_eq!(created, 200);
        assert_eq!(store.user_count(), 200);
    }
}
