//! The ID-mapping cache of one app: SCIM id ↔ legacy key and userName / externalId → id.
//!
//! A hint that saves legacy calls, never the truth: every answer it gives is checked
//! against the legacy app by the caller, so a cold or stale cache changes only speed.
//!
//! May import: the foundation only.

use std::sync::Arc;

use moka::sync::Cache;

use crate::config::CacheConfig;

pub use crate::scim::schema::ResourceKind as Kind;

/// What the cache remembers of one resource.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Entry {
    /// The legacy key, when the script linked one that differs from the SCIM id.
    pub legacy_key: Option<String>,
    /// `userName` (Users) or `displayName` (Groups) as last seen.
    pub name: Option<String>,
    /// `externalId` as last seen.
    pub external_id: Option<String>,
}

/// What [`IdCache::observe`] noticed about an id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub enum Observed {
    /// Nothing to report.
    Fine,
    /// The id is also a resource of the other type, seen for the first time.
    SharedId,
}

/// Counts of lookups, for logs and tests.
#[derive(Debug, Default)]
pub struct Stats {
    pub hits: std::sync::atomic::AtomicU64,
    pub misses: std::sync::atomic::AtomicU64,
}

/// The ID-mapping cache of one app.
pub struct IdCache {
    by_id: Cache<(Kind, Arc<str>), Entry>,
    by_name: Cache<(Kind, String), Arc<str>>,
    by_external: Cache<(Kind, String), Arc<str>>,
    /// Free-form entries scripts keep for their own lookups, by namespace.
    custom: Cache<(String, String), String>,
    /// Ids seen as both a User's and a Group's, already reported.
    shared: Cache<Arc<str>, ()>,
    stats: Stats,
}

impl std::fmt::Debug for IdCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IdCache").field("entries", &self.by_id.entry_count()).finish()
    }
}

impl IdCache {
    /// Builds an empty cache with the configured size and lifetime.
    pub fn new(config: &CacheConfig) -> Self {
        Self {
            by_id: build(config),
            by_name: build(config),
            by_external: build(config),
            custom: build(config),
            shared: build(config),
            stats: Stats::default(),
        }
    }

    /// Remembers a resource the legacy app has just returned or confirmed.
    ///
    /// A rename drops the old name's entry, so it no longer points to this id. Answers
    /// [`Observed::SharedId`] the first time (within the cache's lifetime) an id is seen both as
    /// a User's and as a Group's, which RFC 7643 §3.1 forbids: the caller reports it. Only an
    /// id new to its resource type is looked up under the other one, so the check costs one
    /// cache read per new id and nothing on the reads that see what is known already.
    pub fn observe(&self, kind: Kind, id: &str, name: Option<&str>, external_id: Option<&str>) -> Observed {
        let key: Arc<str> = Arc::from(id);
        let previous = self.by_id.get(&(kind, key.clone()));
        let other = match kind {
            Kind::User => Kind::Group,
            Kind::Group => Kind::User,
        };
        let shared = previous.is_none()
            && self.by_id.contains_key(&(other, key.clone()))
            && self.shared.entry(key.clone()).or_insert(()).is_fresh();
        let observed = if shared { Observed::SharedId } else { Observed::Fine };
        // Most reads see what is known already: reads are far cheaper than writes in moka.
        if let Some(previous) = &previous {
            let same = |seen: Option<&str>, known: &Option<String>| seen == known.as_deref();
            let points_here = |cache: &Cache<(Kind, String), Arc<str>>, text: String| {
                cache.get(&(kind, text)).is_some_and(|found| found == key)
            };
            if same(name, &previous.name)
                && same(external_id, &previous.external_id)
                && name.is_none_or(|name| points_here(&self.by_name, fold(name)))
                && external_id.is_none_or(|external_id| points_here(&self.by_external, external_id.to_owned()))
            {
                return observed;
            }
        }
        let legacy_key = previous.as_ref().and_then(|p| p.legacy_key.clone());
        if let Some(previous) = &previous {
            if let Some(old) = &previous.name {
                if Some(old.as_str()) != name {
                    self.by_name.invalidate(&(kind, fold(old)));
                }
            }
            if let Some(old) = &previous.external_id {
                if Some(old.as_str()) != external_id {
                    self.by_external.invalidate(&(kind, old.clone()));
                }
            }
        }
        if let Some(name) = name {
            self.by_name.insert((kind, fold(name)), key.clone());
        }
        if let Some(external_id) = external_id {
            self.by_external.insert((kind, external_id.to_owned()), key.clone());
        }
        let entry = Entry { legacy_key, name: name.map(str::to_owned), external_id: external_id.map(str::to_owned) };
        self.by_id.insert((kind, key), entry);
        observed
    }

    /// Links a SCIM id to the legacy app's own key for it.
    #[cfg(test)]
    pub(crate) fn link(&self, kind: Kind, id: &str, legacy_key: &str) {
        let key: Arc<str> = Arc::from(id);
        let mut entry = self.by_id.get(&(kind, key.clone())).unwrap_or_default();
        entry.legacy_key = Some(legacy_key.to_owned());
        self.by_id.insert((kind, key), entry);
    }

    /// Forgets a resource that was deleted (or found missing).
    pub fn forget(&self, kind: Kind, id: &str) {
        let key: Arc<str> = Arc::from(id);
        if let Some(entry) = self.by_id.remove(&(kind, key)) {
            if let Some(name) = entry.name {
                self.by_name.invalidate(&(kind, fold(&name)));
            }
            if let Some(external_id) = entry.external_id {
                self.by_external.invalidate(&(kind, external_id));
            }
        }
    }

