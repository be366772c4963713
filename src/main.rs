//! The `scim-proxy` command: run the proxy, check a configuration, or start the demo.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use scim_proxy::authoring::mapping_test;
use scim_proxy::config::{Config, ConfigError, Variables};
#[cfg(feature = "demo")]
use scim_proxy::demo;
use scim_proxy::observe::telemetry;
use scim_proxy::runtime;
use scim_proxy::script::{ScriptEngine, lint};

/// A line of the command's report on stdout (see [`telemetry::say`]).
macro_rules! say {
    ($($arg:tt)*) => {
        telemetry::say(format_args!($($arg)*))
    };
}

/// mimalloc: the proxy allocates many small short-lived values per request (JSON, script
/// values); it serves them faster than the system allocator and gives freed memory back.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// How a command ends, for scripts and orchestrators; shown by `--help` and in the README's
/// "Command line" section.
const EXIT_CODES: &str = "\
Exit codes:
  0  success: check found nothing wrong, test passed every case, probe was answered 200,
     run and demo stopped on SIGTERM or Ctrl-C
  1  check found an error in the configuration or a script; test had a failing case; probe got
     no 200 (not ready, not listening, no answer in time, a bad --admin: Docker's HEALTHCHECK
     reads 2 as reserved)
  2  the command could not do its work: an unknown argument, a configuration that cannot be read,
     an address already in use; for run, demo and test also a configuration that is not valid
     or a script that does not compile
  3  run stopped before every request had finished: those still running when
     server.shutdown_grace ran out were answered 503 (and logged), or a second SIGTERM or
     Ctrl-C asked it to exit at once

A failure is one line on stderr: error: <what> (<cause>)";

#[derive(Debug, Parser)]
#[command(
    name = "scim-proxy",
    version,
    about = "A SCIM 2.0 endpoint in front of an in-house user API, mapped by a Rhai script",
    after_help = EXIT_CODES,
    args_conflicts_with_subcommands = true
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// Without a command, `run` with these options.
    #[command(flatten)]
    run: RunArgs,
}

