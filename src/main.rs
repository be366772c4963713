//! The `scim-proxy` command: run the proxy, check a configuration, or start the demo.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use scim_proxy::config::{Config, Variables};
use scim_proxy::script::{ScriptEngine, lint};
use scim_proxy::{demo, mapping_test, proxy, telemetry};

/// mimalloc: the proxy allocates many small short-lived values per request (JSON, script
/// values); it serves them faster than the system allocator and gives freed memory back.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Debug, Parser)]
#[command(
    name = "scim-proxy",
    version,
    about = "A SCIM 2.0 endpoint in front of an in-house user API, mapped by a Rhai script"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the apps of a configuration (the default command).
    Run {
        /// The configuration file.
        #[arg(long, short, default_value = "proxy.yaml", env = "SCIM_PROXY_CONFIG")]
        config: PathBuf,
        /// Address of the SCIM listener, overriding `listen` (port 0 picks a free port).
        #[arg(long)]
        listen: Option<SocketAddr>,
        /// Address of the admin listener, overriding `admin_listen`.
        #[arg(long)]
        admin_listen: Option<SocketAddr>,
    },
    /// Validate a configuration and compile every script; exit non-zero on any problem.
    Check {
        /// The configuration file.
        #[arg(long, short, default_value = "proxy.yaml", env = "SCIM_PROXY_CONFIG")]
        config: PathBuf,
        /// Also show, for each app, which attributes this identity provider sends by default
        /// are stored, ignored or refused, and what to change on either side.
        #[arg(long, value_parser = clap::builder::PossibleValuesParser::new(scim_proxy::idp::NAMES))]
        idp: Option<String>,
    },
    /// Run the mapping test files kept beside the scripts, against a stand-in legacy app.
    ///
    /// Exit code 0 when every case passes, 1 when one fails, 2 when the run cannot start.
    Test {
        /// Only the app of this name.
        app: Option<String>,
        /// The configuration file.
        #[arg(long, short, default_value = "proxy.yaml", env = "SCIM_PROXY_CONFIG")]
        config: PathBuf,
        /// Run these test files (e.g. recordings) instead of the ones beside the scripts.
        #[arg(long = "file", short = 'f', num_args = 1..)]
        files: Vec<PathBuf>,
        /// Show the proxy's log (script log lines included) on stderr.
        #[arg(long, short)]
        verbose: bool,
    },
    /// Start the bundled Acme Directory API and the proxy in front of it.
    Demo {
        /// The configuration file.
        #[arg(long, short, default_value = "proxy.yaml")]
        config: PathBuf,
        /// Address of the SCIM listener, overriding `listen`.
        #[arg(long)]
        listen: Option<SocketAddr>,
        /// Address of the admin listener, overriding `admin_listen`.
        #[arg(long)]
        admin_listen: Option<SocketAddr>,
        /// Address of the bundled Acme Directory API.
        #[arg(long, default_value = "127.0.0.1:0")]
        legacy_listen: SocketAddr,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let command =
        cli.command.unwrap_or(Command::Run { config: PathBuf::from("proxy.yaml"), listen: None, admin_listen: None });
    if let Command::Test { app, config, files, verbose } = command {
        return test(mapping_test::Options { config, app, files }, verbose);
    }
    let result = match command {
        Command::Test { .. } => Ok(()),
        Command::Check { config, idp } => check(&config, idp.as_deref()),
        Command::Run { config, listen, admin_listen } => {
            runtime().and_then(|rt| rt.block_on(run(config, listen, admin_listen)))
        }
        Command::Demo { config, listen, admin_listen, legacy_listen } => {
            runtime().and_then(|rt| rt.block_on(demo::run(&config, listen, admin_listen, legacy_listen)))
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread().enable_all().build()?)
}

async fn run(path: PathBuf, listen: Option<SocketAddr>, admin_listen: Option<SocketAddr>) -> anyhow::Result<()> {
    let config = Config::load(&path, &Variables::default())?;
    telemetry::init(&config.log).map_err(anyhow::Error::msg)?;
    let running = proxy::start(&config, listen, admin_listen).await?;
    let reloader = tokio::spawn(reload_on_sighup(running.shared.clone()));
    demo::wait_for_signal().await;
    tracing::info!("shutting down");
    reloader.abort();
    running.shutdown().await;
    Ok(())
}

/// Reloads the configuration on every SIGHUP.
async fn reload_on_sighup(shared: std::sync::Arc<proxy::Shared>) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let Ok(mut hangup) = signal(SignalKind::hangup()) else {
            tracing::warn!("cannot listen for SIGHUP: reload by editing the file only");
            return;
        };
        while hangup.recv().await.is_some() {
            tracing::info!("SIGHUP: reloading the configuration");
            if proxy::reload_config(&shared).await == proxy::Reloaded::Unchanged {
                tracing::info!("configuration unchanged");
            }
        }
    }
    #[cfg(not(unix))]
    let _ = shared;
}

