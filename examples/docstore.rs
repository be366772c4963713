//! Runs Docstore, the JSON-document API behind the `documents` example mapping, until Ctrl-C.
//!
//! ```sh
//! cargo run --example docstore -- --listen 127.0.0.1:7072 --api-key docstore-demo-key
//! ```
//!
//! It prints `Docstore API: http://ADDR/v1` once it listens (port 0 picks a free one).
//! Without `--api-key` (or `DOCSTORE_API_KEY`) every request is accepted.

#[path = "docstore/server.rs"]
#[allow(dead_code)] // the tests use more of the server than this program does
mod server;

use anyhow::{Context, bail};

/// The command line: `--listen ADDR`, `--api-key KEY`.
struct Options {
    listen: std::net::SocketAddr,
    api_key: Option<String>,
}

fn options() -> anyhow::Result<Options> {
    let mut listen = "127.0.0.1:7072".to_owned();
    let mut api_key = std::env::var("DOCSTORE_API_KEY").ok().filter(|k| !k.is_empty());
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--listen" => listen = args.next().context("--listen needs an address, e.g. 127.0.0.1:0")?,
            "--api-key" => api_key = Some(args.next().context("--api-key needs a value")?),
            "-h" | "--help" => bail!("usage: docstore [--listen 127.0.0.1:7072] [--api-key KEY]"),
            other => bail!("unknown argument {other}: use --listen ADDR and --api-key KEY"),
        }
    }
    let listen = listen.parse().with_context(|| format!("--listen {listen}: not an address such as 127.0.0.1:0"))?;
    Ok(Options { listen, api_key })
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    match serve().await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            // As `scim-proxy` reports its failures: one line, `error: <what> (<cause>)`, exit code 2.
            let causes: Vec<String> = error.chain().skip(1).map(ToString::to_string).collect();
            match causes.is_empty() {
                true => eprintln!("error: {error}"),
                false => eprintln!("error: {error} ({})", causes.join(": ")),
            }
            std::process::ExitCode::from(2)
        }
    }
}

#[allow(clippy::print_stdout)] // the address is this program's output
async fn serve() -> anyhow::Result<()> {
    let options = options()?;
    let listener = tokio::net::TcpListener::bind(options.listen)
        .await
        .with_context(|| format!("cannot listen on {}", options.listen))?;
    let docstore = server::Docstore::start(listener, options.api_key)?;
    println!("Docstore API: {}", docstore.base_url());
    tokio::signal::ctrl_c().await.context("waiting for Ctrl-C")?;
    Ok(())
}
