//! The configuration keys a reload cannot apply: named when a reload changes them, and kept at
//! the values the proxy started with until it restarts.

use crate::config::Config;

/// One key a reload cannot apply: its name, how to read it, how to put back its started value.
struct Key {
    name: &'static str,
    read: fn(&Config) -> String,
    keep: fn(&mut Config, &Config),
}

/// Every configuration key only a restart applies; every other key a reload applies. A
/// reload compares each of these with the value the proxy started with, names those that
/// changed, and keeps the started value in force (so that `/readyz` and the rest of the proxy
/// see what really serves).
///
/// Why each is here: the listeners are bound and their connection slots counted at start
/// (`listen`, `admin_listen`, `*.max_connections`), the logger is installed once (`log.format`,
/// `log.level`, `log.flush_interval`), the watchers run at the intervals they started with (`*_interval`), the
/// histograms keep the buckets they were made with (`metrics.latency_buckets`), and the TLS
/// acceptor and its certificate watcher are built at start (`tls.*`; the certificate files
/// themselves are read again every `tls.reload_interval`).
const KEYS: &[Key] = &[
    Key { name: "listen", read: |c| c.listen.to_string(), keep: |c, s| c.listen = s.listen },
    Key { name: "admin_listen", read: |c| c.admin_listen.to_string(), keep: |c, s| c.admin_listen = s.admin_listen },
    Key {
        name: "admin.max_connections",
        read: |c| c.admin.max_connections.to_string(),
        keep: |c, s| c.admin.max_connections = s.admin.max_connections,
    },
    Key { name: "log.format", read: |c| format!("{:?}", c.log.format), keep: |c, s| c.log.format = s.log.format },
    Key { name: "log.level", read: |c| c.log.level.clone(), keep: |c, s| c.log.level.clone_from(&s.log.level) },
    Key {
        name: "log.flush_interval",
        read: |c| format!("{:?}", c.log.flush_interval),
        keep: |c, s| c.log.flush_interval = s.log.flush_interval,
    },
    Key {
        name: "server.max_connections",
        read: |c| c.server.max_connections.to_string(),
        keep: |c, s| c.server.max_connections = s.server.max_connections,
    },
    Key {
        name: "server.script_reload_interval",
        read: |c| format!("{:?}", c.server.script_reload_interval),
        keep: |c, s| c.server.script_reload_interval = s.server.script_reload_interval,
    },
    Key {
        name: "server.config_reload_interval",
        read: |c| format!("{:?}", c.server.config_reload_interval),
        keep: |c, s| c.server.config_reload_interval = s.server.config_reload_interval,
    },
    Key {
        name: "server.health_interval",
        read: |c| format!("{:?}", c.server.health_interval),
        keep: |c, s| c.server.health_interval = s.server.health_interval,
    },
    Key {
        name: "metrics.latency_buckets",
        read: |c| format!("{:?}", c.metrics.latency_buckets),
        keep: |c, s| c.metrics.latency_buckets.clone_from(&s.metrics.latency_buckets),
    },
    // The exporter and its queue are made at start.
    Key { name: "traces", read: |c| format!("{:?}", c.traces), keep: |c, s| c.traces.clone_from(&s.traces) },
    // Turned on or off; its keys below are compared when it is on both times.
    Key { name: "tls", read: |c| c.tls.is_some().to_string(), keep: keep_tls },
    Key { name: "tls.cert", read: |c| format!("{:?}", c.tls.as_ref().map(|t| &t.cert)), keep: keep_tls },
    Key { name: "tls.key", read: |c| format!("{:?}", c.tls.as_ref().map(|t| &t.key)), keep: keep_tls },
    Key { name: "tls.client_ca", read: |c| format!("{:?}", c.tls.as_ref().map(|t| &t.client_ca)), keep: keep_tls },
    Key {
        name: "tls.reload_interval",
        read: |c| format!("{:?}", c.tls.as_ref().map(|t| t.reload_interval)),
        keep: keep_tls,
    },
];

fn keep_tls(config: &mut Config, started: &Config) {
    config.tls.clone_from(&started.tls);
}

/// The names of the keys only a restart applies, in the order of docs/operations.md's list.
#[cfg(test)]
pub(crate) fn names() -> impl Iterator<Item = &'static str> {
    KEYS.iter().map(|key| key.name)
}

/// The restart-only keys whose value in `config` differs from the one the proxy `started`
/// with; a key inside a section that appeared or went (`tls.cert` when `tls` did) is not
/// named besides the section.
pub(crate) fn changed(started: &Config, config: &Config) -> Vec<&'static str> {
    let differs: Vec<&'static str> =
        KEYS.iter().filter(|key| (key.read)(started) != (key.read)(config)).map(|key| key.name).collect();
    differs
        .iter()
        .filter(|name| !differs.iter().any(|section| name.strip_prefix(*section).is_some_and(|r| r.starts_with('.'))))
        .copied()
        .collect()
}

