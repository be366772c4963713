//! `results()`: the lists a script fills a page at a time, held by the host and measured once
//! as they grow, and the size and depth checks of what a script hands back.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use rhai::{Array, Dynamic, EvalAltResult, Map, Position};

use crate::script::host::{current, runtime_error};

/// A list a script fills a page at a time and returns: `let users = results(); users += page;`.
///
/// Rhai measures a whole array (every nested map and string) after each change to it, so a
/// listing gathered in a script array costs time quadratic in its length (1.7 s for 10,000
/// users). This list is held by the host: what is appended is measured once, and counted
/// against the same size limits for everything `results()` lists hold in one script call
/// ([`Held`]), until no value refers to the list any more. Copies of it share one list.
///
/// A list may hold lists one level deep (a listing of groups, each with its list of members):
/// a list held by another holds no list, and a list holding lists is held by none. So no chain
/// or cycle of lists can form, whatever the order of the appends, and converting or dropping
/// one never recurses deeper than its data.
///
/// A list made with `results(query)` in a listing keeps only the resources that can match the
/// request's filter: the proxy's [`Sieve`] takes the others out of each page as it is appended,
/// so a listing holds its matches, not everything it scanned. Where the request answers with
/// a page of its matches, the list holds those that can still make that page, not all of
/// them: the first ones in the listing's order, cut back as it grows. It counts them all.
#[derive(Debug, Clone, Default)]
pub(in crate::script) struct Results(Arc<List>);

/// What a listing's `results(query)` lists keep of each page a script appends to them: the
/// resources that can match the request's filter, and of those no more than the request's
/// page needs. The proxy gives one to a listing's call when it can test its filter and read
/// its sort key on resources as the script gave them.
pub trait Sieve: Send + Sync + std::fmt::Debug {
    /// The items of `items`, a page of resources, that can match the filter (in their order).
    fn sift(&self, items: Array) -> Array;

    /// How many matching resources the answer can show at most, the first ones in the
    /// listing's order (the request's `startIndex - 1 + count`); `None` when it may need all.
    fn bound(&self) -> Option<usize>;

    /// Takes out of `held`, matching resources in the order they were appended, all but the
    /// first [`Sieve::bound`] ones in the listing's order, and gives them; the rest keep their
    /// order. A resource whose place it cannot tell is kept.
    fn cut(&self, held: &mut Vec<Dynamic>) -> Vec<Dynamic>;
}

/// How far past its bound a list grows before it is cut back: cutting costs a pass over what
/// is held, so a list is cut when it has grown by its bound again (and by this much at least).
const CUT_SLACK: usize = 256;

#[derive(Debug, Default)]
struct List {
    items: Mutex<Vec<Dynamic>>,
    /// What takes the resources that cannot match out of what is appended, if anything.
    sieve: Option<Arc<dyn Sieve>>,
    /// How many appended items the sieve took out as not matching.
    dropped: std::sync::atomic::AtomicUsize,
    /// How many matching items were cut out as past the page the request answers with.
    beyond: std::sync::atomic::AtomicUsize,
    /// Another list holds this one.
    held: std::sync::atomic::AtomicBool,
    /// This list holds another.
    holds_lists: std::sync::atomic::AtomicBool,
    /// What this list's items hold of its call's budget.
    counted: Mutex<DataSizes>,
    /// Whether its call's [`Held`] lists it among the lists that hold some of the budget.
    listed: std::sync::atomic::AtomicBool,
}

/// What a script call's `results()` lists hold, bounded by the engine's size limits, and the
/// lists that hold it.
///
/// A list no script value refers to any more (a group's members, the group dropped by its
/// listing's sieve or cut out past its page) is freed, and what it held is given back: so a
/// listing of groups holds the members of the groups it keeps, not of every group it read.
#[derive(Debug, Default)]
pub(in crate::script) struct Held {
    sizes: DataSizes,
    /// The lists holding some of `sizes`, each as a copy that shares the list.
    lists: Vec<Results>,
}

