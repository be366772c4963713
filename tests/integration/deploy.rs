//! The deployment files: the Kubernetes sidecar example and the Dockerfile agree with each
//! other, with Cargo and with the configuration they ship, and that configuration serves SCIM.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use acme::AcmeConfig;
use reqwest::StatusCode;
use scim_proxy::config::{Config, Variables};
use scim_proxy::runtime;
use serde::Deserialize;
use serde_json::Value;
use tokio::net::TcpListener;

use crate::support::{API_KEY, Reply, TOKEN, TestEnv, repo_file, user};

const MANIFESTS: &str = "deploy/kubernetes";
const PROXY_CONTAINER: &str = "scim-proxy";

// ---------------------------------------------------------------- the manifests

/// Every object of the files the kustomization lists, as JSON.
fn objects() -> Vec<Value> {
    let mut objects = Vec::new();
    for file in kustomization_resources() {
        let text = std::fs::read_to_string(repo_file(&format!("{MANIFESTS}/{file}"))).unwrap();
        for document in serde_yaml_ng::Deserializer::from_str(&text) {
            let value = serde_yaml_ng::Value::deserialize(document).unwrap_or_else(|e| panic!("{file}: {e}"));
            if !value.is_null() {
                objects.push(serde_json::to_value(value).unwrap());
            }
        }
    }
    objects
}

/// The objects of one file of the folder, listed in the kustomization or not.
fn file_objects(file: &str) -> Vec<Value> {
    let text = std::fs::read_to_string(repo_file(&format!("{MANIFESTS}/{file}"))).unwrap();
    serde_yaml_ng::Deserializer::from_str(&text)
        .map(|document| serde_json::to_value(serde_yaml_ng::Value::deserialize(document).unwrap()).unwrap())
        .filter(|value| !value.is_null())
        .collect()
}

/// The example Secret, which the user creates: not part of the kustomization.
fn example_secret() -> Value {
    file_objects("secret.yaml").remove(0)
}

/// Files of the folder that the kustomization leaves out on purpose: the Secret the user
/// creates (so that applying never overwrites it), and the PodMonitor, whose kind exists only
/// with the Prometheus Operator.
const NOT_APPLIED: [&str; 2] = ["secret.yaml", "podmonitor.yaml"];

fn kustomization_resources() -> Vec<String> {
    let text = std::fs::read_to_string(repo_file(&format!("{MANIFESTS}/kustomization.yaml"))).unwrap();
    let value: serde_yaml_ng::Value = serde_yaml_ng::from_str(&text).unwrap();
    let value = serde_json::to_value(value).unwrap();
    value["resources"].as_array().unwrap().iter().map(|r| r.as_str().unwrap().to_owned()).collect()
}

/// The one object of this kind.
fn the(kind: &str) -> Value {
    let mut found: Vec<Value> = objects().into_iter().filter(|o| o["kind"] == kind).collect();
    assert_eq!(found.len(), 1, "expected one {kind} in {MANIFESTS}");
    found.remove(0)
}

fn pod_spec() -> Value {
    the("Deployment")["spec"]["template"]["spec"].clone()
}

fn proxy_container() -> Value {
    let spec = pod_spec();
    let containers = spec["containers"].as_array().unwrap();
    containers.iter().find(|c| c["name"] == PROXY_CONTAINER).expect("a container named scim-proxy").clone()
}

/// `proxy.yaml` as the ConfigMap holds it.
fn config_text() -> String {
    the("ConfigMap")["data"]["proxy.yaml"].as_str().expect("a proxy.yaml key in the ConfigMap").to_owned()
}

/// The ConfigMap's configuration, parsed as `scim-proxy check` would, without its secrets.
fn config() -> Config {
    Config::parse(&config_text(), "configmap", &Variables::offline()).unwrap()
}

/// The number of a container port given by number or by name.
fn port_number(container: &Value, port: &Value) -> u16 {
    if let Some(number) = port.as_u64() {
        return u16::try_from(number).unwrap();
    }
    let name = port.as_str().unwrap();
    let ports = container["ports"].as_array().unwrap();
    let named = ports.iter().find(|p| p["name"] == name).unwrap_or_else(|| panic!("no container port named {name}"));
    u16::try_from(named["containerPort"].as_u64().unwrap()).unwrap()
}

/// The `--config` path in the container's arguments.
fn config_path(container: &Value) -> PathBuf {
    let args: Vec<&str> = container["args"].as_array().unwrap().iter().map(|a| a.as_str().unwrap()).collect();
    let at = args.iter().position(|a| *a == "--config" || *a == "-c").expect("--config in the container's args");
    PathBuf::from(args[at + 1])
}

