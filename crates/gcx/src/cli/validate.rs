//! `gcx validate FILE... [--output table|json]`: checks trigger files offline (for CI)
//! with the configured action catalogue, and prints every violation as
//! `file:line: path: message (code)`. Exit 0 when everything is valid, 1 otherwise.
//!
//! The file's extension picks the checker: `.toml` is a simulation scenario, anything
//! else (`.jsonl`, `.json`, `-` for stdin) holds triggers.

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use serde::Serialize;

use super::GlobalArgs;
use crate::assist::intake::{self, InputFormat, Intake, IntakeOptions};
use crate::config::Config;
use gcx_protocol::{Catalogue, Violation};

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
    /// Only the invalid items: the valid ones need no attention.
    problems: Vec<ItemReport>,
}

#[derive(Debug, Serialize)]
struct ItemReport {
    line: usize,
    index: usize,
    violations: Vec<Violation>,
}

impl FileReport {
    fn ok(&self) -> bool {
        self.error.is_none() && self.invalid == 0
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

/// The hook for simulation scenarios (issue 6 fills it in).
fn check_scenario(file: &str) -> FileReport {
    FileReport {
        file: file.to_owned(),
        kind: "scenario",
        format: None,
        error: Some("scenario validation not available yet".into()),
        triggers: 0,
        valid: 0,
        invalid: 0,
        problems: Vec::new(),
    }
}

fn check_triggers(file: &str, catalogue: &Catalogue, options: IntakeOptions) -> FileReport {
    let mut report = FileReport {
        file: file.to_owned(),
        kind: "triggers",
        format: None,
        error: None,
        triggers: 0,
        valid: 0,
        invalid: 0,
        problems: Vec::new(),
    };
    let intake: Intake = match intake::read_triggers(file, catalogue, options) {
        Ok(i) => i,
        Err(e) => {
            report.error = Some(e.to_string());
            return report;
        }
    };
    report.format = Some(match intake.format {
        InputFormat::JsonLines => "jsonl",
        InputFormat::JsonArray => "array",
        InputFormat::SingleObject => "object",
        InputFormat::Empty => "empty",
    });
    report.triggers = intake.items.len();
    report.invalid = intake.invalid_count();
    report.valid = report.triggers - report.invalid;
    report.problems = intake
        .items
        .into_iter()
        .filter_map(|item| match item.outcome {
            Ok(_) => None,
            Err(violations) => Some(ItemReport {
                line: item.line,
                index: item.index,
                violations,
            }),
        })
        .collect();
    report
}

fn print_table(out: &mut impl Write, reports: &[FileReport]) -> std::io::Result<()> {
    for r in reports {
        let name = if r.file == "-" { "<stdin>" } else { &r.file };
        if let Some(e) = &r.error {
            writeln!(out, "{name}: {e}")?;
            continue;
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
    }
    let files_failed = reports.iter().filter(|r| r.error.is_some()).count();
    let valid: usize = reports.iter().map(|r| r.valid).sum();
    let invalid: usize = reports.iter().map(|r| r.invalid).sum();
    let files = reports.len();
    let mut summary = format!(
        "{} trigger{} in {files} file{}: {valid} valid, {invalid} invalid",
        valid + invalid,
        if valid + invalid == 1 { "" } else { "s" },
        if files == 1 { "" } else { "s" },
    );
    if files_failed > 0 {
        summary.push_str(&format!(", {files_failed} file(s) not checked"));
    }
    writeln!(out, "{summary}")
}
