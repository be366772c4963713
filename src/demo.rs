//! The `demo` command: the bundled Acme Directory API and the proxy in front of it, on one machine.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use acme::{AcmeConfig, store::NewUser};
use anyhow::Context as _;
use tokio::net::TcpListener;

use crate::config::{Config, ConfigError, Variables};
use crate::observe::telemetry;
use crate::runtime;

/// A line of the command's report on stdout (see [`crate::observe::telemetry::say`]).
macro_rules! say {
    ($($arg:tt)*) => {
        crate::observe::telemetry::say(format_args!($($arg)*))
    };
}

/// The shipped `proxy.yaml` and the script it names, built into the binary: `demo` runs with
/// them where there is no `proxy.yaml` (an installed binary, the container image).
const BUILT_IN_CONFIG: &str = include_str!("../proxy.yaml");
const BUILT_IN_SCRIPT_PATH: &str = "scripts/demo.rhai";
const BUILT_IN_SCRIPT: &str = include_str!("../scripts/demo.rhai");

/// A few people so that the first `GET /Users` shows something.
const PEOPLE: &[(&str, &str, &str, &str, &str)] = &[
    ("bjensen", "Barbara", "Jensen", "Engineering", "Software Engineer"),
    ("jsmith", "John", "Smith", "Sales", "Account Executive"),
    ("mchen", "Mei", "Chen", "Finance", "Controller"),
];

/// Starts the bundled API and the proxy, prints how to reach them, and serves until a signal.
///
/// The configuration is the file given (`--config`), else `proxy.yaml` in the working
/// directory, else the built-in one ([`load`]); the first line printed says which. Its
/// `${env.ACME_BASE_URL}` and `${env.ACME_API_KEY}` are pointed at the API just started;
/// `${env.SCIM_TOKEN}` and `${env.SCIM_ADMIN_TOKEN}` (the admin listener's `/requests`) are
/// taken from the environment or made up, and printed.
pub async fn run(
    config_path: Option<&Path>,
    listen: Option<SocketAddr>,
    admin_listen: Option<SocketAddr>,
    legacy_listen: SocketAddr,
) -> anyhow::Result<()> {
    let mut signals = crate::runtime::signals::StopSignals::listen();
    let api_key = std::env::var("ACME_API_KEY").unwrap_or_else(|_| random_secret("acme"));
    let token = std::env::var("SCIM_TOKEN").unwrap_or_else(|_| random_secret("demo"));
    let admin_token = std::env::var("SCIM_ADMIN_TOKEN").unwrap_or_else(|_| random_secret("admin"));
    let listener =
        TcpListener::bind(legacy_listen).await.with_context(|| format!("cannot listen on {legacy_listen}"))?;
    let legacy = acme::start(listener, AcmeConfig::new(api_key.clone())).await?;
    seed(&legacy.store());

    let mut vars = Variables::default();
    vars.set("ACME_BASE_URL", legacy.base_url());
    vars.set("ACME_API_KEY", api_key);
    vars.set("SCIM_TOKEN", token.clone());
    vars.set("SCIM_ADMIN_TOKEN", admin_token.clone());
    let (config, source) = load(config_path, &vars)?;
    telemetry::init(&config.log).map_err(anyhow::Error::msg)?;
    let running = runtime::start(&config, listen, admin_listen).await?;

    let app = &config.apps[0];
    let endpoint = format!("http://{}{}", running.scim_addr, app.base_path);
    say!("Configuration: {source}");
    say!("Acme Directory API: {}", legacy.base_url());
    say!("SCIM endpoint: {endpoint}");
    say!("Bearer token: {token}");
    say!("Admin: http://{}/readyz", running.admin_addr);
    if config.admin.keeps_requests() {
        say!("Admin token: {admin_token}");
        say!(
            "Recent requests: http://{}/requests (a browser asks for a user name and password: any name, the admin token as password)",
            running.admin_addr
        );
    }
    say!("Try: curl -s -H 'Authorization: Bearer {token}' '{endpoint}/Users?filter=userName%20eq%20%22bjensen%22'");
    use std::io::Write as _;
    let _ = std::io::stdout().flush();

    signals.next().await;
    tracing::info!("shutting down");
    running.shutdown().await;
    legacy.shutdown().await;
    Ok(())
}

/// The demo's configuration and where it came from, as the line `Configuration:` says it:
/// the file given; else `proxy.yaml` in the working directory, when there is one; else the
/// shipped one built into the binary.
pub(crate) fn load(given: Option<&Path>, vars: &Variables) -> Result<(Config, String), ConfigError> {
    let local = Path::new("proxy.yaml");
    if let Some(path) = given {
        return Ok((Config::load(path, vars)?, path.display().to_string()));
    }
    let here = std::env::current_dir().map_or_else(|_| local.to_path_buf(), |dir| dir.join(local));
    if local.exists() {
        return Ok((Config::load(local, vars)?, here.display().to_string()));
    }
    let mut config = Config::parse(BUILT_IN_CONFIG, "proxy.yaml (built in)", vars)?;
    config.built_in_scripts.insert(PathBuf::from(BUILT_IN_SCRIPT_PATH), BUILT_IN_SCRIPT);
    // Nothing on disk to watch: a `scripts/demo.rhai` in the working directory is not the script.
    config.server.script_reload_interval = Duration::ZERO;
    let source = format!("built in (proxy.yaml and {BUILT_IN_SCRIPT_PATH} as shipped; there is no {})", here.display());
    Ok((config, source))
}

fn seed(store: &acme::Store) {
    for (login, first, last, department, title) in PEOPLE {
        let user = NewUser {
            login: (*login).into(),
            first_name: Some((*first).into()),
            last_name: Some((*last).into()),
            display_name: Some(format!("{first} {last}")),
            mail: Some(format!("{login}@acme.example")),
            department: Some((*department).into()),
            title: Some((*title).into()),
            ..NewUser::default()
        };
        if let Err(error) = store.create_user(user) {
            tracing::warn!(%error, login, "cannot seed a demo user");
        }
    }
}

fn random_secret(prefix: &str) -> String {
    format!("{prefix}-{}", uuid::Uuid::new_v4().simple())
}