/// The volume mounted at the deepest mount path holding `path`, and the rest of the path.
fn volume_holding(container: &Value, path: &Path) -> (Value, PathBuf) {
    let mounts = container["volumeMounts"].as_array().unwrap();
    let mount = mounts
        .iter()
        .filter(|m| path.starts_with(m["mountPath"].as_str().unwrap()))
        .max_by_key(|m| m["mountPath"].as_str().unwrap().len())
        .unwrap_or_else(|| panic!("no volume is mounted over {}", path.display()));
    let rest = path.strip_prefix(mount["mountPath"].as_str().unwrap()).unwrap().to_path_buf();
    let volumes = pod_spec()["volumes"].as_array().unwrap().clone();
    let volume = volumes.into_iter().find(|v| v["name"] == mount["name"]).expect("the mounted volume");
    (volume, rest)
}

/// The `${…}` references of a configuration text, without their braces.
fn references(text: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        let after = &rest[start + 2..];
        let end = after.find('}').unwrap();
        found.push(after[..end].to_owned());
        rest = &after[end + 1..];
    }
    found
}

// ---------------------------------------------------------------- the Dockerfile

/// One instruction: its keyword (upper case) and its arguments, continuation lines joined.
struct Instruction {
    keyword: String,
    args: String,
}

/// The Dockerfile's stages, each a list of instructions starting with its `FROM`.
fn dockerfile_stages() -> Vec<Vec<Instruction>> {
    let text = std::fs::read_to_string(repo_file("Dockerfile")).unwrap();
    let mut stages: Vec<Vec<Instruction>> = Vec::new();
    let mut logical = String::new();
    for line in text.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with('#') || (trimmed.is_empty() && logical.is_empty()) {
            continue;
        }
        if let Some(head) = trimmed.strip_suffix('\\') {
            logical.push_str(head);
            logical.push(' ');
            continue;
        }
        logical.push_str(trimmed);
        let (keyword, args) = logical.split_once(char::is_whitespace).unwrap_or((&logical, ""));
        let instruction = Instruction { keyword: keyword.to_uppercase(), args: args.trim().to_owned() };
        if instruction.keyword == "FROM" {
            stages.push(Vec::new());
        }
        stages.last_mut().expect("FROM first").push(instruction);
        logical.clear();
    }
    stages
}

fn instruction<'a>(stage: &'a [Instruction], keyword: &str) -> &'a str {
    let found = stage.iter().rev().find(|i| i.keyword == keyword);
    &found.unwrap_or_else(|| panic!("no {keyword} in the stage")).args
}

/// The `key=value` pairs of a stage's `LABEL` instructions, quotes and escapes removed.
fn labels(stage: &[Instruction]) -> std::collections::BTreeMap<String, String> {
    let mut labels = std::collections::BTreeMap::new();
    for label in stage.iter().filter(|i| i.keyword == "LABEL") {
        let mut rest = label.args.trim_start();
        while !rest.is_empty() {
            let (key, after) = rest.split_once('=').unwrap_or_else(|| panic!("LABEL {}: a key without =", label.args));
            let mut value = String::new();
            let mut chars = after.char_indices();
            let end = if after.starts_with('"') {
                chars.next();
                loop {
                    match chars.next().unwrap_or_else(|| panic!("LABEL {}: an unclosed quote", label.args)) {
                        (_, '\\') => value.extend(chars.next().map(|(_, c)| c)),
                        (at, '"') => break at + 1,
                        (_, c) => value.push(c),
                    }
                }
            } else {
                let end = after.find(char::is_whitespace).unwrap_or(after.len());
                value.push_str(&after[..end]);
                end
            };
            labels.insert(key.trim().to_owned(), value);
            rest = after[end..].trim_start();
        }
    }
    labels
}

/// The names of the binaries Cargo builds (`[[bin]]` entries of Cargo.toml).
fn cargo_binaries() -> Vec<String> {
    let text = std::fs::read_to_string(repo_file("Cargo.toml")).unwrap();
    let mut names = Vec::new();
    let mut in_bin = false;
    for line in text.lines().map(str::trim) {
        if line.starts_with('[') {
            in_bin = line == "[[bin]]";
            continue;
        }
        let value = line.strip_prefix("name").map(str::trim).and_then(|v| v.strip_prefix('='));
        if let (true, Some(value)) = (in_bin, value) {
            names.push(value.trim().trim_matches('"').to_owned());
        }
    }
    names
}

// ---------------------------------------------------------------- checks

#[test]
fn the_configmap_script_is_scripts_demo_rhai_byte_for_byte() {
    let config = config();
    let script = config.apps[0].script.file_name().unwrap().to_str().unwrap().to_owned();
    let embedded = the("ConfigMap")["data"][&script].as_str().map(str::to_owned);
    let embedded = embedded.unwrap_or_else(|| panic!("the ConfigMap has no key {script}, the script proxy.yaml names"));
    let original = std::fs::read_to_string(repo_file("scripts/demo.rhai")).unwrap();
    assert!(embedded == original, "configmap.yaml's {script} differs from scripts/demo.rhai: copy it again");
}

