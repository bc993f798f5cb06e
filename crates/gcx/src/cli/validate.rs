//! `gcx validate FILE... [--output table|json]`: checks trigger files offline (for CI)
//! with the configured action catalogue, and prints every violation as
//! `file:line: path: message (code)`. Exit 0 when everything is valid, 1 otherwise.
//!
//! The file's extension picks the checker: `.toml` is a simulation scenario (the checks
//! `gcx simulate` runs, every violation as `file:line:column: `key`: message`), anything
//! else (`.jsonl`, `.json`, `-` for stdin) holds triggers.
//!
//! Output stays bounded whatever the input: the violations of the first
//! [`LISTED_PER_FILE`] invalid triggers of a file are listed, the rest only counted.

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use serde::Serialize;

use super::GlobalArgs;
use crate::assist::intake::{self, InputFormat, IntakeOptions};
use crate::config::Config;
use crate::desk::{Scenario, ScenarioError};
use gcx_protocol::{Catalogue, Violation};

/// How many invalid triggers of one file have their violations listed; the others are
/// counted in the summary.
pub const LISTED_PER_FILE: usize = 100;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Trigger files (JSON Lines, a JSON array, or one object; `-` for stdin) or
    /// scenario files (`.toml`).
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<String>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Output::Table)]
    pub output: Output,
    /// Accept triggers without a correlationId (as `gcx trigger --assign-ids` would give
    /// them one).
    #[arg(long)]
    pub assign_ids: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Output {
    Table,
    Json,
}

/// What the checks found in one file.
#[derive(Debug, Serialize)]
struct FileReport {
    file: String,
    /// `triggers` or `scenario`.
    kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    format: Option<&'static str>,
    /// The file could not be checked at all (missing, unreadable, unsupported).
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    triggers: usize,
    valid: usize,
    invalid: usize,
    /// Only the invalid items (the first [`LISTED_PER_FILE`]): the valid ones need no
    /// attention.
    problems: Vec<ItemReport>,
    /// Invalid items beyond [`LISTED_PER_FILE`]: counted, not listed.
    #[serde(skip_serializing_if = "is_zero")]
    problems_not_listed: usize,
    /// A scenario's violations, each with its place.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    violations: Vec<ScenarioProblem>,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

/// One violation of a scenario file.
#[derive(Debug, Serialize)]
struct ScenarioProblem {
    #[serde(skip_serializing_if = "Option::is_none")]
    line: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    column: Option<usize>,
    /// The dotted key (`load.rate`).
    key: String,
    message: String,
    /// The whole message, as the table prints it.
    text: String,
}

#[derive(Debug, Serialize)]
struct ItemReport {
    line: usize,
    index: usize,
    violations: Vec<Violation>,
}

impl FileReport {
    fn new(file: &str, kind: &'static str) -> FileReport {
        FileReport {
            file: file.to_owned(),
            kind,
            format: None,
            error: None,
            triggers: 0,
            valid: 0,
            invalid: 0,
            problems: Vec::new(),
            problems_not_listed: 0,
            violations: Vec::new(),
        }
    }

    fn ok(&self) -> bool {
        self.error.is_none() && self.invalid == 0 && self.violations.is_empty()
    }

