//! `gcx sandbox`: runs the local emulator of everything gcx talks to (PROTOCOL.md
//! section 7) until Ctrl-C or SIGTERM.
//!
//! Once listening it prints `sandbox ready: http://127.0.0.1:PORT` as one flushed line on
//! stdout (scripts wait for it), and with `--ready-file` writes the URLs as JSON first.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use gcx_sandbox::{AppState, ReadyInfo, SandboxArgs};
use tokio::net::TcpListener;
use tokio::sync::oneshot;

use super::GlobalArgs;
use crate::config::Config;

/// How long open connections (assist streams, slow requests) get to finish after a
/// shutdown signal before the process exits anyway.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub sandbox: SandboxArgs,
}

pub async fn run(args: Args, global: &GlobalArgs, config: Config) -> anyhow::Result<ExitCode> {
    let _ = (global, config);
    let ready_file = args.sandbox.ready_file.clone();
    let options = match args.sandbox.into_options() {
        Ok(o) => o,
        Err(reasons) => bail!("invalid sandbox flags:\n  - {}", reasons.join("\n  - ")),
    };
    let (bind, port) = (options.bind, options.port);
    let listener = TcpListener::bind((bind, port))
        .await
        .with_context(|| format!("cannot listen on {bind}:{port} (--bind, --port)"))?;
    let addr = listener.local_addr()?;
    // Signals are caught from here on, so a SIGTERM right after the ready line is a
    // graceful stop, never the default abrupt exit.
    let mut stop_signal = StopSignal::new()?;

    let info = ReadyInfo::for_addr(addr);
    if let Some(path) = &ready_file {
        write_ready_file(path, &info)?;
    }
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "sandbox ready: {}", info.base_url)?;
        out.flush()?;
    }

    let state = AppState::new(options);
    let (stop, stopped) = oneshot::channel::<()>();
    let mut server = tokio::spawn(gcx_sandbox::serve(listener, state.clone(), async move {
        let _ = stopped.await;
    }));
    tokio::select! {
        finished = &mut server => {
            finished.context("the sandbox server task failed")??;
            bail!("the sandbox server stopped on its own");
        }
        signal = stop_signal.wait() => {
            tracing::info!(signal, "sandbox: shutting down");
        }
    }
    shutdown(&state, stop, server).await?;
    if let Some(path) = &ready_file {
        // The URLs are stale now; a missing file is fine.
        let _ = std::fs::remove_file(path);
    }
    Ok(ExitCode::SUCCESS)
}

/// Stops accepting, closes live assist sockets, and waits a little for the rest.
async fn shutdown(
    state: &Arc<AppState>,
    stop: oneshot::Sender<()>,
    server: tokio::task::JoinHandle<std::io::Result<()>>,
) -> anyhow::Result<()> {
    let _ = stop.send(());
    state.engine.shutdown();
    match tokio::time::timeout(SHUTDOWN_GRACE, server).await {
        Ok(finished) => finished.context("the sandbox server task failed")??,
        Err(_) => tracing::warn!(
            grace_secs = SHUTDOWN_GRACE.as_secs(),
            "sandbox: connections still open after the grace period; exiting anyway"
        ),
    }
    Ok(())
}

/// Ctrl-C or SIGTERM, whichever comes first.
struct StopSignal {
    #[cfg(unix)]
    terminate: tokio::signal::unix::Signal,
}

impl StopSignal {
    fn new() -> anyhow::Result<StopSignal> {
        Ok(StopSignal {
            #[cfg(unix)]
            terminate: tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                .context("cannot listen for SIGTERM")?,
        })
    }

    /// Waits for a signal; returns its name.
    async fn wait(&mut self) -> &'static str {
        #[cfg(unix)]
        {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => "SIGINT",
                _ = self.terminate.recv() => "SIGTERM",
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
            "Ctrl-C"
        }
    }
}

/// Writes the ready file whole: to a temporary file beside it, then renamed into place,
/// so a reader never sees a half-written file.
fn write_ready_file(path: &Path, info: &ReadyInfo) -> anyhow::Result<()> {
    let json = serde_json::to_vec_pretty(info)?;
    let name = path
        .file_name()
        .with_context(|| format!("--ready-file {}: not a file path", path.display()))?;
    let mut temp_name = std::ffi::OsString::from(".");
    temp_name.push(name);
    temp_name.push(format!(".{}.tmp", std::process::id()));
    let temp: PathBuf = path.with_file_name(temp_name);
    std::fs::write(&temp, &json)
        .with_context(|| format!("--ready-file: cannot write {}", temp.display()))?;
    std::fs::rename(&temp, path).with_context(|| {
        let _ = std::fs::remove_file(&temp);
        format!(
            "--ready-file: cannot move {} to {}",
            temp.display(),
            path.display()
        )
    })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_file_is_written_whole_and_leaves_no_temp() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ready.json");
        let info = ReadyInfo::for_addr("127.0.0.1:4567".parse().unwrap());
        write_ready_file(&path, &info).unwrap();
        let back: ReadyInfo = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        assert_eq!(back, info);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
        assert!(write_ready_file(&dir.path().join("missing/ready.json"), &info).is_err());
    }
}