impl Held {
    /// Gives back what the lists that only this one refers to hold, and lets them go.
    fn sweep(&mut self) {
        let mut freed = DataSizes::default();
        self.lists.retain(|list| {
            if Arc::strong_count(&list.0) > 1 {
                return true;
            }
            freed = freed.plus(list.counted());
            false
        });
        self.sizes.give_back(freed);
    }

    /// The lists beside `list` that a sieve may cut back to a page.
    fn listings_beside(&self, list: &Results) -> Vec<Results> {
        self.lists.iter().filter(|other| other.0.sieve.is_some() && !Arc::ptr_eq(&other.0, &list.0)).cloned().collect()
    }

    /// Gives back what `cut`, taken out of `list`, held.
    fn release(&mut self, list: &Results, cut: &[Dynamic]) {
        let freed = DataSizes::held_by(cut);
        self.sizes.give_back(freed);
        if let Ok(mut counted) = list.0.counted.lock() {
            counted.give_back(freed);
        }
    }

    /// Counts `added`, now held by `list`.
    fn count(&mut self, list: &Results, added: DataSizes) {
        if let Ok(mut counted) = list.0.counted.lock() {
            *counted = counted.plus(added);
        }
        if !list.0.listed.swap(true, Ordering::Relaxed) {
            self.lists.push(list.clone());
        }
    }
}

impl Results {
    /// A list whose appended items go through `sieve` first, when there is one.
    pub(in crate::script) fn sifted(sieve: Option<Arc<dyn Sieve>>) -> Self {
        Self(Arc::new(List { sieve, ..List::default() }))
    }

    /// Appends items after counting them against the call's budget; those the list's sieve
    /// takes out are counted as appended, not held.
    pub(in crate::script) fn append(&mut self, items: Array) -> Result<(), Box<EvalAltResult>> {
        let ctx = current()?;
        let items = match &self.0.sieve {
            Some(sieve) => {
                let appended = items.len();
                let kept = sieve.sift(items);
                self.0.dropped.fetch_add(appended.saturating_sub(kept.len()), Ordering::Relaxed);
                kept
            }
            None => items,
        };
        // Only plain data: a function pointer (which may hold anything) or lists chained in
        // lists would let a script nest values as deep as it likes at no cost, deeper than any
        // stack that converts or drops them.
        let mut added = DataSizes::default();
        let mut lists = Vec::new();
        for item in &items {
            added =
                added
                    .plus(DataSizes::of(item, crate::script::limits::MAX_VALUE_DEPTH, &mut lists).ok_or_else(|| {
                    runtime_error(format!(
                        "results() holds data (maps, arrays, strings, numbers, booleans, ()) nested at most {} levels",
                        crate::script::limits::MAX_VALUE_DEPTH
                    ))
                })?);
        }
        let chained = !lists.is_empty()
            && (self.0.held.load(Ordering::SeqCst)
                || lists.iter().any(|list| Arc::ptr_eq(&list.0, &self.0) || list.0.holds_lists.load(Ordering::SeqCst)));
        if chained {
            return Err(runtime_error(
                "results() lists nest one level at most: a list in another list cannot hold lists itself",
            ));
        }
        let added = added.plus(DataSizes { array: items.len(), ..DataSizes::default() });
        let mut list = self.0.items.lock().map_err(|_| runtime_error("results() is unavailable"))?;
        let mut held = ctx.held.lock().map_err(|_| runtime_error("results() is unavailable"))?;
        if self.0.sieve.is_some() {
            // What the sieve dropped is gone: so are the lists only it held.
            held.sweep();
        }
        if held.sizes.take(added).is_err() {
            // Cut back to their pages, the call's listings (this one or the one whose groups
            // this list is the members of) may leave room for what is appended.
            let mut freed = false;
            let cut = self.cut(&mut list, |bound| bound);
            if !cut.is_empty() {
                held.release(self, &cut);
                freed = true;
            }
            drop(cut);
            for listing in held.listings_beside(self) {
                let Ok(mut items) = listing.0.items.lock() else { continue };
                let cut = listing.cut(&mut items, |bound| bound);
                if !cut.is_empty() {
                    held.release(&listing, &cut);
                    freed = true;
                }
            }
            if freed {
                held.sweep();
            }
            held.sizes.take(added)?;
        }
        list.extend(items);
        held.count(self, added);
        for held in &lists {
            held.0.held.store(true, Ordering::SeqCst);
        }
        if !lists.is_empty() {
            self.0.holds_lists.store(true, Ordering::SeqCst);
        }
        // What was cut out is no longer held: its share of the budget is given back, and so is
        // that of the lists only it held.
        let cut = self.cut(&mut list, |bound| bound.saturating_add(bound.max(CUT_SLACK)));
        if !cut.is_empty() {
            held.release(self, &cut);
            drop(cut);
            held.sweep();
        }
        Ok(())
    }

