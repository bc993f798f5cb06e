//! A `gcx` child process that says where it listens through a ready file (`gcx serve` and
//! `gcx sandbox` both write one), started and awaited the same way by every benchmark
//! that needs one.

use std::ffi::OsStr;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use super::BenchError;

/// How long a child may take to get ready.
const READY_WITHIN: Duration = Duration::from_secs(30);

/// A started child and the URL its ready file gave.
pub(crate) struct Ready {
    /// Killed when dropped.
    pub child: tokio::process::Child,
    pub url: String,
}

/// Runs `binary NAME args… --ready-file DIR/NAME.json` (stderr to `DIR/NAME.stderr`) and
/// waits until the ready file holds the string `url_key`. The inner `Err` says why the
/// child is not available: it exited before getting ready (with its last stderr line).
pub(crate) async fn start(
    binary: &Path,
    name: &str,
    args: &[&OsStr],
    dir: &Path,
    url_key: &str,
) -> Result<Result<Ready, String>, BenchError> {
    let ready = dir.join(format!("{name}.json"));
    let stderr_path = dir.join(format!("{name}.stderr"));
    let stderr = std::fs::File::create(&stderr_path).map_err(BenchError::TempDir)?;
    let mut child = tokio::process::Command::new(binary)
        .arg(name)
        .args(args)
        .arg("--ready-file")
        .arg(&ready)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(stderr)
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| BenchError::Child(format!("cannot start {}: {e}", binary.display())))?;
    let deadline = Instant::now() + READY_WITHIN;
    loop {
        if let Ok(text) = std::fs::read_to_string(&ready)
            && let Ok(v) = serde_json::from_str::<serde_json::Value>(&text)
            && let Some(url) = v[url_key].as_str()
        {
            return Ok(Ok(Ready {
                child,
                url: url.to_owned(),
            }));
        }
        if let Ok(Some(status)) = child.try_wait() {
            let err = std::fs::read_to_string(&stderr_path).unwrap_or_default();
            return Ok(Err(format!(
                "gcx {name} exited ({status}) before getting ready: {}",
                err.lines().last().unwrap_or("").trim()
            )));
        }
        if Instant::now() > deadline {
            return Err(BenchError::Child(format!(
                "gcx {name} did not get ready within {READY_WITHIN:?}"
            )));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
