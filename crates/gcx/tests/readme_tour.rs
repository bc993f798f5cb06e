//! The README tour, run as written so it cannot rot.
//!
//! Convention (documented in README.md): a line `<!-- tour: NAME [exit=N] [expect="TEXT"] -->`
//! directly before a fenced ```` ```sh ```` block marks that block as a tour step. Each step
//! runs, in README order, as its own `bash -euo pipefail` script in one shared temporary
//! folder (with `examples/` and `config/` linked in), with:
//! - `gcx` on `PATH` being the binary under test (`CARGO_BIN_EXE_gcx`);
//! - `SBX` set to the base URL of a real sandbox this test starts in-process on port 0 (the
//!   first step starts its own with `gcx sandbox` and sets `SBX` itself);
//! - `GCX_DATA_DIR` a temporary data folder shared by the steps, and `HOME` the temporary
//!   folder (no `~/.gc/config.toml` of the machine leaks in);
//! - background jobs killed when the step ends.
//!
//! A step passes when its exit code is `exit` (default 0) and its stdout+stderr contains
//! `expect` when given. Steps for features that have not landed are listed in [`SKIP`].

use std::path::{Path, PathBuf};
use std::process::Command;

use gcx_sandbox::{Sandbox, SandboxOptions};

/// Tour steps not run yet, each with why. The lead empties this as features land.
const SKIP: &[(&str, &str)] = &[];

/// How long one step may run (the slowest, `simulate`, takes about 20 s in a debug build).
const STEP_TIMEOUT_SECS: &str = "180";

/// One marked block of README.md.
#[derive(Debug)]
struct Step {
    /// The name after `tour:`, used in failure messages and in [`SKIP`].
    name: String,
    /// The line of the marker in README.md, so a failure points at the text to fix.
    line: usize,
    /// The exit code the README promises.
    exit: i32,
    /// A string the output must contain, when a cheap check is possible.
    expect: Option<String>,
    /// The shell text of the block.
    script: String,
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Reads `key=value` or `key="value with spaces"` from a marker's attributes.
fn attribute(attrs: &str, key: &str) -> Option<String> {
    let start = attrs.find(&format!("{key}="))? + key.len() + 1;
    let rest = &attrs[start..];
    if let Some(quoted) = rest.strip_prefix('"') {
        // `\"` inside the value is a literal quote.
        let mut value = String::new();
        let mut chars = quoted.chars();
        while let Some(c) = chars.next() {
            match c {
                '\\' => value.extend(chars.next()),
                '"' => return Some(value),
                c => value.push(c),
            }
        }
        None
    } else {
        Some(rest.split_whitespace().next().unwrap_or("").to_string())
    }
}

fn parse_steps(readme: &str) -> Vec<Step> {
    let lines: Vec<&str> = readme.lines().collect();
    let mut steps = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i].trim();
        if let Some(inner) = line
            .strip_prefix("<!-- tour:")
            .and_then(|s| s.strip_suffix("-->"))
        {
            let inner = inner.trim();
            let name = inner.split_whitespace().next().unwrap_or("").to_string();
            assert!(
                !name.is_empty(),
                "README.md:{}: tour marker without a name",
                i + 1
            );
            let exit = attribute(inner, "exit").map_or(0, |e| {
                e.parse()
                    .unwrap_or_else(|_| panic!("README.md:{}: exit={e} is not a number", i + 1))
            });
            let expect = attribute(inner, "expect");
            assert_eq!(
                lines.get(i + 1).map(|l| l.trim()),
                Some("```sh"),
                "README.md:{}: a tour marker must be followed by a ```sh block",
                i + 1
            );
            let mut j = i + 2;
            let mut script = String::new();
            while j < lines.len() && lines[j].trim() != "```" {
                script.push_str(lines[j]);
                script.push('\n');
                j += 1;
            }
            assert!(j < lines.len(), "README.md:{}: unclosed ```sh block", i + 2);
            steps.push(Step {
                name,
                line: i + 1,
                exit,
                expect,
                script,
            });
            i = j;
        }
        i += 1;
    }
    steps
}