#[allow(clippy::print_stdout)] // `check` reports to its user on stdout
fn check(path: &std::path::Path, idp: Option<&str>) -> anyhow::Result<()> {
    let vars = Variables::offline();
    let config = Config::load(path, &vars)?;
    let profile = idp.map(scim_proxy::idp::profile).transpose().map_err(anyhow::Error::msg)?;
    let unset = vars.unset();
    if !unset.is_empty() {
        println!("note: not set here, so checked with placeholders (they must be set for run): {}", unset.join(", "));
    }
    let engine = std::sync::Arc::new(ScriptEngine::with_bounds(&config.script));
    let mut failed = false;
    for app in &config.apps {
        let script = config.script_path(app);
        let text = match std::fs::read_to_string(&script) {
            Ok(text) => text,
            Err(error) => {
                println!("app {}: cannot read the script {}: {error}", app.name, script.display());
                failed = true;
                continue;
            }
        };
        match engine.compile_in_time_blocking(text.clone(), &script) {
            Ok(compiled) => {
                let functions: Vec<String> = compiled.functions().map(|(n, a)| format!("{n}/{a}")).collect();
                println!("app {}: {} compiles; defines {}", app.name, script.display(), functions.join(", "));
                for finding in lint::lint(&compiled, &text) {
                    println!("app {}: {}:{}: {}", app.name, script.display(), finding.line, finding.message);
                    failed = true;
                }
                let deactivate = app.user_delete == scim_proxy::config::UserDelete::Deactivate;
                for (operation, how) in lint::operations(&compiled, deactivate) {
                    println!("app {}:   {operation:<32} {how}", app.name);
                }
                if let Some(profile) = &profile {
                    let serves_groups = compiled.functions().any(|(name, _)| name == "get_group");
                    match idp_report(app, profile, serves_groups) {
                        Ok(report) => print!("{report}"),
                        Err(problem) => {
                            println!("app {}: {problem}", app.name);
                            failed = true;
                        }
                    }
                }
            }
            Err(error) => {
                println!("app {}: {error}", app.name);
                failed = true;
            }
        }
    }
    if failed {
        anyhow::bail!("{}: some scripts have errors", path.display());
    }
    println!("{}: ok", path.display());
    Ok(())
}

/// `check --idp`: what an app does with each attribute the identity provider sends by default.
fn idp_report(
    app: &scim_proxy::config::AppConfig,
    profile: &scim_proxy::idp::Profile,
    serves_groups: bool,
) -> Result<String, String> {
    let users = scim_proxy::app::user_schema(app).map_err(|(key, detail)| format!("{key}: {detail}"))?;
    let groups = serves_groups
        .then(|| scim_proxy::app::group_schema(app))
        .transpose()
        .map_err(|(key, detail)| format!("{key}: {detail}"))?;
    let policy = app.schema.unsupported_attributes;
    let findings = scim_proxy::idp::assess(profile, &users, groups.as_ref(), policy)?;
    Ok(scim_proxy::idp::render(&app.name, profile, policy, &findings, serves_groups))
}

/// `scim-proxy test`: 0 when every case passes, 1 when one fails, 2 when the run cannot start.
fn test(options: mapping_test::Options, verbose: bool) -> ExitCode {
    if verbose {
        let log = scim_proxy::config::LogConfig { level: "scim_proxy=debug,warn".into(), ..Default::default() };
        let _ = telemetry::init(&log);
    }
    let outcome = runtime().map_err(|e| e.to_string()).and_then(|rt| {
        let mut stdout = std::io::stdout();
        rt.block_on(mapping_test::run(&options, &mut stdout)).map_err(|e| e.to_string())
    });
    match outcome {
        Ok(summary) if summary.failed == 0 => ExitCode::SUCCESS,
        Ok(_) => ExitCode::from(1),
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::from(2)
        }
    }
}