#[test]
fn the_configmap_config_listens_on_the_container_ports_named_scim_and_admin() {
    let config = config();
    let container = proxy_container();
    assert_eq!(config.listen.port(), port_number(&container, &"scim".into()), "listen vs. port scim");
    assert_eq!(config.admin_listen.port(), port_number(&container, &"admin".into()), "admin_listen vs. port admin");
    // The Service and the kubelet reach the pod on its IP, not on 127.0.0.1.
    assert!(config.listen.ip().is_unspecified(), "listen must bind 0.0.0.0 in a pod");
    assert!(config.admin_listen.ip().is_unspecified(), "admin_listen must bind 0.0.0.0 for the probes");
    assert_eq!(config.log.format, scim_proxy::config::LogFormat::Json);
}

#[test]
fn probes_ask_the_admin_port_for_healthz_and_readyz() {
    let container = proxy_container();
    let admin = config().admin_listen.port();
    for (probe, path) in [("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")] {
        let get = &container[probe]["httpGet"];
        assert_eq!(get["path"], path, "{probe}");
        assert_eq!(port_number(&container, &get["port"]), admin, "{probe} must ask the admin port");
    }
}

#[test]
fn the_service_sends_traffic_to_the_scim_port_only() {
    let service = the("Service");
    let container = proxy_container();
    let scim = config().listen.port();
    let ports = service["spec"]["ports"].as_array().unwrap();
    assert!(!ports.is_empty());
    for port in ports {
        assert_eq!(port_number(&container, &port["targetPort"]), scim, "{port}: only the SCIM port is exposed");
    }
    assert!(ports.iter().any(|p| p["name"] == "scim"), "the Service port is named scim");
    // A selector that misses the pod's labels leaves the Service without endpoints.
    let labels = &the("Deployment")["spec"]["template"]["metadata"]["labels"];
    for selector in [&service["spec"]["selector"], &the("Deployment")["spec"]["selector"]["matchLabels"]] {
        for (key, value) in selector.as_object().unwrap() {
            assert_eq!(&labels[key], value, "selector {key} does not match the pod's labels");
        }
    }
}

#[test]
fn the_config_is_mounted_where_the_args_point_and_holds_the_script() {
    let container = proxy_container();
    let configmap = the("ConfigMap");
    let config_file = config_path(&container);
    let (volume, rest) = volume_holding(&container, &config_file);
    assert_eq!(
        volume["configMap"]["name"], configmap["metadata"]["name"],
        "the config is not in the ConfigMap's mount"
    );
    assert!(configmap["data"][rest.to_str().unwrap()].is_string(), "the ConfigMap has no key {}", rest.display());
    // The script resolves against the configuration's folder, as the proxy does.
    let mut config = config();
    config.file = config_file;
    let script = config.script_path(&config.apps[0]);
    let (volume, rest) = volume_holding(&container, &script);
    assert_eq!(volume["configMap"]["name"], configmap["metadata"]["name"], "{} is not in the mount", script.display());
    assert!(configmap["data"][rest.to_str().unwrap()].is_string(), "the ConfigMap has no key {}", rest.display());
    let mount = container["volumeMounts"].as_array().unwrap().iter().find(|m| m["name"] == volume["name"]).unwrap();
    assert_eq!(mount["readOnly"], true, "the configuration is mounted read-only");
}

#[test]
fn every_reference_of_the_config_is_provided_to_the_container() {
    let container = proxy_container();
    let secret = example_secret();
    let env: BTreeSet<&str> = container["env"]
        .as_array()
        .map_or(&[][..], Vec::as_slice)
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    let text = config_text();
    let references = references(&text);
    assert!(references.iter().any(|r| r.starts_with("file.")), "the secrets are read from files");
    for reference in references {
        if let Some(spec) = reference.strip_prefix("env.") {
            if !spec.contains(":-") {
                assert!(env.contains(spec), "${{{reference}}} is not in the container's env");
            }
            continue;
        }
        let path = PathBuf::from(reference.strip_prefix("file.").expect("env. or file."));
        let (volume, key) = volume_holding(&container, &path);
        let key = key.to_str().unwrap();
        assert_eq!(
            volume["secret"]["secretName"],
            secret["metadata"]["name"],
            "{} is not in the Secret",
            path.display()
        );
        let keys = [&secret["stringData"], &secret["data"]];
        assert!(keys.iter().any(|k| !k[key].is_null()), "the Secret has no key {key} for {}", path.display());
        // The proxy runs as a non-root user: the file must be readable by it (world-readable,
        // or group-readable with the pod's fsGroup, which the kubelet gives the files).
        let mode = volume["secret"]["defaultMode"].as_u64().unwrap_or(0o644);
        let fs_group = !pod_spec()["securityContext"]["fsGroup"].is_null();
        assert!(mode & 0o004 != 0 || (mode & 0o040 != 0 && fs_group), "{} is unreadable for the proxy", path.display());
    }
}

