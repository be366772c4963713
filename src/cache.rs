//! The ID-mapping cache of one app: SCIM id ↔ legacy key and userName / externalId → id.
//!
//! A hint that saves legacy calls, never the truth: every answer it gives is checked
//! against the legacy app by the caller, so a cold or stale cache changes only speed.
//!
//! May import: the foundation only.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use moka::notification::RemovalCause;
use moka::sync::{Cache, CacheBuilder};

use crate::config::CacheConfig;

pub use crate::scim::schema::ResourceKind as Kind;

/// What the cache remembers of one resource.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Entry {
    /// The legacy key, when the script linked one that differs from the SCIM id.
    pub legacy_key: Option<Arc<str>>,
    /// `userName` (Users) or `displayName` (Groups) as last seen, folded to lower case: the
    /// name index's own key, shared with it.
    pub name: Option<Arc<str>>,
    /// `externalId` as last seen: the external-id index's own key, shared with it.
    pub external_id: Option<Arc<str>>,
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
    /// Lookups that found an entry.
    pub hits: std::sync::atomic::AtomicU64,
    /// Lookups that found none.
    pub misses: std::sync::atomic::AtomicU64,
}

/// The ID-mapping cache of one app.
///
/// One bounded, expiring moka cache holds an entry per resource; the name and external-id
/// indices are plain maps that hold only what those entries name. An entry's eviction or expiry
/// takes its index keys with it (moka's eviction listener), and a lookup through an index
/// answers only while the resource's entry still carries that key. A moka entry costs some
/// 300 bytes of its own (its eviction and expiry order, its frequency counter, its slot), a plain
/// map's slot a tenth of that: the indices as moka caches of their own made a resource cost three
/// moka entries (`cargo bench --bench cache_memory`, the README's ID-cache paragraphs).
pub struct IdCache {
    by_id: Cache<(Kind, Arc<str>), Entry>,
    indices: Arc<Indices>,
    /// Free-form entries scripts keep for their own lookups, by namespace.
    custom: Cache<Box<str>, Box<str>>,
    /// Ids seen as both a User's and a Group's, already reported.
    shared: Cache<Arc<str>, ()>,
    stats: Stats,
}

/// The name and external-id indices: a key → the id whose entry carries it, per resource type.
struct Indices {
    names: [Index; 2],
    external_ids: [Index; 2],
    /// Beyond this many keys in one index, it is emptied (see [`Index::insert`]).
    most: usize,
}

/// One index. Never locked across a call into moka: moka runs the eviction listener, which
/// locks the indices, inside its own calls.
#[derive(Default)]
struct Index(Mutex<HashMap<Arc<str>, Arc<str>>>);

impl Index {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Arc<str>, Arc<str>>> {
        // A panic while locked leaves at worst a wrong hint, which every caller checks.
        self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn get(&self, key: &str) -> Option<Arc<str>> {
        self.lock().get(key).cloned()
    }

    /// Points `key` at `id`. Each key is dropped with the entry that carries it, so an index
    /// holds no more keys than there are entries; two writers racing on one new id can leave a
    /// key no entry carries (a lookup through it is refused and drops it). Past `most` keys the
    /// index is emptied, so such leftovers cannot grow without bound; it refills as it is used.
    fn insert(&self, key: Arc<str>, id: Arc<str>, most: usize) {
        let mut map = self.lock();
        if map.len() >= most && !map.contains_key(&key) {
            map.clear();
        }
        map.insert(key, id);
    }

    /// Drops `key` if it still points at `id` (another resource may have taken the name since).
    fn remove(&self, key: &str, id: &str) {
        let mut map = self.lock();
        if map.get(key).is_some_and(|found| &**found == id) {
            map.remove(key);
        }
    }
}

impl Indices {
    fn names(&self, kind: Kind) -> &Index {
        &self.names[slot(kind)]
    }

    fn external_ids(&self, kind: Kind) -> &Index {
        &self.external_ids[slot(kind)]
    }

    /// Drops the index keys an entry carried, when the entry goes.
    fn forget(&self, kind: Kind, id: &str, entry: &Entry) {
        if let Some(name) = &entry.name {
            self.names(kind).remove(name, id);
        }
        if let Some(external_id) = &entry.external_id {
            self.external_ids(kind).remove(external_id, id);
        }
    }
}

fn slot(kind: Kind) -> usize {
    match kind {
        Kind::User => 0,
        Kind::Group => 1,
    }
}

impl std::fmt::Debug for IdCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IdCache").field("entries", &self.by_id.entry_count()).finish()
    }
}

