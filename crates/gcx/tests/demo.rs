//! `gcx demo --quick` and `gcx bench --quick` as a user runs them: the real binary as a
//! child process (its own embedded sandbox on a free port, SQLite in a temporary folder).

use std::path::Path;
use std::process::{Command, Output};

fn gcx(args: &[&str], home: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_gcx"))
        .args(args)
        // No user configuration or gc CLI profile leaks in.
        .env("HOME", home)
        .env_remove("GCX_CONFIG")
        .env_remove("GCX_PROFILE")
        .output()
        .unwrap_or_else(|e| panic!("cannot run gcx: {e}"))
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn quick_demo_passes_every_check_and_writes_the_report() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let out = gcx(
        &[
            "demo",
            "--quick",
            "--no-progress",
            "--data-dir",
            data.to_str().unwrap(),
        ],
        tmp.path(),
    );
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(
        out.status.code(),
        Some(0),
        "stdout:\n{stdout}\nstderr:\n{stderr}"
    );
    // The checks: eight, each held.
    let checks: Vec<&str> = stdout
        .lines()
        .filter(|l| l.trim_start().starts_with(['✓', '✗']))
        .collect();
    assert_eq!(checks.len(), 8, "{stdout}");
    assert!(
        checks.iter().all(|l| l.trim_start().starts_with('✓')),
        "{stdout}"
    );
    assert!(stdout.contains("all 8 checks held"), "{stdout}");
    assert!(
        stdout.contains("QA export: delivered (receiver took 1, signed and verified)"),
        "{stdout}"
    );
    for part in ["TRIGGERS", "CRM", "SIMULATION", "AUDIT"] {
        assert!(stdout.contains(part), "no {part} section:\n{stdout}");
    }
    // The invalid triggers are reported with their violations.
    assert!(stdout.contains("invalid"), "{stdout}");
    assert!(stdout.contains("/actionType enum"), "{stdout}");
    // The report is where the summary says.
    let report = data.join("simulation").join("report.html");
    assert!(report.is_file(), "no {}", report.display());
    assert!(stdout.contains(report.to_str().unwrap()), "{stdout}");
    let html = std::fs::read_to_string(&report).unwrap();
    assert!(html.contains("<html"), "not a page");
    // The summary's shape as a user reads it, numbers masked (timings and the faults'
    // effects vary): `cargo insta review` (or `INSTA_UPDATE=always`) takes a change.
    let data_dir = regex::escape(data.to_str().unwrap());
    insta::with_settings!({filters => vec![
        (data_dir.as_str(), "[data]"),
        (r"http://127\.0\.0\.1:[0-9]+", "[sandbox url]"),
        (r"\b[0-9]+(\.[0-9]+)?\b", "N"),
    ]}, {
        insta::assert_snapshot!(stdout);
    });
}

#[test]
fn demo_refuses_a_data_dir_that_is_not_empty() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("something"), "x").unwrap();
    let out = gcx(
        &[
            "demo",
            "--quick",
            "--no-progress",
            "--data-dir",
            tmp.path().to_str().unwrap(),
        ],
        tmp.path(),
    );
    assert_eq!(out.status.code(), Some(2));
    let stderr = text(&out.stderr);
    assert!(stderr.contains("not empty"), "{stderr}");
    assert!(stderr.contains("--data-dir"), "{stderr}");
}

#[test]
fn quick_bench_prints_a_table() {
    let tmp = tempfile::tempdir().unwrap();
    let out = gcx(
        &["bench", "--quick", "--only", "audit-sqlite", "--runs", "1"],
        tmp.path(),
    );
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(
        out.status.code(),
        Some(0),
        "stdout:\n{stdout}\nstderr:\n{stderr}"
    );
    let lines: Vec<&str> = stdout.lines().collect();
    assert!(
        lines[0].starts_with("| name") && lines[0].contains("| median"),
        "{stdout}"
    );
    let row = lines
        .iter()
        .find(|l| l.starts_with("| audit-sqlite.appends"))
        .unwrap_or_else(|| panic!("no row:\n{stdout}"));
    assert!(
        row.contains("records/s") && row.contains(">= 50,000"),
        "{row}"
    );
    // Exactly one run, and a median that is a number.
    let cells: Vec<&str> = row.split('|').map(str::trim).collect();
    let median = cells[6].trim_end_matches(['✓', '✗', ' ']).replace(',', "");
    assert!(median.parse::<f64>().unwrap() > 0.0, "{row}");
}

#[test]
fn bench_names_what_it_accepts() {
    let tmp = tempfile::tempdir().unwrap();
    let out = gcx(&["bench", "--only", "nope"], tmp.path());
    assert_eq!(out.status.code(), Some(2));
    let stderr = text(&out.stderr);
    assert!(stderr.contains("--only \"nope\""), "{stderr}");
    assert!(
        stderr.contains("dispatch") && stderr.contains("serve-100"),
        "{stderr}"
    );
}
