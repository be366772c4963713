//! Memory of the ID cache: the resident bytes one remembered resource costs, and one entry a
//! script keeps, as the process sees them (growth of `VmRSS` in `/proc/self/status`).
//!
//! Run with `cargo bench --bench cache_memory` (Linux). Each case runs in a child process of its
//! own, so that memory one case freed and the allocator kept does not hide the next one's. A
//! case builds an `IdCache` bounded to `bound` entries, observes `n` users as the legacy app
//! would return them (a UUID id, an e-mail `userName`, a GUID `externalId`, as Entra ID sends),
//! lets the cache settle (its pending upkeep done) and reports the growth of the resident set
//! divided by the resources it holds. With `n` above `bound` the cache is full and evicting,
//! which is the state of a replica after a long load: that row is the figure to size a bound
//! with. The `everything` rows fill every cache of the app at once (resources of both types,
//! the ids seen as both, script entries) and divide by the bound: the cost of one unit of
//! `cache.max_entries` when all is full. The bytes include everything the cache keeps: the strings, moka's own entry, its
//! eviction and expiry order and its frequency sketch, and the allocator's rounding.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use std::process::Command;

use scim_proxy::cache::{IdCache, Kind};
use scim_proxy::config::CacheConfig;

/// The allocator the `scim-proxy` binary runs with, so that figures match production.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The cases: what is written, how many, and the cache's bound.
const CASES: [(&str, u64, u64); 8] = [
    ("resources", 10_000, 10_000),
    ("resources", 100_000, 100_000),
    ("resources", 300_000, 100_000),
    ("resources", 300_000, 10_000),
    ("custom", 100_000, 100_000),
    ("custom", 300_000, 100_000),
    ("everything", 300_000, 10_000),
    ("everything", 300_000, 100_000),
];

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(at) = args.iter().position(|a| a == "--case") {
        let n = args[at + 2].parse().unwrap();
        let bound = args[at + 3].parse().unwrap();
        run_case(&args[at + 1], n, bound);
        return;
    }
    let filter = args.iter().skip(1).find(|a| !a.starts_with('-')).cloned().unwrap_or_default();
    println!("{:<10} {:>8} {:>8} {:>8} {:>12} {:>10}", "case", "written", "bound", "held", "RSS growth", "bytes/held");
    let me = std::env::current_exe().unwrap();
    for (case, n, bound) in CASES {
        if !case.contains(&filter) {
            continue;
        }
        let out = Command::new(&me).args(["--case", case, &n.to_string(), &bound.to_string()]).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        print!("{}", String::from_utf8_lossy(&out.stdout));
    }
}

/// One case, in a process of its own: prints its row.
fn run_case(case: &str, n: u64, bound: u64) {
    let config = CacheConfig { max_entries: bound, ..CacheConfig::default() };
    let before = rss_bytes();
    let cache = IdCache::new(&config);
    for i in 0..n {
        let id = uuid::Uuid::new_v4().to_string();
        match case {
            "resources" => {
                let name = format!("firstname.lastname{i}@example.com");
                let external_id = uuid::Uuid::new_v4().to_string();
                let _ = cache.observe(Kind::User, &id, Some(&name), Some(&external_id));
            }
            "custom" => cache.custom_set("roles", &format!("role-name-{i}"), &id),
            // Every cache full at once: users, groups sharing their ids (so the cache of ids
            // seen as both fills too), and script entries.
            _ => {
                let name = format!("firstname.lastname{i}@example.com");
                let external_id = uuid::Uuid::new_v4().to_string();
                let _ = cache.observe(Kind::User, &id, Some(&name), Some(&external_id));
                let _ = cache.observe(Kind::Group, &id, Some(&format!("group {i}")), Some(&external_id));
                cache.custom_set("roles", &format!("role-name-{i}"), &external_id);
            }
        }
        // As a replica under load would: upkeep keeps pace with the writes.
        if i % 1024 == 0 {
            cache.run_pending_tasks();
        }
    }
    cache.run_pending_tasks();
    let grown = rss_bytes().saturating_sub(before);
    let held = n.min(bound);
    println!(
        "{case:<10} {n:>8} {bound:>8} {held:>8} {:>9.1} MiB {:>10.0}",
        grown as f64 / (1024.0 * 1024.0),
        grown as f64 / held as f64
    );
    drop(cache);
}

/// The resident set of this process, from `/proc/self/status`.
fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    let kib: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kib * 1024
}
