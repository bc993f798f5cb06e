//! The systemd unit example docs/deploy/gcx.service: `systemd-analyze verify` accepts it
//! without a word about it (an unknown directive is only a warning there, so any line
//! naming the unit fails the test), its `gcx serve` flags exist, and its stop timeout
//! covers the whole graceful drain.
//!
//! Without `systemd-analyze` the verification is skipped with a printed reason, except
//! under CI=true, where it fails.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// Where the unit runs gcx; the test points it at the built binary instead, since
/// `systemd-analyze verify` checks that the executable exists.
const INSTALLED_BINARY: &str = "/usr/local/bin/gcx";

fn unit_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/deploy/gcx.service")
}

fn unit_text() -> String {
    let path = unit_path();
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The value of `key=` in the unit (the one line that sets it).
fn directive(text: &str, key: &str) -> String {
    let prefix = format!("{key}=");
    let values: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix(&prefix))
        .collect();
    assert_eq!(
        values.len(),
        1,
        "{key}= should be set exactly once: {values:?}"
    );
    values[0].trim().to_owned()
}

/// The unit with ExecStart's binary replaced by the one cargo built.
fn unit_with_built_binary(text: &str) -> String {
    let exec = directive(text, "ExecStart");
    let args = exec
        .strip_prefix(INSTALLED_BINARY)
        .unwrap_or_else(|| panic!("ExecStart should run {INSTALLED_BINARY}: {exec}"));
    let built = env!("CARGO_BIN_EXE_gcx");
    assert!(
        !built.contains(char::is_whitespace),
        "the built binary's path has a space, which ExecStart= would split: {built}"
    );
    text.replace(
        &format!("ExecStart={exec}"),
        &format!("ExecStart={built}{args}"),
    )
}

#[test]
fn systemd_analyze_verify_accepts_the_unit_silently() {
    let which = Command::new("systemd-analyze").arg("--version").output();
    if which.is_err() {
        let reason = "systemd-analyze is not installed (apt-get install systemd)";
        assert_ne!(
            std::env::var("CI").as_deref(),
            Ok("true"),
            "CI=true: {reason}"
        );
        println!("skipped: {reason}");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let unit = dir.path().join("gcx.service");
    std::fs::write(&unit, unit_with_built_binary(&unit_text())).unwrap();
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&unit)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    // Lines about other units (a host's own broken units) are not this unit's fault.
    let about_unit: Vec<&str> = stdout
        .lines()
        .chain(stderr.lines())
        .filter(|l| l.contains("gcx.service"))
        .collect();
    assert!(
        out.status.success() && about_unit.is_empty(),
        "systemd-analyze verify {} ({}):\n{stdout}{stderr}",
        unit.display(),
        out.status
    );
}

#[test]
fn exec_start_uses_flags_that_gcx_serve_has() {
    let exec = directive(&unit_text(), "ExecStart");
    let mut words = exec.split_whitespace();
    assert_eq!(words.next(), Some(INSTALLED_BINARY));
    assert_eq!(words.next(), Some("serve"));
    let flags: Vec<&str> = words.filter(|w| w.starts_with("--")).collect();
    assert!(!flags.is_empty(), "{exec}");
    let help = Command::new(env!("CARGO_BIN_EXE_gcx"))
        .env_clear()
        .args(["serve", "--help"])
        .output()
        .unwrap();
    assert!(help.status.success());
    let help = String::from_utf8(help.stdout).unwrap();
    for flag in flags {
        assert!(
            help.contains(&format!("{flag} ")),
            "gcx serve has no {flag}:\n{help}"
        );
    }
}

#[test]
fn the_data_dir_is_the_state_directory() {
    let text = unit_text();
    let state = directive(&text, "StateDirectory");
    let exec = directive(&text, "ExecStart");
    let data_dir = exec
        .split_whitespace()
        .skip_while(|w| *w != "--data-dir")
        .nth(1)
        .unwrap_or_else(|| panic!("ExecStart has no --data-dir: {exec}"));
    assert_eq!(data_dir, format!("/var/lib/{state}"));
}

#[test]
fn the_stop_timeout_outlasts_the_graceful_drain() {
    let text = unit_text();
    assert_eq!(directive(&text, "KillSignal"), "SIGTERM");
    let stop = humantime::parse_duration(&directive(&text, "TimeoutStopSec")).unwrap();
    let drain = gcx::config::Config::default().serve.drain_timeout;
    let longest_stop =
        drain + gcx::server::service::HTTP_GRACE + gcx::server::service::DELIVERY_GRACE;
    // Room for the store's last flush and audit checkpoint.
    let margin = Duration::from_secs(10);
    assert!(
        stop >= longest_stop + margin,
        "TimeoutStopSec={stop:?} leaves no margin over the drain ({longest_stop:?})"
    );
}