/// The options of `run`, which are also those of the command line without a command.
#[derive(Debug, clap::Args)]
struct RunArgs {
    /// The configuration file.
    #[arg(long, short, default_value = "proxy.yaml", env = "SCIM_PROXY_CONFIG")]
    config: PathBuf,
    /// Address of the SCIM listener, overriding `listen` (port 0 picks a free port).
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// Address of the admin listener, overriding `admin_listen`.
    #[arg(long)]
    admin_listen: Option<SocketAddr>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the apps of a configuration (the default command).
    Run(RunArgs),
    /// Validate a configuration and compile every script; exit non-zero on any problem.
    Check {
        /// The configuration file.
        #[arg(long, short, default_value = "proxy.yaml", env = "SCIM_PROXY_CONFIG")]
        config: PathBuf,
        /// Also show, for each app, which attributes this identity provider sends by default
        /// are stored, ignored or refused, and what to change on either side.
        #[arg(long, value_parser = clap::builder::PossibleValuesParser::new(scim_proxy::authoring::idp::NAMES))]
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
    /// Ask a running proxy whether it is ready (`/readyz`) or alive (`/healthz`): exit code 0
    /// when it answers 200, 1 otherwise, with one line saying why. For container health
    /// checks: the image has no shell or HTTP client.
    Probe {
        /// `ready` asks `/readyz`, `live` asks `/healthz`.
        #[arg(value_parser = clap::builder::PossibleValuesParser::new(["ready", "live"]))]
        what: String,
        /// The admin listener (`admin_listen`), as a base URL.
        #[arg(long, default_value = "http://127.0.0.1:9090", env = "SCIM_PROXY_ADMIN")]
        admin: String,
        /// How long to wait for the answer, connecting included (e.g. `500ms`, `2s`).
        #[arg(long, default_value = "2s", value_parser = scim_proxy::config::parse_duration)]
        timeout: std::time::Duration,
    },
    /// Start the bundled Acme Directory API and the proxy in front of it.
    // Without the `demo` feature the command stays, to say why it does nothing.
    #[cfg_attr(not(feature = "demo"), command(about = "Not in this build: it was built without the `demo` feature"))]
    #[cfg_attr(not(feature = "demo"), allow(dead_code))]
    Demo {
        /// The configuration file [default: proxy.yaml when the working directory has one,
        /// else the shipped proxy.yaml and scripts/demo.rhai built into the binary]
        #[arg(long, short)]
        config: Option<PathBuf>,
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

/// Exit code 1: the command ran and found a problem (`check`).
const FOUND_A_PROBLEM: u8 = 1;
/// Exit code 2: the command could not do its work.
const CANNOT_RUN: u8 = 2;
/// Exit code 3: `run` stopped before every request had finished (`server.shutdown_grace` ran
/// out, or a second signal asked it to stop at once).
const CUT_SHORT: u8 = 3;

/// A command that failed: what to tell its user, and the exit code.
struct Failed {
    code: u8,
    error: anyhow::Error,
}

impl From<anyhow::Error> for Failed {
    fn from(error: anyhow::Error) -> Self {
        Self { code: CANNOT_RUN, error }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let command = cli.command.unwrap_or(Command::Run(cli.run));
    if let Command::Test { app, config, files, verbose } = command {
        return test(mapping_test::Options { config, app, files }, verbose);
    }
    if let Command::Probe { what, admin, timeout } = command {
        return probe(&what, &admin, timeout);
    }
    let result = match command {
        Command::Test { .. } | Command::Probe { .. } => Ok(()),
        Command::Check { config, idp } => check(&config, idp.as_deref()),
        Command::Run(RunArgs { config, listen, admin_listen }) => {
            let rt = match runtime() {
                Ok(rt) => rt,
                Err(error) => return failed(&error, CANNOT_RUN),
            };
            let code = match rt.block_on(run(config, listen, admin_listen)) {
                Ok(code) => code,
                Err(error) => {
                    telemetry::flush_log();
                    eprintln!("{}", telemetry::failure(&describe(&error)));
                    CANNOT_RUN
                }
            };
            telemetry::flush_log();
            // Exit with the runtime still alive: dropping it would shut its drivers down under
            // script threads still running a request cut short (they would panic), and wait
            // for them past the grace time they were given.
            std::process::exit(code.into());
        }
        #[cfg(feature = "demo")]
        Command::Demo { config, listen, admin_listen, legacy_listen } => runtime()
            .and_then(|rt| rt.block_on(demo::run(config.as_deref(), listen, admin_listen, legacy_listen)))
            .map_err(Failed::from),
        #[cfg(not(feature = "demo"))]
        Command::Demo { .. } => Err(Failed::from(anyhow::anyhow!(
            "this scim-proxy was built without the demo (the cargo feature `demo`, on by default): build it with the default features"
        ))),
    };
    telemetry::flush_log();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failed { code, error }) => failed(&error, code),
    }
}

/// Prints a failure as the log format asks and answers its exit code.
fn failed(error: &anyhow::Error, code: u8) -> ExitCode {
    telemetry::flush_log();
    eprintln!("{}", telemetry::failure(&describe(error)));
    ExitCode::from(code)
}

/// An error as one line, `what (cause: deeper cause)`: each message of the chain once.
///
/// The proxy's own errors either show their cause in their message or expose it as their
/// source, never both; the causes here come from the context added on the way up.
fn describe(error: &anyhow::Error) -> String {
    let causes: Vec<String> = error.chain().skip(1).map(ToString::to_string).collect();
    if causes.is_empty() { error.to_string() } else { format!("{error} ({})", causes.join(": ")) }
}

/// The threads the process serves on: one a core, each a runtime of its own
/// ([`scim_proxy::runtime::workers`]). Script calls run on them in fibers, each on a stack of
/// its own (`scim_proxy::script`), so they keep the default stack.
fn runtime() -> anyhow::Result<scim_proxy::runtime::workers::Workers> {
    scim_proxy::runtime::workers::build().map_err(anyhow::Error::msg).context("cannot start the async runtime")
}

/// Serves until SIGTERM or SIGINT, then drains; answers the exit code: 0, or [`CUT_SHORT`]
/// when requests were still running at the end of `server.shutdown_grace`.
async fn run(path: PathBuf, listen: Option<SocketAddr>, admin_listen: Option<SocketAddr>) -> anyhow::Result<u8> {
    // Before anything is bound: a SIGTERM from then on drains.
    let mut signals = scim_proxy::runtime::signals::StopSignals::listen();
    if telemetry::asks_for_json(&path) {
        telemetry::json_lines();
    }
    let config = Config::load(&path, &Variables::default())?;
    telemetry::init(&config.log).map_err(anyhow::Error::msg)?;
    let running = runtime::start(&config, listen, admin_listen).await?;
    let reloader = tokio::spawn(reload_on_sighup(running.shared.clone()));
    signals.next().await;
    tracing::info!("shutting down");
    // A second signal means now: whoever sends it has stopped waiting for the drain.
    tokio::spawn(async move {
        signals.next().await;
        tracing::warn!("second signal: exiting now, requests in flight get no answer");
        telemetry::flush_log();
        std::process::exit(CUT_SHORT.into());
    });
    reloader.abort();
    let drained = running.shutdown().await;
    if drained.cut > 0 {
        tracing::warn!(
            cut = drained.cut,
            "stopped before every request finished: those still running at the end of server.shutdown_grace were answered 503"
        );
        return Ok(CUT_SHORT);
    }
    tracing::info!("stopped");
    Ok(0)
}

/// Reloads the configuration on every SIGHUP.
async fn reload_on_sighup(shared: std::sync::Arc<scim_proxy::state::Shared>) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let Ok(mut hangup) = signal(SignalKind::hangup()) else {
            tracing::warn!("cannot listen for SIGHUP: reload by editing the file only");
            return;
        };
        while hangup.recv().await.is_some() {
            tracing::info!("SIGHUP: reloading the configuration");
            if runtime::reload_config(&shared).await == runtime::Reloaded::Unchanged {
                tracing::info!("configuration unchanged");
            }
        }
    }
    #[cfg(not(unix))]
    let _ = shared;
}