    /// What is known of an id.
    #[cfg(test)]
    pub(crate) fn entry(&self, kind: Kind, id: &str) -> Option<Entry> {
        self.count(self.by_id.get(&(kind, Arc::from(id))))
    }

    /// The id last seen with this `userName` / `displayName` (compared case-insensitively).
    pub fn id_for_name(&self, kind: Kind, name: &str) -> Option<String> {
        self.count(self.by_name.get(&(kind, fold(name)))).map(|id| id.to_string())
    }

    /// The id last seen with this `externalId` (compared exactly).
    #[cfg(test)]
    pub(crate) fn id_for_external_id(&self, kind: Kind, external_id: &str) -> Option<String> {
        self.count(self.by_external.get(&(kind, external_id.to_owned()))).map(|id| id.to_string())
    }

    /// A script's own entry.
    pub fn custom_get(&self, namespace: &str, key: &str) -> Option<String> {
        self.count(self.custom.get(&(namespace.to_owned(), key.to_owned())))
    }

    /// Sets a script's own entry.
    pub fn custom_set(&self, namespace: &str, key: &str, value: &str) {
        self.custom.insert((namespace.to_owned(), key.to_owned()), value.to_owned());
    }

    /// Removes a script's own entry.
    pub fn custom_remove(&self, namespace: &str, key: &str) {
        self.custom.invalidate(&(namespace.to_owned(), key.to_owned()));
    }

    /// Does now the upkeep the caches otherwise do a little at a time as they are used: admits
    /// the entries written last to the eviction order, evicts over the bound, drops the expired.
    /// For measurements, which want the memory of a settled cache.
    pub fn run_pending_tasks(&self) {
        self.by_id.run_pending_tasks();
        self.by_name.run_pending_tasks();
        self.by_external.run_pending_tasks();
        self.custom.run_pending_tasks();
        self.shared.run_pending_tasks();
    }

    /// Lookup hit and miss counts.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    fn count<T>(&self, found: Option<T>) -> Option<T> {
        use std::sync::atomic::Ordering::Relaxed;
        match &found {
            Some(_) => self.stats.hits.fetch_add(1, Relaxed),
            None => self.stats.misses.fetch_add(1, Relaxed),
        };
        found
    }
}

fn build<K, V>(config: &CacheConfig) -> Cache<K, V>
where
    K: std::hash::Hash + Eq + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    Cache::builder().max_capacity(config.max_entries).time_to_live(config.ttl).build()
}

/// userName and displayName are case-insensitive in SCIM (`caseExact: false`).
fn fold(name: &str) -> String {
    name.to_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cache() -> IdCache {
        IdCache::new(&CacheConfig::default())
    }

    #[test]
    fn maps_names_and_external_ids_to_ids() {
        let c = cache();
        let _ = c.observe(Kind::User, "12", Some("BJensen"), Some("ext-1"));
        assert_eq!(c.id_for_name(Kind::User, "bjensen").as_deref(), Some("12"));
        assert_eq!(c.id_for_external_id(Kind::User, "ext-1").as_deref(), Some("12"));
        assert_eq!(c.id_for_external_id(Kind::User, "EXT-1"), None);
        assert_eq!(c.id_for_name(Kind::Group, "bjensen"), None);
    }

    #[test]
    fn an_id_seen_as_a_user_and_a_group_is_reported_once() {
        let c = cache();
        assert_eq!(c.observe(Kind::User, "7", Some("ada"), None), Observed::Fine);
        assert_eq!(c.observe(Kind::Group, "8", Some("admins"), None), Observed::Fine);
        assert_eq!(c.observe(Kind::Group, "7", Some("ops"), None), Observed::SharedId);
        // Seen again, renamed, or from the other side: reported already.
        assert_eq!(c.observe(Kind::Group, "7", Some("ops"), None), Observed::Fine);
        assert_eq!(c.observe(Kind::Group, "7", Some("operations"), None), Observed::Fine);
        c.forget(Kind::User, "7");
        assert_eq!(c.observe(Kind::User, "7", Some("ada"), None), Observed::Fine);
        // A group first, then a user with its id.
        assert_eq!(c.observe(Kind::Group, "9", Some("devs"), None), Observed::Fine);
        assert_eq!(c.observe(Kind::User, "9", Some("bob"), None), Observed::SharedId);
        assert_eq!(c.observe(Kind::User, "8", Some("carol"), None), Observed::SharedId);
    }

    #[test]
    fn a_rename_drops_the_old_name_and_delete_drops_all() {
        let c = cache();
        let _ = c.observe(Kind::User, "12", Some("old"), Some("e"));
        c.link(Kind::User, "12", "old@legacy");
        let _ = c.observe(Kind::User, "12", Some("new"), None);
        assert_eq!(c.id_for_name(Kind::User, "old"), None);
        assert_eq!(c.id_for_name(Kind::User, "new").as_deref(), Some("12"));
        assert_eq!(c.id_for_external_id(Kind::User, "e"), None);
        assert_eq!(c.entry(Kind::User, "12").unwrap().legacy_key.as_deref(), Some("old@legacy"));
        c.forget(Kind::User, "12");
        assert_eq!(c.id_for_name(Kind::User, "new"), None);
        assert_eq!(c.entry(Kind::User, "12"), None);
    }
}
