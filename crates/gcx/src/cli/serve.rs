//! `gcx serve`: run the trigger service over HTTP until SIGTERM/SIGINT.
//!
//! The first signal drains (intake closed, `/readyz` unready, in-flight actions finish
//! up to `serve.drain_timeout`, the audit checkpoint is flushed) and exits 0. A second
//! signal exits at once with 128 + the signal number: everything acknowledged to a caller
//! is already durable, and the next start resumes the rest.

use std::io::{IsTerminal, Read, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use axum::serve::ListenerExt;
use tokio::net::TcpListener;
use tokio::signal::unix::{SignalKind, signal};

use super::GlobalArgs;
use crate::config::{Config, Secret};
use crate::pipeline::{Upstream, create_data_dir};
use crate::server::api_keys::hash_key;
use crate::server::service::Service;
use crate::server::tls::{TlsListener, load_server_config};

#[derive(Debug, clap::Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct Args {
    #[command(subcommand)]
    pub command: Option<ServeCommand>,
    /// Address to listen on (serve.bind; default 127.0.0.1:8080; port 0 picks a free
    /// one). Binding beyond loopback exposes the API: put TLS in front of it or use
    /// --tls-cert/--tls-key.
    #[arg(long)]
    pub bind: Option<String>,
    /// A PEM certificate chain: serve HTTPS (rustls) instead of HTTP. Needs --tls-key.
    #[arg(long, requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The PEM private key of --tls-cert.
    #[arg(long, requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Once listening, write `{"url": "http://127.0.0.1:PORT"}` here (whole, then
    /// renamed into place), for scripts that start gcx serve on port 0.
    #[arg(long)]
    pub ready_file: Option<PathBuf>,
    /// Print the OpenAPI document this configuration serves and exit (with the defaults,
    /// docs/openapi.json).
    #[arg(long)]
    pub print_openapi: bool,
}

#[derive(Debug, clap::Subcommand)]
pub enum ServeCommand {
    /// Print the SHA-256 digest of an API key, for serve.api_keys (reads stdin with `-`
    /// or no argument, so the key stays out of shell history).
    HashKey {
        /// The key; `-` or absent reads it from stdin.
        key: Option<String>,
    },
}

pub async fn run(args: Args, global: &GlobalArgs, config: Config) -> anyhow::Result<ExitCode> {
    if args.print_openapi {
        let catalogue =
            crate::assist::intake::load_catalogue(config.dispatch.catalogue_path.as_deref())?;
        let settings = crate::server::openapi::Settings::new(&catalogue, &config.serve);
        print!("{}", crate::server::openapi::document_json(&settings));
        return Ok(ExitCode::SUCCESS);
    }
    if let Some(ServeCommand::HashKey { key }) = &args.command {
        return hash_key_command(key.as_deref());
    }
    let _ = global; // --config, --data-dir, --base-url... are applied by `config::load`.
    let mut config = config;
    if let Some(bind) = &args.bind {
        config.serve.bind = bind.clone();
    }

    let bind = config.serve.bind.clone();
    let addr: SocketAddr = bind.parse().with_context(|| {
        format!("serve.bind / --bind {bind:?} is not an address such as 127.0.0.1:8080")
    })?;
    if !addr.ip().is_loopback() && args.tls_cert.is_none() {
        tracing::warn!(
            %addr,
            "listening beyond loopback without TLS: API keys cross the network in clear text unless a TLS proxy is in front"
        );
    }
    let upstream = upstream(&config).await?;
    create_data_dir(&config)?;
    let tcp = TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr} (serve.bind / --bind)"))?;
    let service = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => {
            let tls = load_server_config(cert, key)?;
            let listener = TlsListener::new(tcp, tls).context("starting the TLS listener")?;
            Service::start(&config, upstream, listener, true).await?
        }
        _ => {
            let listener = tcp.tap_io(|s| {
                let _ = s.set_nodelay(true);
            });
            Service::start(&config, upstream, listener, false).await?
        }
    };
    let url = service.url();
    if let Some(path) = &args.ready_file {
        write_ready_file(path, &url)?;
    }
    println!("serve ready: {url}");
    let _ = std::io::stdout().flush();

    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    let halted = tokio::select! {
        _ = term.recv() => None,
        _ = int.recv() => None,
        reason = service.halted_wait() => Some(reason),
    };
    match &halted {
        None => tracing::info!("signal received: draining (a second signal exits at once)"),
        Some(reason) => tracing::error!(%reason, "the dispatcher stopped; shutting down"),
    }
    // A second signal: exit now. Every 202 was sent after its commit, so nothing
    // acknowledged is lost; unfinished work resumes on the next start.
    tokio::spawn(async move {
        let signo = tokio::select! {
            _ = term.recv() => 15,
            _ = int.recv() => 2,
        };
        eprintln!("second signal: exiting at once; unfinished triggers resume on the next start");
        std::process::exit(128 + signo);
    });
    let report = service.shutdown().await;
    if let Some(reason) = halted {
        bail!("the trigger pipeline stopped: {reason}");
    }
    Ok(if report.store_closed {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn hash_key_command(key: Option<&str>) -> anyhow::Result<ExitCode> {
    let key = match key {
        None | Some("-") => {
            if std::io::stdin().is_terminal() {
                eprintln!("type the API key, then Enter and Ctrl-D:");
            }
            let mut text = String::new();
            std::io::stdin()
                .read_to_string(&mut text)
                .context("reading the API key from stdin")?;
            Secret::new(text.trim_end_matches(['\n', '\r']))
        }
        Some(k) => Secret::new(k),
    };
    if key.expose().is_empty() {
        bail!("no API key given: pass it as an argument or on stdin");
    }
    println!("{}", hash_key(key.expose()));
    Ok(ExitCode::SUCCESS)
}

/// Login, stream URL and catalogue from the configuration, logged in before anything is
/// opened, so a refused login is the one error shown.
async fn upstream(config: &Config) -> anyhow::Result<Upstream> {
    let catalogue =
        crate::assist::intake::load_catalogue(config.dispatch.catalogue_path.as_deref())?;
    let upstream = Upstream::from_config(config, catalogue)?;
    upstream.login().await.context("logging in")?;
    Ok(upstream)
}

fn write_ready_file(path: &Path, url: &str) -> anyhow::Result<()> {
    let tmp = path.with_extension("tmp");
    let body = serde_json::json!({ "url": url }).to_string();
    std::fs::write(&tmp, body)
        .and_then(|()| std::fs::rename(&tmp, path))
        .with_context(|| format!("cannot write --ready-file {}", path.display()))
}