impl IdCache {
    /// Builds an empty cache with the configured size and lifetime.
    pub fn new(config: &CacheConfig) -> Self {
        let most = usize::try_from(config.max_entries).unwrap_or(usize::MAX).saturating_mul(2).saturating_add(1024);
        let indices = Arc::new(Indices { names: Default::default(), external_ids: Default::default(), most });
        let listener = {
            let indices = indices.clone();
            // Explicit removals (`forget`) and replacements (`observe`) update the indices
            // themselves; evictions and expiries happen inside moka and are told here.
            move |key: Arc<(Kind, Arc<str>)>, entry: Entry, cause: RemovalCause| {
                if cause.was_evicted() {
                    indices.forget(key.0, &key.1, &entry);
                }
            }
        };
        Self {
            by_id: builder(config).eviction_listener(listener).build(),
            indices,
            custom: builder(config).build(),
            shared: builder(config).build(),
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
        let folded = name.map(fold);
        // Most reads see what is known already: reads are far cheaper than writes in moka.
        if let Some(previous) = &previous {
            let points_here = |index: &Index, text: &str| index.get(text).is_some_and(|found| found == key);
            if previous.name.as_deref() == folded.as_deref()
                && previous.external_id.as_deref() == external_id
                && folded.as_deref().is_none_or(|name| points_here(self.indices.names(kind), name))
                && external_id.is_none_or(|external_id| points_here(self.indices.external_ids(kind), external_id))
            {
                return observed;
            }
        }
        let legacy_key = previous.as_ref().and_then(|p| p.legacy_key.clone());
        if let Some(previous) = &previous {
            if let Some(old) = &previous.name {
                if Some(&**old) != folded.as_deref() {
                    self.indices.names(kind).remove(old, id);
                }
            }
            if let Some(old) = &previous.external_id {
                if Some(&**old) != external_id {
                    self.indices.external_ids(kind).remove(old, id);
                }
            }
        }
        // The entry and its index keys share one copy of each string.
        let name: Option<Arc<str>> = folded.map(Arc::from);
        let external_id: Option<Arc<str>> = external_id.map(Arc::from);
        if let Some(name) = &name {
            self.indices.names(kind).insert(name.clone(), key.clone(), self.indices.most);
        }
        if let Some(external_id) = &external_id {
            self.indices.external_ids(kind).insert(external_id.clone(), key.clone(), self.indices.most);
        }
        self.by_id.insert((kind, key), Entry { legacy_key, name, external_id });
        observed
    }

    /// Links a SCIM id to the legacy app's own key for it.
    #[cfg(test)]
    pub(crate) fn link(&self, kind: Kind, id: &str, legacy_key: &str) {
        let key: Arc<str> = Arc::from(id);
        let mut entry = self.by_id.get(&(kind, key.clone())).unwrap_or_default();
        entry.legacy_key = Some(Arc::from(legacy_key));
        self.by_id.insert((kind, key), entry);
    }

    /// Forgets a resource that was deleted (or found missing).
    pub fn forget(&self, kind: Kind, id: &str) {
        if let Some(entry) = self.by_id.remove(&(kind, Arc::from(id))) {
            self.indices.forget(kind, id, &entry);
        }
    }

    /// What is known of an id.
    #[cfg(test)]
    pub(crate) fn entry(&self, kind: Kind, id: &str) -> Option<Entry> {
        self.count(self.by_id.get(&(kind, Arc::from(id))))
    }

    /// The id last seen with this `userName` / `displayName` (compared case-insensitively).
    pub fn id_for_name(&self, kind: Kind, name: &str) -> Option<String> {
        let name = fold(name);
        let found = self.through(kind, self.indices.names(kind), &name, |entry| entry.name.as_deref());
        self.count(found)
    }

    /// The id last seen with this `externalId` (compared exactly).
    #[cfg(test)]
    pub(crate) fn id_for_external_id(&self, kind: Kind, external_id: &str) -> Option<String> {
        let found =
            self.through(kind, self.indices.external_ids(kind), external_id, |entry| entry.external_id.as_deref());
        self.count(found)
    }

    /// The id `index` gives for `text`, if that id's entry is still cached and still carries
    /// `text` (an index key outlives its entry until moka's upkeep runs). A key no entry
    /// carries is dropped.
    fn through(
        &self,
        kind: Kind,
        index: &Index,
        text: &str,
        carried: impl Fn(&Entry) -> Option<&str>,
    ) -> Option<String> {
        let id = index.get(text)?;
        match self.by_id.get(&(kind, id.clone())) {
            Some(entry) if carried(&entry) == Some(text) => Some(id.to_string()),
            _ => {
                index.remove(text, &id);
                None
            }
        }
    }

    /// A script's own entry.
    pub fn custom_get(&self, namespace: &str, key: &str) -> Option<String> {
        self.count(self.custom.get(&*custom_key(namespace, key))).map(String::from)
    }

    /// Sets a script's own entry.
    pub fn custom_set(&self, namespace: &str, key: &str, value: &str) {
        self.custom.insert(custom_key(namespace, key), Box::from(value));
    }

    /// Removes a script's own entry.
    pub fn custom_remove(&self, namespace: &str, key: &str) {
        self.custom.invalidate(&*custom_key(namespace, key));
    }

    /// Lookup hit and miss counts.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// Does now the upkeep the caches otherwise do a little at a time as they are used: admits
    /// the entries written last to the eviction order, evicts over the bound, drops the expired.
    /// For measurements, which want the memory of a settled cache.
    pub fn run_pending_tasks(&self) {
        self.by_id.run_pending_tasks();
        self.custom.run_pending_tasks();
        self.shared.run_pending_tasks();
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

fn builder<K, V>(config: &CacheConfig) -> CacheBuilder<K, V, Cache<K, V>>
where
    K: std::hash::Hash + Eq + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    Cache::builder().max_capacity(config.max_entries).time_to_live(config.ttl)
}

/// A script entry's key: the namespace's length, the namespace and the key in one string, so
/// that no two (namespace, key) pairs share one and an entry costs one allocation, not two.
fn custom_key(namespace: &str, key: &str) -> Box<str> {
    format!("{}:{namespace}{key}", namespace.len()).into_boxed_str()
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

    #[test]
    fn evicted_resources_take_their_index_keys_with_them() {
        let c = IdCache::new(&CacheConfig { max_entries: 50, ..CacheConfig::default() });
        for i in 0..2000 {
            let _ = c.observe(Kind::User, &format!("id-{i}"), Some(&format!("User{i}")), Some(&format!("ext-{i}")));
        }
        c.run_pending_tasks();
        let held = c.by_id.entry_count();
        assert!((1..=50).contains(&held), "{held} entries");
        let keys = |index: &Index| u64::try_from(index.lock().len()).unwrap();
        assert_eq!(keys(c.indices.names(Kind::User)), held);
        assert_eq!(keys(c.indices.external_ids(Kind::User)), held);
        // Every name still indexed answers its own id, and nothing else answers.
        let found = (0..2000).filter(|i| c.id_for_name(Kind::User, &format!("user{i}")) == Some(format!("id-{i}")));
        assert_eq!(u64::try_from(found.count()).unwrap(), held);
    }

    #[test]
    fn an_index_key_its_entry_no_longer_carries_answers_nothing_and_goes() {
        let c = cache();
        let _ = c.observe(Kind::User, "12", Some("ada"), Some("e-12"));
        // As two writers racing on a new id can leave behind.
        c.indices.names(Kind::User).insert(Arc::from("grace"), Arc::from("12"), usize::MAX);
        c.indices.external_ids(Kind::User).insert(Arc::from("e-99"), Arc::from("99"), usize::MAX);
        assert_eq!(c.id_for_name(Kind::User, "Grace"), None);
        assert_eq!(c.id_for_external_id(Kind::User, "e-99"), None);
        assert_eq!(c.indices.names(Kind::User).get("grace"), None);
        assert_eq!(c.indices.external_ids(Kind::User).get("e-99"), None);
        assert_eq!(c.id_for_name(Kind::User, "ADA").as_deref(), Some("12"));
        // A name another id took since is not dropped by the first one's rename.
        let _ = c.observe(Kind::User, "13", Some("ada"), None);
        let _ = c.observe(Kind::User, "12", Some("ada lovelace"), Some("e-12"));
        assert_eq!(c.id_for_name(Kind::User, "ada").as_deref(), Some("13"));
        assert_eq!(c.id_for_name(Kind::User, "ada lovelace").as_deref(), Some("12"));
    }

    #[test]
    fn an_index_past_its_bound_starts_again() {
        let index = Index::default();
        for i in 0..3 {
            index.insert(Arc::from(format!("k{i}")), Arc::from("id"), 3);
        }
        index.insert(Arc::from("k1"), Arc::from("other"), 3);
        assert_eq!(index.lock().len(), 3);
        index.insert(Arc::from("k3"), Arc::from("id"), 3);
        let kept = index.lock().len();
        assert_eq!((kept, index.get("k3").as_deref()), (1, Some("id")));
    }

    #[test]
    fn script_entries_of_different_namespaces_never_meet() {
        let c = cache();
        c.custom_set("ab", "c", "1");
        c.custom_set("a", "bc", "2");
        c.custom_set("1:a", "b", "3");
        assert_eq!(c.custom_get("ab", "c").as_deref(), Some("1"));
        assert_eq!(c.custom_get("a", "bc").as_deref(), Some("2"));
        assert_eq!(c.custom_get("1:a", "b").as_deref(), Some("3"));
        c.custom_remove("a", "bc");
        assert_eq!((c.custom_get("a", "bc"), c.custom_get("ab", "c").as_deref()), (None, Some("1")));
    }
}