// What a platform team's policy checker asks of the pod (the "restricted" Pod Security
// Standard, resources, probes, lifecycle, network, disruption, labels, scraping), one test each.

fn containers() -> Vec<Value> {
    pod_spec()["containers"].as_array().unwrap().clone()
}

/// A container's security setting, or the pod's when the container has none.
fn effective(container: &Value, field: &str) -> Value {
    let own = &container["securityContext"][field];
    if own.is_null() { pod_spec()["securityContext"][field].clone() } else { own.clone() }
}

#[test]
fn every_container_meets_the_restricted_pod_security_standard() {
    let pod = pod_spec();
    for host in ["hostNetwork", "hostPID", "hostIPC"] {
        assert_ne!(pod[host], true, "{host}");
    }
    // Volume types the restricted standard allows.
    let allowed =
        ["configMap", "secret", "emptyDir", "projected", "downwardAPI", "csi", "ephemeral", "persistentVolumeClaim"];
    for volume in pod["volumes"].as_array().unwrap() {
        let kinds: Vec<&String> = volume.as_object().unwrap().keys().filter(|k| *k != "name").collect();
        assert!(kinds.iter().all(|k| allowed.contains(&k.as_str())), "volume {volume}");
    }
    for container in containers() {
        let name = container["name"].as_str().unwrap().to_owned();
        assert_eq!(effective(&container, "runAsNonRoot"), true, "{name}: runAsNonRoot");
        assert_ne!(effective(&container, "runAsUser"), 0, "{name}: runAsUser 0");
        assert_ne!(container["securityContext"]["privileged"], true, "{name}: privileged");
        assert_eq!(container["securityContext"]["allowPrivilegeEscalation"], false, "{name}: allowPrivilegeEscalation");
        let drop = &container["securityContext"]["capabilities"]["drop"];
        assert!(drop.as_array().is_some_and(|d| d.iter().any(|c| c == "ALL")), "{name}: capabilities.drop ALL");
        let added = container["securityContext"]["capabilities"]["add"].as_array().cloned().unwrap_or_default();
        assert!(added.iter().all(|c| c == "NET_BIND_SERVICE"), "{name}: capabilities.add {added:?}");
        let seccomp = effective(&container, "seccompProfile")["type"].clone();
        assert!(seccomp == "RuntimeDefault" || seccomp == "Localhost", "{name}: seccompProfile {seccomp}");
        assert!(
            container["ports"].as_array().is_none_or(|p| p.iter().all(|p| p["hostPort"].is_null())),
            "{name}: hostPort"
        );
        // Not in the standard, but what the proxy and the example ask for.
        assert_eq!(container["securityContext"]["readOnlyRootFilesystem"], true, "{name}: readOnlyRootFilesystem");
    }
}

#[test]
fn every_container_has_resources_and_probes() {
    for container in containers() {
        let name = container["name"].as_str().unwrap().to_owned();
        let resources = &container["resources"];
        for what in ["cpu", "memory"] {
            assert!(resources["requests"][what].is_string(), "{name}: no {what} request");
        }
        assert!(resources["limits"]["memory"].is_string(), "{name}: no memory limit");
        for probe in ["livenessProbe", "readinessProbe"] {
            let probe_spec = &container[probe];
            let kinds = ["httpGet", "tcpSocket", "exec", "grpc"];
            assert!(kinds.iter().any(|k| probe_spec[k].is_object()), "{name}: no {probe}");
        }
    }
}

#[test]
fn the_app_outlives_the_proxys_drain_and_the_pod_waits_for_both() {
    let server = config().server;
    let drain = server.shutdown_delay.as_secs() + server.shutdown_grace.as_secs();
    assert!(server.shutdown_delay.as_secs() >= 1, "the Service needs a moment to stop routing to the pod");
    // Both containers get SIGTERM together: the app's is held back while the proxy may still
    // call it, or requests fail with "cannot connect" during the drain.
    let app = containers().into_iter().find(|c| c["name"] != PROXY_CONTAINER).expect("the app container");
    let pre_stop = &app["lifecycle"]["preStop"];
    let held = pre_stop["sleep"]["seconds"].as_u64().or_else(|| {
        let command = pre_stop["exec"]["command"].as_array()?;
        (command.first()? == "sleep").then(|| command.get(1)?.as_str()?.parse().ok())?
    });
    let held = held.expect("a preStop sleep on the app container");
    assert!(
        held >= drain,
        "the app's preStop ({held}s) ends before the proxy's drain (shutdown_delay + shutdown_grace = {drain}s)"
    );
    // The kubelet's grace period includes the preStop; the app needs a few seconds of its own after it.
    let grace = pod_spec()["terminationGracePeriodSeconds"].as_u64().unwrap_or(30);
    assert!(
        grace >= held + 5,
        "terminationGracePeriodSeconds {grace} leaves the app under 5 s after its {held}s preStop"
    );
    assert!(grace > drain, "terminationGracePeriodSeconds {grace} must exceed the proxy's drain ({drain}s)");
}

