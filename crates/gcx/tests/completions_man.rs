//! The built `gcx` binary's `completions` and `man` subcommands: the scripts and pages name
//! the real subcommands and flags, `--out-dir` writes one page per subcommand, and an
//! unknown shell is refused. When `man` is installed, it renders a written page cleanly.

use std::path::Path;
use std::process::{Command, Output};

/// `gcx` with nothing inherited from the real environment and HOME set to `home`.
fn gcx(home: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_gcx"));
    c.env_clear().env("HOME", home);
    c
}

fn run(cmd: &mut Command) -> (i32, String, String) {
    let Output {
        status,
        stdout,
        stderr,
    } = cmd.output().unwrap();
    (
        status.code().unwrap_or(-1),
        String::from_utf8(stdout).unwrap(),
        String::from_utf8(stderr).unwrap(),
    )
}

fn completions(shell: &str) -> String {
    let home = tempfile::tempdir().unwrap();
    let (code, out, err) = run(gcx(home.path()).args(["completions", shell]));
    assert_eq!(code, 0, "{err}");
    assert!(
        !out.trim().is_empty(),
        "empty {shell} script; stderr: {err}"
    );
    out
}

#[test]
fn bash_completion_names_the_subcommands_and_the_flags_of_serve() {
    let script = completions("bash");
    assert!(script.contains("complete -F _gcx"), "{script}");
    for sub in [
        "serve",
        "trigger",
        "simulate",
        "validate",
        "audit",
        "prune",
        "completions",
        "man",
    ] {
        assert!(
            script.contains(&format!("gcx__subcmd__{sub}"))
                || script.contains(&format!("gcx__{sub}")),
            "no {sub} in the bash script"
        );
    }
    for flag in [
        "--bind",
        "--tls-cert",
        "--tls-key",
        "--ready-file",
        "--print-openapi",
    ] {
        assert!(script.contains(flag), "no {flag} in the bash script");
    }
    // Global flags are offered under subcommands too.
    assert!(script.contains("--database-url"));
}

#[test]
fn zsh_and_fish_completions_mention_serve() {
    let zsh = completions("zsh");
    assert!(zsh.starts_with("#compdef gcx"), "{zsh}");
    assert!(zsh.contains("serve"));
    let fish = completions("fish");
    assert!(fish.contains("complete -c gcx"), "{fish}");
    assert!(fish.contains("serve"));
}

#[test]
fn an_unknown_shell_is_refused_with_the_valid_ones() {
    let home = tempfile::tempdir().unwrap();
    let (code, out, err) = run(gcx(home.path()).args(["completions", "tcsh"]));
    assert_eq!(code, 2, "{out}{err}");
    assert!(out.is_empty(), "{out}");
    assert!(err.contains("invalid value 'tcsh'"), "{err}");
    assert!(
        err.contains("[possible values: bash, elvish, fish, powershell, zsh]"),
        "{err}"
    );
}

#[test]
fn completions_help_shows_how_to_install() {
    let home = tempfile::tempdir().unwrap();
    let (code, out, err) = run(gcx(home.path()).args(["completions", "--help"]));
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("gcx completions bash > /etc/bash_completion.d/gcx"),
        "{out}"
    );
    assert!(out.contains("fpath="), "{out}");
    assert!(out.contains("~/.config/fish/completions/gcx.fish"), "{out}");
}

/// The first line that is not a roff comment or the quote-string preamble clap_mangen
/// writes (`.ie \n(.g .ds Aq ...`) must be the title.
fn title_line(page: &str) -> &str {
    page.lines()
        .find(|l| !l.starts_with(".\\\"") && !l.starts_with(".ie ") && !l.starts_with(".el "))
        .unwrap_or("")
}

#[test]
fn man_prints_the_gcx_page() {
    let home = tempfile::tempdir().unwrap();
    let (code, page, err) = run(gcx(home.path()).arg("man"));
    assert_eq!(code, 0, "{err}");
    assert!(page.starts_with('.'), "not roff: {page}");
    let title = title_line(&page);
    assert!(title.starts_with(".TH GCX 1 "), "{title}");
    // The root page lists the subcommands, but not clap's `help` one.
    assert!(page.contains("gcx\\-serve(1)"), "{page}");
    assert!(page.contains("gcx\\-completions(1)"), "{page}");
    assert!(!page.contains("gcx\\-help(1)"), "{page}");
}

#[test]
fn man_out_dir_writes_one_page_per_subcommand() {
    let home = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let out_dir = dir.path().join("man1");
    let (code, out, err) = run(gcx(home.path()).args(["man", "--out-dir"]).arg(&out_dir));
    assert_eq!(code, 0, "{err}");
    let printed: Vec<&str> = out.lines().collect();
    let gcx_1 = out_dir.join("gcx.1");
    let serve_1 = out_dir.join("gcx-serve.1");
    // Nested subcommands get their own page too.
    let hash_key_1 = out_dir.join("gcx-serve-hash-key.1");
    for path in [&gcx_1, &serve_1, &hash_key_1] {
        let shown = path.display().to_string();
        assert!(printed.contains(&shown.as_str()), "{shown} not in:\n{out}");
    }
    assert!(!out_dir.join("gcx-help.1").exists());
    let written = std::fs::read_dir(&out_dir).unwrap().count();
    assert_eq!(written, printed.len(), "{out}");

    let root = std::fs::read_to_string(&gcx_1).unwrap();
    assert!(title_line(&root).starts_with(".TH GCX 1 "), "{root}");
    let serve = std::fs::read_to_string(&serve_1).unwrap();
    assert!(
        title_line(&serve).starts_with(".TH GCX-SERVE 1 "),
        "{serve}"
    );
    assert!(serve.contains("\\-\\-bind"), "{serve}");
    assert!(serve.contains("\\-\\-tls\\-cert"), "{serve}");

    if Command::new("man").arg("--version").output().is_err() {
        println!("skipped rendering with man: man is not installed");
        return;
    }
    let (code, text, err) = run(Command::new("man")
        .env("MANWIDTH", "80")
        .env("MANPAGER", "cat")
        .env("PAGER", "cat")
        .arg("-l")
        .arg(&serve_1));
    assert_eq!(code, 0, "man -l {}: {err}", serve_1.display());
    assert!(err.is_empty(), "man -l {} warned: {err}", serve_1.display());
    assert!(text.contains("gcx-serve"), "{text}");
    assert!(text.contains("--bind"), "{text}");
}

#[test]
fn man_names_the_path_it_cannot_write() {
    let home = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    // A folder where gcx.1 should go makes that write fail.
    let blocked = dir.path().join("gcx.1");
    std::fs::create_dir(&blocked).unwrap();
    let (code, _, err) = run(gcx(home.path()).args(["man", "--out-dir"]).arg(dir.path()));
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains(&format!("cannot write {}", blocked.display())),
        "{err}"
    );
}