    fn is_scenario(&self) -> bool {
        self.kind == "scenario"
    }
}

pub async fn run(args: Args, global: &GlobalArgs, config: Config) -> anyhow::Result<ExitCode> {
    let _ = global;
    let catalogue = intake::load_catalogue(config.dispatch.catalogue_path.as_deref())?;
    let options = IntakeOptions {
        assign_ids: args.assign_ids,
    };
    let reports: Vec<FileReport> = args
        .files
        .iter()
        .map(|file| match checker_for(file) {
            Checker::Scenario => check_scenario(file),
            Checker::Triggers => check_triggers(file, &catalogue, options),
        })
        .collect();

    let mut out = std::io::stdout().lock();
    match args.output {
        Output::Json => {
            let doc = serde_json::json!({
                "catalogueVersion": catalogue.version(),
                "files": reports,
                "valid": reports.iter().map(|r| r.valid).sum::<usize>(),
                "invalid": reports.iter().map(|r| r.invalid).sum::<usize>(),
                "ok": reports.iter().all(FileReport::ok),
            });
            writeln!(out, "{}", serde_json::to_string_pretty(&doc)?)
                .context("writing to stdout")?;
        }
        Output::Table => print_table(&mut out, &reports).context("writing to stdout")?,
    }
    Ok(if reports.iter().all(FileReport::ok) {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

enum Checker {
    Triggers,
    Scenario,
}

fn checker_for(file: &str) -> Checker {
    match Path::new(file).extension().and_then(|e| e.to_str()) {
        Some(ext) if ext.eq_ignore_ascii_case("toml") => Checker::Scenario,
        _ => Checker::Triggers,
    }
}

/// A scenario file, with the checks `gcx simulate` runs on it.
fn check_scenario(file: &str) -> FileReport {
    let mut report = FileReport::new(file, "scenario");
    if let Err(ScenarioError { violations }) = Scenario::load(Path::new(file)) {
        report.violations = violations
            .into_iter()
            .map(|v| ScenarioProblem {
                line: v.location.map(|(l, _)| l),
                column: v.location.map(|(_, c)| c),
                text: v.to_string(),
                key: v.field,
                message: v.message,
            })
            .collect();
    }
    report
}

fn check_triggers(file: &str, catalogue: &Catalogue, options: IntakeOptions) -> FileReport {
    let mut report = FileReport::new(file, "triggers");
    let mut keep = |item: intake::Item| {
        if let Err(violations) = item.outcome {
            if report.problems.len() < LISTED_PER_FILE {
                report.problems.push(ItemReport {
                    line: item.line,
                    index: item.index,
                    violations,
                });
            } else {
                report.problems_not_listed += 1;
            }
        }
    };
    let read = intake::read_triggers(file, catalogue, options, &mut keep);
    let summary = match read {
        Ok(s) => s,
        Err(e) => {
            report.error = Some(e.to_string());
            return report;
        }
    };
    report.format = Some(match summary.format {
        InputFormat::JsonLines => "jsonl",
        InputFormat::JsonArray => "array",
        InputFormat::SingleObject => "object",
        InputFormat::Empty => "empty",
    });
    report.triggers = summary.items;
    report.invalid = summary.invalid;
    report.valid = summary.valid();
    report
}

fn print_table(out: &mut impl Write, reports: &[FileReport]) -> std::io::Result<()> {
    for r in reports {
        let name = if r.file == "-" { "<stdin>" } else { &r.file };
        if let Some(e) = &r.error {
            writeln!(out, "{name}: {e}")?;
            continue;
        }
        for v in &r.violations {
            writeln!(out, "{}", v.text)?;
        }
        for item in &r.problems {
            for v in &item.violations {
                let path = if v.path.is_empty() {
                    "(whole trigger)"
                } else {
                    &v.path
                };
                writeln!(
                    out,
                    "{name}:{}: {path}: {} ({})",
                    item.line, v.message, v.code
                )?;
            }
        }
        if r.problems_not_listed > 0 {
            writeln!(
                out,
                "{name}: {} more invalid trigger{} not listed (the violations of the first {LISTED_PER_FILE} are)",
                r.problems_not_listed,
                if r.problems_not_listed == 1 { "" } else { "s" },
            )?;
        }
    }
    let plural = |n: usize| if n == 1 { "" } else { "s" };
    let mut parts = Vec::new();
    let trigger_files: Vec<&FileReport> = reports.iter().filter(|r| !r.is_scenario()).collect();
    if !trigger_files.is_empty() {
        let files_failed = trigger_files.iter().filter(|r| r.error.is_some()).count();
        let valid: usize = trigger_files.iter().map(|r| r.valid).sum();
        let invalid: usize = trigger_files.iter().map(|r| r.invalid).sum();
        let files = trigger_files.len();
        let mut part = format!(
            "{} trigger{} in {files} file{}: {valid} valid, {invalid} invalid",
            valid + invalid,
            plural(valid + invalid),
            plural(files),
        );
        if files_failed > 0 {
            part.push_str(&format!(", {files_failed} file(s) not checked"));
        }
        parts.push(part);
    }
    let scenarios: Vec<&FileReport> = reports.iter().filter(|r| r.is_scenario()).collect();
    if !scenarios.is_empty() {
        let valid = scenarios.iter().filter(|r| r.ok()).count();
        parts.push(format!(
            "{} scenario{}: {valid} valid, {} invalid",
            scenarios.len(),
            plural(scenarios.len()),
            scenarios.len() - valid
        ));
    }
    writeln!(out, "{}", parts.join("; "))
}
