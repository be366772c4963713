//! The process's own figures for `/metrics` — CPU time, memory, file descriptors, start time —
//! read from `/proc` at each scrape, under the names every Prometheus client library uses.

use std::sync::OnceLock;

use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;

/// What `/proc` says of this process now; a figure that could not be read is `None` (all of
/// them on a system without `/proc`).
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct ProcessStats {
    /// User and system CPU time spent, over all threads.
    pub cpu_seconds: Option<f64>,
    pub resident_memory_bytes: Option<u64>,
    pub virtual_memory_bytes: Option<u64>,
    pub open_fds: Option<u64>,
    /// The soft limit of open files (`RLIMIT_NOFILE`).
    pub max_fds: Option<u64>,
    /// When the process started, in seconds since the Unix epoch.
    pub start_time_seconds: Option<f64>,
}

impl ProcessStats {
    /// Reads the figures now. Called at each scrape on the admin handler's thread: `/proc`
    /// files are made from kernel memory when read, never wait for a disk.
    pub(crate) fn read() -> Self {
        let units = units();
        let stat = std::fs::read_to_string("/proc/self/stat").ok().and_then(|text| Stat::parse(&text));
        let boot_time = std::fs::read_to_string("/proc/stat").ok().and_then(|text| boot_time(&text));
        let open_fds = std::fs::read_dir("/proc/self/fd").ok().map(|entries| entries.count() as u64);
        let max_fds = std::fs::read_to_string("/proc/self/limits").ok().and_then(|text| max_open_files(&text));
        let ticks = units.ticks_per_second as f64;
        Self {
            cpu_seconds: stat.as_ref().map(|s| (s.utime + s.stime) as f64 / ticks),
            resident_memory_bytes: stat.as_ref().map(|s| s.rss_pages.saturating_mul(units.page_size)),
            virtual_memory_bytes: stat.as_ref().map(|s| s.vsize),
            open_fds,
            max_fds,
            start_time_seconds: stat.zip(boot_time).map(|(s, boot)| boot as f64 + s.starttime as f64 / ticks),
        }
    }
}

impl ProcessStats {
    /// Adds the figures read to a scrape's `registry`, under the names and types every
    /// Prometheus client library gives them; a figure that could not be read is left out.
    pub(crate) fn register(&self, registry: &mut Registry) {
        // Registered as `process_cpu_seconds`: the encoder adds a counter's `_total`.
        if let Some(seconds) = self.cpu_seconds {
            let help = "Total user and system CPU time spent in seconds";
            registry.register("process_cpu_seconds", help, ConstCounter::new(seconds));
        }
        let sizes = [
            ("process_resident_memory_bytes", "Resident memory size in bytes", self.resident_memory_bytes),
            ("process_virtual_memory_bytes", "Virtual memory size in bytes", self.virtual_memory_bytes),
            ("process_open_fds", "Number of open file descriptors", self.open_fds),
            ("process_max_fds", "Maximum number of open file descriptors", self.max_fds),
        ];
        for (name, help, value) in sizes {
            if let Some(value) = value {
                registry.register(name, help, ConstGauge::new(value));
            }
        }
        if let Some(seconds) = self.start_time_seconds {
            let help = "Start time of the process since unix epoch in seconds";
            registry.register("process_start_time_seconds", help, ConstGauge::new(seconds));
        }
    }
}

/// The fields of `/proc/self/stat` that the metrics use (proc(5) numbers them from 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stat {
    /// (14) user-mode CPU time, in clock ticks.
    utime: u64,
    /// (15) kernel-mode CPU time, in clock ticks.
    stime: u64,
    /// (22) start time after boot, in clock ticks.
    starttime: u64,
    /// (23) virtual memory size, in bytes.
    vsize: u64,
    /// (24) resident set size, in pages.
    rss_pages: u64,
}

impl Stat {
    fn parse(text: &str) -> Option<Self> {
        // Field 2, the command name, is in parentheses and may itself hold spaces and
        // parentheses: the fields are counted from the last `)`, which starts field 3.
        let (_, rest) = text.rsplit_once(')')?;
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let field = |number: usize| fields.get(number - 3)?.parse::<u64>().ok();
        Some(Self {
            utime: field(14)?,
            stime: field(15)?,
            starttime: field(22)?,
            vsize: field(23)?,
            rss_pages: field(24)?,
        })
    }
}

/// The boot time (`btime` of `/proc/stat`), in seconds since the Unix epoch.
fn boot_time(text: &str) -> Option<u64> {
    text.lines().find_map(|line| line.strip_prefix("btime ")).and_then(|value| value.trim().parse().ok())
}

/// The soft limit of the `Max open files` line of `/proc/self/limits`; `None` when unlimited.
fn max_open_files(text: &str) -> Option<u64> {
    let line = text.lines().find_map(|line| line.strip_prefix("Max open files"))?;
    line.split_whitespace().next()?.parse().ok()
}