/// `check`: exit code 1 for an error in the configuration or a script, 2 when the
/// configuration cannot be read.
fn check(path: &std::path::Path, idp: Option<&str>) -> Result<(), Failed> {
    let found = |error: anyhow::Error| Failed { code: FOUND_A_PROBLEM, error };
    let vars = Variables::offline();
    let config = Config::load(path, &vars).map_err(|error| match error {
        ConfigError::Read { .. } => Failed::from(anyhow::Error::from(error)),
        invalid => found(invalid.into()),
    })?;
    let profile = idp.map(scim_proxy::authoring::idp::profile).transpose().map_err(anyhow::Error::msg)?;
    let unset = vars.unset();
    if !unset.is_empty() {
        say!("note: not set here, so checked with placeholders (they must be set for run): {}", unset.join(", "));
    }
    let engine = std::sync::Arc::new(ScriptEngine::with_bounds(&config.script));
    let mut failed = false;
    for app in &config.apps {
        let script = config.script_path(app);
        let text = match std::fs::read_to_string(&script) {
            Ok(text) => text,
            Err(error) => {
                say!("app {}: cannot read the script {}: {error}", app.name, script.display());
                failed = true;
                continue;
            }
        };
        match engine.compile_in_time_blocking(text.clone(), &script) {
            Ok(compiled) => {
                let functions: Vec<String> = compiled.functions().map(|(n, a)| format!("{n}/{a}")).collect();
                say!("app {}: {} compiles; defines {}", app.name, script.display(), functions.join(", "));
                // The rest of what `run` builds for the app, by the same code: the script's
                // contract, the schema and its overrides, the credentials and keys it reads,
                // the legacy client.
                if let Err(error) =
                    scim_proxy::app::App::build_after(&config, app, engine.clone(), compiled.clone(), None)
                {
                    say!("{error}");
                    failed = true;
                }
                for finding in lint::lint(&compiled, &text) {
                    say!("app {}: {}:{}: {}", app.name, script.display(), finding.line, finding.message);
                    failed = true;
                }
                if let Some(gap) = scim_proxy::app::health::readiness_gap(&compiled, config.server.health_interval) {
                    say!("app {}: warning: {gap}", app.name);
                }
                let deactivate = app.user_delete == scim_proxy::config::UserDelete::Deactivate;
                for (operation, how) in lint::operations(&compiled, deactivate) {
                    say!("app {}:   {operation:<32} {how}", app.name);
                }
                if let Some(profile) = &profile {
                    let serves_groups = compiled.functions().any(|(name, _)| name == "get_group");
                    match idp_report(app, profile, serves_groups) {
                        Ok(report) => say!("{}", report.trim_end_matches('\n')),
                        Err(problem) => {
                            say!("app {}: {problem}", app.name);
                            failed = true;
                        }
                    }
                }
            }
            Err(error) => {
                say!("app {}: {error}", app.name);
                failed = true;
            }
        }
    }
    if let Some(settings) = &config.tls {
        if let Err(error) = scim_proxy::listener::tls::Tls::load(&config, settings) {
            say!("{error}");
            failed = true;
        }
    }
    if failed {
        return Err(found(anyhow::anyhow!("{}: some apps have errors", path.display())));
    }
    say!("{}: ok", path.display());
    Ok(())
}