    /// What this list's items hold of its call's budget.
    fn counted(&self) -> DataSizes {
        self.0.counted.lock().map_or_else(|_| DataSizes::default(), |counted| *counted)
    }

    /// Cuts `list` back to its sieve's bound once it holds more than `past(bound)` items;
    /// gives what was cut out (nothing for a list without a sieve or bound).
    fn cut(&self, list: &mut Vec<Dynamic>, past: impl FnOnce(usize) -> usize) -> Vec<Dynamic> {
        let Some((sieve, bound)) = self.0.sieve.as_ref().and_then(|sieve| Some((sieve, sieve.bound()?))) else {
            return Vec::new();
        };
        if list.len() <= past(bound) {
            return Vec::new();
        }
        let cut = sieve.cut(list);
        self.0.beyond.fetch_add(cut.len(), Ordering::Relaxed);
        cut
    }

    pub(in crate::script) fn len(&mut self) -> i64 {
        self.count() as i64
    }

    /// How many items were appended to the list: those it holds and those its sieve took out.
    pub(in crate::script) fn count(&self) -> usize {
        self.0.items.lock().map_or(0, |list| list.len())
            + self.0.dropped.load(Ordering::Relaxed)
            + self.0.beyond.load(Ordering::Relaxed)
    }

    /// How many matching items were cut out as past the page the request answers with: they
    /// count in its `totalResults`.
    pub(in crate::script) fn beyond(&self) -> usize {
        self.0.beyond.load(Ordering::Relaxed)
    }

    /// The items, taken out of the list (copies of it included), cut back to the sieve's
    /// bound: for the proxy reading a listing once the script call is over. `None` when the
    /// list is unavailable.
    pub(in crate::script) fn take(&self) -> Option<Vec<Dynamic>> {
        let mut list = self.0.items.lock().ok()?;
        self.cut(&mut list, |bound| bound);
        Some(std::mem::take(&mut *list))
    }

    /// What `read` makes of the items (cut back to the sieve's bound), the list held meanwhile.
    pub(in crate::script) fn with_items<T>(&self, read: impl FnOnce(&[Dynamic]) -> T) -> Result<T, String> {
        let mut list = self.0.items.lock().map_err(|_| "results() is unavailable".to_owned())?;
        self.cut(&mut list, |bound| bound);
        Ok(read(&list))
    }
}

/// Array elements, map entries and string bytes in a value, counted as Rhai's limits count them.
#[derive(Debug, Default, Clone, Copy)]
pub(in crate::script) struct DataSizes {
    array: usize,
    map: usize,
    string: usize,
}