/// The units `/proc` counts in, as the kernel told this process at its start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Units {
    /// Clock ticks per second (`USER_HZ`) of CPU and start times.
    ticks_per_second: u64,
    /// Bytes per page of the resident set size.
    page_size: u64,
}

/// Read once from the auxiliary vector (`/proc/self/auxv`): the kernel's own values, where
/// `sysconf` would need `unsafe` code. Falls back to the values of every common Linux
/// architecture (100 ticks, 4 KiB pages) when it cannot be read.
fn units() -> Units {
    static UNITS: OnceLock<Units> = OnceLock::new();
    *UNITS.get_or_init(|| {
        let auxv = std::fs::read("/proc/self/auxv").unwrap_or_default();
        Units {
            ticks_per_second: auxv_value(&auxv, AT_CLKTCK).filter(|&t| t > 0).unwrap_or(100),
            page_size: auxv_value(&auxv, AT_PAGESZ).filter(|&p| p > 0).unwrap_or(4096),
        }
    })
}

/// Entry types of the auxiliary vector (`<elf.h>`).
const AT_PAGESZ: u64 = 6;
const AT_CLKTCK: u64 = 17;

/// The value of entry `kind` of an auxiliary vector: pairs of native words, type then value.
fn auxv_value(auxv: &[u8], kind: u64) -> Option<u64> {
    const WORD: usize = std::mem::size_of::<usize>();
    let word = |bytes: &[u8]| -> Option<u64> {
        let array: [u8; WORD] = bytes.try_into().ok()?;
        u64::try_from(usize::from_ne_bytes(array)).ok()
    };
    auxv.chunks_exact(2 * WORD).find_map(|pair| {
        let (key, value) = pair.split_at(WORD);
        (word(key)? == kind).then(|| word(value)).flatten()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_are_counted_from_the_last_parenthesis() {
        // A command name with a space and a `)` in it, as a process may give itself.
        let text = "4242 (scim) proxy) S 1 4242 4242 0 -1 4194560 1234 0 0 0 250 75 0 0 20 0 9 0 \
                    123456 104857600 5120 18446744073709551615 1 1 0 0 0 0 0 4096 17475 0 0 0 17 1 0 0 0 0 0";
        let stat = Stat::parse(text).unwrap();
        assert_eq!(stat, Stat { utime: 250, stime: 75, starttime: 123456, vsize: 104_857_600, rss_pages: 5120 });
        assert_eq!(Stat::parse("4242 (cut short) S 1 2 3"), None);
        assert_eq!(Stat::parse("no parenthesis"), None);
    }

    #[test]
    fn boot_time_and_open_files_limit_are_read_from_their_lines() {
        let stat = "cpu  1 2 3 4\nintr 99\nbtime 1767225600\nprocesses 77\n";
        assert_eq!(boot_time(stat), Some(1_767_225_600));
        assert_eq!(boot_time("cpu 1 2\n"), None);
        let limits = "Limit                     Soft Limit           Hard Limit           Units     \n\
                      Max processes             63704                63704                processes \n\
                      Max open files            1024                 524288               files     \n";
        assert_eq!(max_open_files(limits), Some(1024));
        assert_eq!(max_open_files("Max open files            unlimited            unlimited            files\n"), None);
    }

    #[test]
    fn auxv_entries_are_found_by_type() {
        let mut auxv = Vec::new();
        for (kind, value) in [(AT_PAGESZ, 16384u64), (AT_CLKTCK, 250), (0, 0)] {
            auxv.extend_from_slice(&(kind as usize).to_ne_bytes());
            auxv.extend_from_slice(&(value as usize).to_ne_bytes());
        }
        assert_eq!(auxv_value(&auxv, AT_PAGESZ), Some(16384));
        assert_eq!(auxv_value(&auxv, AT_CLKTCK), Some(250));
        assert_eq!(auxv_value(&auxv, 99), None);
        assert_eq!(auxv_value(&auxv[..5], AT_PAGESZ), None);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn this_process_shows_every_figure() {
        let stats = ProcessStats::read();
        assert!(stats.open_fds.is_some_and(|n| n >= 3), "{stats:?}");
        assert!(stats.max_fds.is_some_and(|n| n >= stats.open_fds.unwrap_or(0)), "{stats:?}");
        assert!(stats.resident_memory_bytes.is_some_and(|b| b > 1 << 20), "{stats:?}");
        assert!(stats.virtual_memory_bytes >= stats.resident_memory_bytes, "{stats:?}");
        assert!(stats.cpu_seconds.is_some_and(|s| s >= 0.0), "{stats:?}");
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64();
        let started = stats.start_time_seconds.unwrap();
        assert!(started <= now + 1.0 && started > now - 86_400.0, "started {started}, now {now}");
        assert!(units().page_size >= 4096 && units().ticks_per_second > 0, "{:?}", units());
    }
}