#[test]
fn a_network_policy_keeps_the_admin_port_from_the_cluster() {
    let policy = the("NetworkPolicy");
    let spec = &policy["spec"];
    assert_selects_the_pod(&spec["podSelector"]["matchLabels"], "the NetworkPolicy");
    assert!(spec["policyTypes"].as_array().unwrap().iter().any(|t| t == "Ingress"));
    let container = proxy_container();
    let admin = config().admin_listen.port();
    let scim = config().listen.port();
    let rules = spec["ingress"].as_array().unwrap();
    let mut open = BTreeSet::new();
    for rule in rules {
        // A rule without ports opens every port; one without peers opens them to everyone.
        let ports = rule["ports"].as_array().expect("every rule names its ports");
        let peers = rule["from"].as_array().expect("every rule names who may connect");
        assert!(!peers.is_empty(), "{rule}: an empty from admits everyone");
        for port in ports {
            let number = port_number(&container, &port["port"]);
            assert!(number == scim || number == admin, "{rule}: port {number} is neither SCIM nor admin");
            open.insert(number);
            if number == admin {
                // The admin port only from one namespace, never from any pod or address.
                for peer in peers {
                    assert!(peer["ipBlock"].is_null(), "{rule}: the admin port is open to addresses");
                    assert!(
                        peer["namespaceSelector"]["matchLabels"].is_object(),
                        "{rule}: the admin port is open beyond one namespace"
                    );
                }
            }
        }
    }
    assert_eq!(open, BTreeSet::from([scim, admin]), "the policy must admit SCIM traffic and the scraper");
}

#[test]
fn a_disruption_budget_keeps_a_pod_serving_through_drains() {
    let budget = the("PodDisruptionBudget");
    assert_selects_the_pod(&budget["spec"]["selector"]["matchLabels"], "the PodDisruptionBudget");
    let replicas = the("Deployment")["spec"]["replicas"].as_u64().unwrap_or(1);
    let min = budget["spec"]["minAvailable"].as_u64().expect("minAvailable as a number");
    assert!(
        min >= 1 && min < replicas,
        "minAvailable {min} with {replicas} replicas: a drain keeps none, or cannot proceed"
    );
}

#[test]
fn every_object_carries_the_recommended_labels() {
    let recommended = ["name", "instance", "version", "component", "part-of", "managed-by"];
    let mut all = objects();
    all.extend(NOT_APPLIED.iter().flat_map(|file| file_objects(file)));
    let pod = the("Deployment")["spec"]["template"]["metadata"].clone();
    all.push(serde_json::json!({ "kind": "pod template", "metadata": pod }));
    for object in all {
        let labels = &object["metadata"]["labels"];
        for label in recommended {
            let key = format!("app.kubernetes.io/{label}");
            assert!(labels[&key].is_string(), "{} {}: no {key}", object["kind"], object["metadata"]["name"]);
        }
        assert_eq!(labels["app.kubernetes.io/version"], env!("CARGO_PKG_VERSION"), "{}: version", object["kind"]);
    }
}

#[test]
fn the_scrape_annotations_and_the_pod_monitor_point_at_the_admin_metrics() {
    let annotations = &the("Deployment")["spec"]["template"]["metadata"]["annotations"];
    let admin = config().admin_listen.port();
    assert_eq!(annotations["prometheus.io/scrape"], "true");
    assert_eq!(annotations["prometheus.io/port"], admin.to_string());
    assert_eq!(annotations["prometheus.io/path"], "/metrics");
    let monitor = file_objects("podmonitor.yaml").remove(0);
    assert_eq!(monitor["kind"], "PodMonitor");
    assert_selects_the_pod(&monitor["spec"]["selector"]["matchLabels"], "the PodMonitor");
    let endpoint = &monitor["spec"]["podMetricsEndpoints"][0];
    assert_eq!(port_number(&proxy_container(), &endpoint["port"]), admin);
    assert_eq!(endpoint["path"], "/metrics");
}

/// Fails unless `selector` is non-empty and every label it names is the pod template's.
fn assert_selects_the_pod(selector: &Value, what: &str) {
    let labels = &the("Deployment")["spec"]["template"]["metadata"]["labels"];
    let selector = selector.as_object().unwrap_or_else(|| panic!("{what} has no matchLabels"));
    assert!(!selector.is_empty(), "{what} selects every pod");
    for (key, value) in selector {
        assert_eq!(&labels[key], value, "{what}: selector {key} does not match the pod's labels");
    }
}