/// `check --idp`: what an app does with each attribute the identity provider sends by default.
fn idp_report(
    app: &scim_proxy::config::AppConfig,
    profile: &scim_proxy::authoring::idp::Profile,
    serves_groups: bool,
) -> Result<String, String> {
    let users = scim_proxy::app::user_schema(app).map_err(|(key, detail)| format!("{key}: {detail}"))?;
    let groups = serves_groups
        .then(|| scim_proxy::app::group_schema(app))
        .transpose()
        .map_err(|(key, detail)| format!("{key}: {detail}"))?;
    let policy = app.schema.unsupported_attributes;
    let findings = scim_proxy::authoring::idp::assess(profile, &users, groups.as_ref(), policy)?;
    Ok(scim_proxy::authoring::idp::render(&app.name, profile, policy, &findings, serves_groups))
}

/// `scim-proxy probe`: 0 when the admin listener answers 200, 1 otherwise (what Docker's
/// HEALTHCHECK reads as healthy and unhealthy), with one line on stdout or stderr.
#[allow(clippy::print_stdout)] // the health check's log shows what the probe saw
fn probe(what: &str, admin: &str, timeout: std::time::Duration) -> ExitCode {
    let Some(which) = scim_proxy::admin::probe::Probe::named(what) else {
        return ExitCode::FAILURE;
    };
    match scim_proxy::admin::probe::probe(which, admin, timeout) {
        Ok(line) => {
            println!("probe {what}: {line}");
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("error: probe {what}: {error}");
            ExitCode::FAILURE
        }
    }
}

/// `scim-proxy test`: 0 when every case passes, 1 when one fails, 2 when the run cannot start.
fn test(options: mapping_test::Options, verbose: bool) -> ExitCode {
    if verbose {
        // Each line as it is made: they go between the lines of the report on stdout.
        let log = scim_proxy::config::LogConfig {
            level: "scim_proxy=debug,warn".into(),
            flush_interval: std::time::Duration::ZERO,
            ..Default::default()
        };
        let _ = telemetry::init(&log);
    }
    let outcome = runtime().map_err(|e| describe(&e)).and_then(|rt| {
        let mut stdout = std::io::stdout();
        rt.block_on(mapping_test::run(&options, &mut stdout)).map_err(|e| e.to_string())
    });
    match outcome {
        Ok(summary) if summary.failed == 0 => ExitCode::SUCCESS,
        Ok(_) => ExitCode::from(FOUND_A_PROBLEM),
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::from(CANNOT_RUN)
        }
    }
}