#[test]
fn markers_are_parsed() {
    let steps = parse_steps(
        "x\n<!-- tour: a exit=1 expect=\"say \\\"hi\\\" now\" -->\n```sh\necho 1\necho 2\n```\n\
         <!-- tour: b -->\n```sh\ntrue\n```\n",
    );
    assert_eq!(steps.len(), 2);
    assert_eq!(steps[0].name, "a");
    assert_eq!(steps[0].line, 2);
    assert_eq!(steps[0].exit, 1);
    assert_eq!(steps[0].expect.as_deref(), Some("say \"hi\" now"));
    assert_eq!(steps[0].script, "echo 1\necho 2\n");
    assert_eq!((steps[1].exit, steps[1].expect.as_deref()), (0, None));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_tour_command_of_the_readme_works() {
    let root = workspace_root();
    let readme = std::fs::read_to_string(root.join("README.md")).expect("README.md");
    let steps = parse_steps(&readme);
    let names: Vec<&str> = steps.iter().map(|s| s.name.as_str()).collect();
    for job in [
        "sandbox", "validate", "trigger", "simulate", "audit", "config",
    ] {
        assert!(names.contains(&job), "the README tour has no `{job}` step");
    }
    for (skipped, _) in SKIP {
        assert!(
            names.contains(skipped),
            "SKIP names `{skipped}`, which is no tour step"
        );
    }

    let sandbox = Sandbox::start(SandboxOptions::default())
        .await
        .expect("sandbox");
    let base_url = sandbox.base_url();

    let tmp = tempfile::TempDir::new().expect("temp dir");
    let work = tmp.path();
    let bin_dir = work.join("bin");
    std::fs::create_dir(&bin_dir).expect("bin dir");
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_gcx"), bin_dir.join("gcx")).expect("gcx");
    for linked in ["examples", "config"] {
        std::os::unix::fs::symlink(root.join(linked), work.join(linked)).expect("link");
    }
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );

    let mut failures = Vec::new();
    for step in &steps {
        if let Some((_, why)) = SKIP.iter().find(|(n, _)| *n == step.name) {
            eprintln!("tour step `{}` skipped: {why}", step.name);
            continue;
        }
        let script = format!(
            "trap 'rc=$?; kill $(jobs -p) 2>/dev/null || true; wait || true; exit $rc' EXIT\n{}",
            step.script
        );
        // A step that hangs (a server that died before its ready file) fails, not stalls.
        let mut command = Command::new("timeout");
        command
            .args([
                "--kill-after=5",
                STEP_TIMEOUT_SECS,
                "bash",
                "-euo",
                "pipefail",
                "-c",
            ])
            .arg(&script)
            .current_dir(work)
            .env("PATH", &path)
            .env("SBX", &base_url)
            .env("HOME", work)
            .env("GCX_DATA_DIR", work.join("data"))
            .env("NO_COLOR", "1");
        for (key, _) in std::env::vars() {
            // The machine's gcx / Genesys settings must not change what the tour does.
            if key.starts_with("GCX_")
                || key.starts_with("GENESYS")
                || ["CRM_WEBHOOK_URL", "QA_PLATFORM_ENDPOINT", "RUST_LOG"].contains(&key.as_str())
            {
                command.env_remove(key);
            }
        }
        command.env("GCX_DATA_DIR", work.join("data"));
        let output = tokio::task::spawn_blocking(move || command.output())
            .await
            .expect("join")
            .expect("bash runs");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        let code = output.status.code().unwrap_or(-1);
        let mut problems = Vec::new();
        if code == 124 {
            problems.push(format!("timed out after {STEP_TIMEOUT_SECS} s"));
        } else if code != step.exit {
            problems.push(format!("exit code {code}, README promises {}", step.exit));
        }
        if let Some(expect) = &step.expect
            && !text.contains(expect.as_str())
        {
            problems.push(format!("output lacks {expect:?}"));
        }
        if !problems.is_empty() {
            failures.push(format!(
                "README.md:{} tour step `{}`: {}\n--- output ---\n{}",
                step.line,
                step.name,
                problems.join("; "),
                text
            ));
        }
    }
    sandbox.shutdown().await.expect("sandbox shutdown");
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}