#[test]
fn the_kustomization_lists_every_manifest_but_the_secret_and_the_pod_monitor() {
    let listed: BTreeSet<String> = kustomization_resources().into_iter().collect();
    let present: BTreeSet<String> = std::fs::read_dir(repo_file(MANIFESTS))
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.ends_with(".yaml") && name != "kustomization.yaml" && !NOT_APPLIED.contains(&name.as_str()))
        .collect();
    assert_eq!(listed, present);
    // `kubectl apply -k` after creating the real Secret must not put the placeholders back.
    assert!(objects().iter().all(|o| o["kind"] != "Secret"), "the kustomization applies a Secret");
}

#[test]
fn the_dockerfile_runs_cargos_binary_as_non_root_with_the_pods_ports_and_command() {
    let stages = dockerfile_stages();
    let build = &stages[0];
    let last = stages.last().unwrap();
    let binaries = cargo_binaries();
    assert_eq!(binaries.len(), 1, "Cargo builds one binary: {binaries:?}");
    let binary = &binaries[0];

    assert!(["scratch", "gcr.io/distroless/static"].iter().any(|base| instruction(last, "FROM").starts_with(base)));
    let entrypoint: Vec<String> = serde_json::from_str(instruction(last, "ENTRYPOINT")).unwrap();
    assert_eq!(entrypoint, [format!("/{binary}")]);
    let copied = last.iter().filter(|i| i.keyword == "COPY").map(|i| i.args.as_str()).collect::<Vec<_>>();
    assert!(copied.iter().any(|c| c.ends_with(&format!(" /{binary}"))), "the binary is copied to /{binary}");
    let built = build.iter().filter(|i| i.keyword == "RUN").map(|i| i.args.as_str()).collect::<Vec<_>>().join("\n");
    assert!(built.contains(&format!("--bin {binary}")) && built.contains(&format!("target/release/{binary}")));
    assert!(built.contains("--release") && built.contains("--locked"));

    let user = instruction(last, "USER");
    let uid: u32 = user.split(':').next().unwrap().parse().expect("a numeric USER, which runAsNonRoot can check");
    assert_ne!(uid, 0, "USER must not be root");

    let config = config();
    let exposed: BTreeSet<u16> = instruction(last, "EXPOSE").split_whitespace().map(|p| p.parse().unwrap()).collect();
    assert_eq!(exposed, BTreeSet::from([config.listen.port(), config.admin_listen.port()]));

    // The pod spells out the image's default command: the two must not drift apart.
    let command: Vec<String> = serde_json::from_str(instruction(last, "CMD")).unwrap();
    let args: Vec<String> = serde_json::from_value(proxy_container()["args"].clone()).unwrap();
    assert_eq!(command, args);

    // What the build copies from the context exists and is not excluded by .dockerignore.
    let ignored = std::fs::read_to_string(repo_file(".dockerignore")).unwrap();
    let ignored: Vec<&str> = ignored.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')).collect();
    let mut copied = Vec::new();
    for copy in build.iter().filter(|i| i.keyword == "COPY" && !i.args.starts_with("--")) {
        let sources: Vec<&str> = copy.args.split_whitespace().collect();
        for source in &sources[..sources.len() - 1] {
            assert!(repo_file(source).exists(), "COPY {source}: no such file in the repository");
            assert!(!ignored.iter().any(|i| i.trim_end_matches('/') == *source), "{source} is in .dockerignore");
            copied.push(PathBuf::from(source));
        }
    }
    // What the source builds in (`demo`'s configuration and script) is in the build too.
    let embedded = included_files();
    assert!(!embedded.is_empty(), "no include_str! found in src/: the search is broken");
    for file in embedded {
        assert!(
            copied.iter().any(|c| file.starts_with(c)),
            "{} is built in, but the Dockerfile does not COPY it",
            file.display()
        );
    }
}

/// The files the crate's source builds in with `include_str!` / `include_bytes!`, relative to
/// the repository.
fn included_files() -> Vec<PathBuf> {
    let root = std::fs::canonicalize(repo_file(".")).unwrap();
    let mut found = Vec::new();
    let mut folders = vec![repo_file("src")];
    while let Some(folder) = folders.pop() {
        for entry in std::fs::read_dir(folder).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                folders.push(path);
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            // What only the unit tests include (after `#[cfg(test)]`) is not in a release build.
            let text = text.split("#[cfg(test)]").next().unwrap_or_default();
            let after = |macro_call: &'static str| text.split(macro_call).skip(1);
            for piece in after("include_str!(\"").chain(after("include_bytes!(\"")) {
                let Some((name, _)) = piece.split_once('"') else { continue };
                let Ok(file) = std::fs::canonicalize(path.parent().unwrap().join(name)) else { continue };
                found.push(file.strip_prefix(&root).unwrap().to_path_buf());
            }
        }
    }
    found
}