/// `config` with every restart-only key put back to the value the proxy `started` with: the
/// configuration a reload puts in force.
pub(crate) fn in_force(mut config: Config, started: &Config) -> Config {
    for key in KEYS {
        (key.keep)(&mut config, started);
    }
    config
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Variables;

    const BASE: &str = r#"
listen: 127.0.0.1:8080
admin_listen: 127.0.0.1:9090
tls: {cert: a.pem, key: a.key}
apps:
  - name: acme
    base_path: /scim/v2
    script: demo.rhai
    auth: {bearer_tokens: ["a-token-of-sufficient-length"]}
    legacy: {base_url: "http://127.0.0.1:7070/api"}
"#;

    /// For each restart-only key, an edit of `BASE` that changes it and nothing else.
    const EDITS: &[(&str, &str, &str)] = &[
        ("listen", "listen: 127.0.0.1:8080", "listen: 127.0.0.1:8081"),
        ("admin_listen", "admin_listen: 127.0.0.1:9090", "admin_listen: 127.0.0.1:9091"),
        ("admin.max_connections", "apps:", "admin: {max_connections: 8}\napps:"),
        ("log.format", "apps:", "log: {format: json}\napps:"),
        ("log.level", "apps:", "log: {level: debug}\napps:"),
        ("log.flush_interval", "apps:", "log: {flush_interval: 1s}\napps:"),
        ("server.max_connections", "apps:", "server: {max_connections: 10}\napps:"),
        ("server.script_reload_interval", "apps:", "server: {script_reload_interval: 1s}\napps:"),
        ("server.config_reload_interval", "apps:", "server: {config_reload_interval: 1s}\napps:"),
        ("server.health_interval", "apps:", "server: {health_interval: 1s}\napps:"),
        ("metrics.latency_buckets", "apps:", "metrics: {latency_buckets: [0.1, 1]}\napps:"),
        ("traces", "apps:", "traces: {otlp_endpoint: \"http://127.0.0.1:4318\"}\napps:"),
        ("tls", "tls: {cert: a.pem, key: a.key}\n", ""),
        ("tls.cert", "cert: a.pem", "cert: b.pem"),
        ("tls.key", "key: a.key", "key: b.key"),
        ("tls.client_ca", "key: a.key", "key: a.key, client_ca: ca.pem"),
        ("tls.reload_interval", "key: a.key", "key: a.key, reload_interval: 1m"),
    ];

    fn parse(text: &str) -> Config {
        Config::parse(text, "proxy.yaml", &Variables::default()).unwrap_or_else(|e| panic!("{e}\n{text}"))
    }

    #[test]
    fn each_restart_only_key_is_named_when_it_alone_changes_and_kept_at_its_started_value() {
        let started = parse(BASE);
        assert_eq!(changed(&started, &parse(BASE)), Vec::<&str>::new());
        let edited: Vec<&str> = EDITS.iter().map(|(key, _, _)| *key).collect();
        assert_eq!(edited, names().collect::<Vec<_>>(), "every restart-only key has an edit here, in order");
        for (key, from, to) in EDITS {
            assert!(BASE.contains(from), "{key}: {from}");
            let reloaded = parse(&BASE.replacen(from, to, 1));
            assert_eq!(changed(&started, &reloaded), vec![*key]);
            // In force after the reload: the started value, so nothing differs any more.
            assert_eq!(changed(&started, &in_force(reloaded, &started)), Vec::<&str>::new(), "{key}");
        }
    }

    #[test]
    fn several_changes_are_named_together_and_the_keys_a_reload_applies_are_kept_as_edited() {
        let started = parse(BASE);
        let edit = "server: {max_connections: 10, shutdown_grace: 1s, header_read_timeout: 2s}\n\
                    admin: {max_connections: 8, recent_requests: 5}\nlog: {bodies: true}\napps:";
        let reloaded = parse(&BASE.replacen("apps:", edit, 1));
        assert_eq!(changed(&started, &reloaded), vec!["admin.max_connections", "server.max_connections"]);
        let applied = in_force(reloaded, &started);
        assert_eq!((applied.server.max_connections, applied.admin.max_connections), (1024, 64));
        assert_eq!(applied.server.shutdown_grace, std::time::Duration::from_secs(1));
        assert_eq!(applied.server.header_read_timeout, std::time::Duration::from_secs(2));
        assert!(applied.log.bodies && applied.admin.recent_requests == 5);
    }

    /// The README's configuration table marks exactly these keys "takes a restart", and
    /// docs/operations.md's list under *Reload of `proxy.yaml`* names exactly these.
    #[test]
    fn the_readme_names_the_same_restart_only_keys() {
        let readme = include_str!("../../README.md");
        let operations = include_str!("../../docs/operations.md");
        let sorted = |mut keys: Vec<&'static str>| {
            keys.sort_unstable();
            keys
        };
        let marked = readme
            .lines()
            .filter(|line| line.starts_with("| `") && line.contains("takes a restart"))
            .filter_map(|line| line.strip_prefix("| `")?.split('`').next())
            .collect();
        assert_eq!(sorted(marked), sorted(names().collect()), "the configuration table");
        let (_, list) = operations.split_once("Only a restart applies these keys: ").unwrap();
        let list = list.split_once(';').map_or(list, |(list, _)| list);
        let listed = list.split('`').skip(1).step_by(2).collect();
        assert_eq!(sorted(listed), sorted(names().collect()), "the list under Reload of proxy.yaml");
    }
}