impl DataSizes {
    /// The sizes of a plain data value nesting at most `depth` levels; `None` for anything else.
    /// The `results()` lists in it are gathered in `lists` and count nothing (what they hold
    /// was counted as they were filled).
    pub(in crate::script) fn of(value: &Dynamic, depth: usize, lists: &mut Vec<Results>) -> Option<Self> {
        // Strings, numbers and booleans first, told by the value's tag: most of a value.
        if value.is_string() {
            if let Some(text) = value.read_lock::<rhai::ImmutableString>() {
                return Some(Self { string: text.len(), ..Self::default() });
            }
        }
        if value.is_int() || value.is_bool() || value.is_unit() || value.is_float() {
            return Some(Self::default());
        }
        if let Some(items) = value.read_lock::<Array>() {
            let below = depth.checked_sub(1)?;
            let inner = items
                .iter()
                .try_fold(Self::default(), |sizes, item| Some(sizes.plus(Self::of(item, below, lists)?)))?;
            return Some(inner.plus(Self { array: items.len(), ..Self::default() }));
        }
        if let Some(map) = value.read_lock::<Map>() {
            let below = depth.checked_sub(1)?;
            let inner = map
                .values()
                .try_fold(Self::default(), |sizes, item| Some(sizes.plus(Self::of(item, below, lists)?)))?;
            return Some(inner.plus(Self { map: map.len(), ..Self::default() }));
        }
        if let Some(list) = value.read_lock::<Results>() {
            lists.push(list.clone());
            return Some(Self::default());
        }
        if let Some(text) = value.read_lock::<rhai::ImmutableString>() {
            return Some(Self { string: text.len(), ..Self::default() });
        }
        let plain = value.is_unit()
            || value.is_bool()
            || value.is_int()
            || value.is_float()
            || value.is_char()
            || value.is_blob()
            || value.is_timestamp();
        plain.then(Self::default)
    }

    pub(in crate::script) fn plus(self, other: Self) -> Self {
        Self {
            array: self.array.saturating_add(other.array),
            map: self.map.saturating_add(other.map),
            string: self.string.saturating_add(other.string),
        }
    }

    /// Adds `more` to what is held, or refuses it when that would pass a limit.
    pub(in crate::script) fn take(&mut self, more: Self) -> Result<(), Box<EvalAltResult>> {
        let total = self.plus(more);
        let over = if total.array > crate::script::limits::MAX_ARRAY_LEN {
            Some("Size of array")
        } else if total.map > crate::script::limits::MAX_MAP_LEN {
            Some("Size of object map")
        } else if total.string > crate::script::limits::MAX_STRING_BYTES {
            Some("Length of string")
        } else {
            None
        };
        if let Some(what) = over {
            return Err(Box::new(EvalAltResult::ErrorDataTooLarge(format!("{what} in results()"), Position::NONE)));
        }
        *self = total;
        Ok(())
    }

    /// What `items`, taken out of a list, held: the sizes [`Results::append`] counted.
    fn held_by(items: &[Dynamic]) -> Self {
        items.iter().fold(Self { array: items.len(), ..Self::default() }, |sizes, item| {
            sizes.plus(Self::of(item, crate::script::limits::MAX_VALUE_DEPTH, &mut Vec::new()).unwrap_or_default())
        })
    }

    /// Takes `less`, no longer held, off what is held.
    pub(in crate::script) fn give_back(&mut self, less: Self) {
        self.array = self.array.saturating_sub(less.array);
        self.map = self.map.saturating_sub(less.map);
        self.string = self.string.saturating_sub(less.string);
    }
}

/// Whether a script's answer is plain data nested at most [`crate::script::limits::MAX_VALUE_DEPTH`]
/// levels. A `results()` list in it counts as plain: it holds only plain data nested as much
/// at most (checked as it is filled), and lists one level deep at most.
pub(in crate::script) fn is_plain(value: &Dynamic) -> bool {
    pub(in crate::script) fn within(value: &Dynamic, depth: usize) -> bool {
        // Most of an answer is strings, numbers and booleans: told by the value's tag alone,
        // before the checks that look for a type.
        if value.is_string() || value.is_int() || value.is_bool() || value.is_unit() || value.is_float() {
            return true;
        }
        if let Some(items) = value.read_lock::<Array>() {
            return depth > 0 && items.iter().all(|item| within(item, depth - 1));
        }
        if let Some(map) = value.read_lock::<Map>() {
            return depth > 0 && map.values().all(|item| within(item, depth - 1));
        }
        DataSizes::of(value, 0, &mut Vec::new()).is_some()
    }
    within(value, crate::script::limits::MAX_VALUE_DEPTH)
}