#[test]
fn the_dockerfile_pins_its_builder_and_labels_the_image_as_cargo_describes_it() {
    let stages = dockerfile_stages();
    // A digest, not a tag that moves: the same commit builds with the same toolchain.
    let from = instruction(&stages[0], "FROM").split_whitespace().next().unwrap().to_owned();
    let (tag, digest) = from.split_once("@sha256:").unwrap_or_else(|| panic!("{from}: pin the builder by digest"));
    assert!(digest.len() == 64 && digest.chars().all(|c| matches!(c, '0'..='9' | 'a'..='f')), "{from}");
    // And a tag that says which Rust and which Alpine, for the reader and for updates.
    let (rust, alpine) = tag.strip_prefix("rust:").and_then(|t| t.split_once("-alpine")).expect("rust:X.Y.Z-alpineA.B");
    let rust: Vec<u32> = rust.split('.').map(|n| n.parse().unwrap_or_else(|_| panic!("{tag}"))).collect();
    assert_eq!(rust.len(), 3, "{tag}: an exact Rust release");
    assert!(alpine.split('.').count() == 2 && alpine.split('.').all(|n| n.parse::<u32>().is_ok()), "{tag}");
    let needed: Vec<u32> = env!("CARGO_PKG_RUST_VERSION").split('.').map(|n| n.parse().unwrap()).collect();
    assert!(rust[..2] >= needed[..2], "{tag} is older than Cargo.toml's rust-version");

    let last = stages.last().unwrap();
    let labels = labels(last);
    let label = |key: &str| labels.get(&format!("org.opencontainers.image.{key}")).map(String::as_str);
    assert_eq!(label("title"), Some(env!("CARGO_PKG_NAME")), "{labels:?}");
    assert_eq!(label("version"), Some(env!("CARGO_PKG_VERSION")), "bump the image's version label with Cargo's");
    assert_eq!(label("licenses"), Some(env!("CARGO_PKG_LICENSE")));
    assert_eq!(label("description"), Some(env!("CARGO_PKG_DESCRIPTION")));
    // The revision is a build argument, which build.rs reads too (for scim_proxy_build_info).
    assert_eq!(label("revision"), Some("${SCIM_PROXY_GIT_REVISION}"));
    for stage in [&stages[0], last] {
        let declared = stage.iter().position(|i| i.keyword == "ARG" && i.args.starts_with("SCIM_PROXY_GIT_REVISION"));
        let built = stage.iter().position(|i| i.keyword == "RUN" && i.args.contains("cargo build"));
        let labelled = stage.iter().position(|i| i.keyword == "LABEL");
        let used = built.or(labelled).unwrap_or_else(|| panic!("no build and no label in a stage"));
        assert!(declared.is_some_and(|at| at < used), "ARG SCIM_PROXY_GIT_REVISION must come before its use");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dockerfile_healthcheck_runs_the_probe_without_a_shell_and_it_tells_up_from_down() {
    let stages = dockerfile_stages();
    let last = stages.last().unwrap();
    let healthcheck = instruction(last, "HEALTHCHECK");
    let (options, command) = healthcheck.split_once("CMD ").expect("HEALTHCHECK [OPTIONS] CMD [...]");
    let command: Vec<String> =
        serde_json::from_str(command.trim()).expect("the exec form, a JSON array: scratch has no shell");
    let entrypoint: Vec<String> = serde_json::from_str(instruction(last, "ENTRYPOINT")).unwrap();
    assert_eq!(command[0], entrypoint[0], "the image's binary");
    assert_eq!(command[1], "probe");
    assert!(["live", "ready"].contains(&command[2].as_str()), "{command:?}");
    // Docker's timeout leaves the probe its own (2 s) to answer in.
    let timeout = options.split_whitespace().find_map(|o| o.strip_prefix("--timeout=")).expect("a --timeout");
    assert!(scim_proxy::config::parse_duration(timeout).unwrap() > std::time::Duration::from_secs(2), "{timeout}");

    // The probe's default address is the admin port of the image and the example pod.
    let help = std::process::Command::new(env!("CARGO_BIN_EXE_scim-proxy")).args(["probe", "--help"]).output().unwrap();
    let help = String::from_utf8_lossy(&help.stdout).into_owned();
    let admin = config().admin_listen.port();
    assert!(help.contains(&format!("[default: http://127.0.0.1:{admin}]")), "{help}");
    assert!(instruction(last, "EXPOSE").split_whitespace().any(|p| p == admin.to_string()));

    // The very command, run against a proxy (its admin address given as a container would).
    let mut env = TestEnv::start().await;
    let run = |admin: String| {
        let args = command[1..].to_vec();
        tokio::task::spawn_blocking(move || {
            let binary = env!("CARGO_BIN_EXE_scim-proxy");
            std::process::Command::new(binary).args(args).env("SCIM_PROXY_ADMIN", admin).output().unwrap()
        })
    };
    let up = run(env.admin()).await.unwrap();
    assert_eq!(up.status.code(), Some(0), "{up:?}");
    let admin = env.admin();
    env.proxy.take().unwrap().shutdown().await;
    let down = run(admin).await.unwrap();
    assert_eq!(down.status.code(), Some(1), "{down:?}");
}

#[test]
fn the_example_secret_cannot_go_live_unchanged() {
    let secret = example_secret();
    let values = secret["stringData"].as_object().unwrap();
    assert!(values.values().all(|v| v.as_str().unwrap().contains("REPLACE")), "placeholders say REPLACE");
    let placeholders: Vec<(String, String)> =
        values.iter().map(|(k, v)| (k.clone(), v.as_str().unwrap().to_owned())).collect();
    let pod = PodFiles::write(&placeholders);
    let err = Config::load(&pod.config, &Variables::default()).unwrap_err().to_string();
    assert!(err.contains("auth.bearer_tokens") && err.contains("placeholder"), "{err}");
}

/// The pod's files under a temporary root: the ConfigMap and the Secret where the Deployment
/// mounts them, with `${file./…}` references moved under that root.
struct PodFiles {
    config: PathBuf,
    _root: tempfile::TempDir,
}

impl PodFiles {
    fn write(secrets: &[(String, String)]) -> Self {
        let root = tempfile::tempdir().unwrap();
        let container = proxy_container();
        let inside = |path: &str| root.path().join(path.trim_start_matches('/'));
        let config = inside(config_path(&container).to_str().unwrap());
        let mounts = container["volumeMounts"].as_array().unwrap().clone();
        let volumes = pod_spec()["volumes"].as_array().unwrap().clone();
        for mount in &mounts {
            let dir = inside(mount["mountPath"].as_str().unwrap());
            std::fs::create_dir_all(&dir).unwrap();
            let volume = volumes.iter().find(|v| v["name"] == mount["name"]).unwrap();
            if volume["configMap"].is_object() {
                for (key, value) in the("ConfigMap")["data"].as_object().unwrap() {
                    std::fs::write(dir.join(key), value.as_str().unwrap()).unwrap();
                }
            } else if volume["secret"].is_object() {
                for (key, value) in secrets {
                    std::fs::write(dir.join(key), value).unwrap();
                }
            }
        }
        let text = config_text().replace("${file./", &format!("${{file.{}/", root.path().display()));
        std::fs::write(&config, text).unwrap();
        Self { config, _root: root }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sidecar_config_serves_scim() {
    let legacy = acme::start(TcpListener::bind("127.0.0.1:0").await.unwrap(), AcmeConfig::new(API_KEY)).await.unwrap();
    let secrets = vec![("scim-token".to_owned(), TOKEN.to_owned()), ("acme-api-key".to_owned(), API_KEY.to_owned())];
    let pod = PodFiles::write(&secrets);
    let mut vars = Variables::default();
    vars.set("ACME_BASE_URL", legacy.base_url());
    let config = Config::load(&pod.config, &vars).unwrap();
    let any: Option<SocketAddr> = Some("127.0.0.1:0".parse().unwrap());
    let running = runtime::start(&config, any, any).await.unwrap();
    let client = reqwest::Client::new();

    // Ready once the script's health() has seen the app, a moment after the start.
    let readyz = format!("http://{}/readyz", running.admin_addr);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let ready = loop {
        let ready = Reply::read(client.get(&readyz).send().await.unwrap()).await;
        if ready.status == StatusCode::OK || std::time::Instant::now() > deadline {
            break ready;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    assert_eq!(ready.status, StatusCode::OK, "{}", ready.text);
    assert_eq!(ready.body["apps"][0]["legacy_health"]["healthy"], true, "{}", ready.text);
    assert_eq!(ready.body["apps"][0]["readiness_covers_legacy"], true, "{}", ready.text);
    assert!(ready.body["apps"][0]["functions"].as_array().is_some_and(|f| !f.is_empty()), "{}", ready.text);

    let base = format!("http://{}/scim/v2", running.scim_addr);
    let created = client
        .post(format!("{base}/Users"))
        .bearer_auth(TOKEN)
        .header("content-type", "application/scim+json")
        .body(user("sidecar").to_string())
        .send()
        .await
        .unwrap();
    let created = Reply::read(created).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
    let found = client
        .get(format!("{base}/Users"))
        .query(&[("filter", "userName eq \"sidecar\"")])
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    let found = Reply::read(found).await;
    assert_eq!(found.body["totalResults"], 1, "{}", found.text);
    assert_eq!(found.body["Resources"][0]["id"], created.body["id"]);

    running.shutdown().await;
}
