//! Simulation outputs: `summary.json`, `junit.xml`, `report.html`, the audit files, the
//! terminal table and the QA export (committed to the outbox, sent by `crate::delivery`).

pub mod audit_file;
pub mod html;
pub mod junit;
pub mod qa_export;
pub mod summary;
pub mod table;

use std::path::{Path, PathBuf};

use summary::Summary;

/// The files a report consists of.
#[derive(Debug, Clone)]
pub struct ReportFiles {
    pub summary: PathBuf,
    pub junit: PathBuf,
    pub html: PathBuf,
}

/// Why a report could not be written.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error("cannot write {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot render {path}: {message}")]
    Render { path: PathBuf, message: String },
}

fn write(path: PathBuf, text: &str) -> Result<PathBuf, WriteError> {
    std::fs::write(&path, text).map_err(|source| WriteError::Io {
        path: path.clone(),
        source,
    })?;
    Ok(path)
}

/// Writes `summary.json`, `junit.xml` and `report.html` into `dir`.
pub fn write_all(dir: &Path, s: &Summary) -> Result<ReportFiles, WriteError> {
    let render_err = |path: PathBuf, e: &dyn std::fmt::Display| WriteError::Render {
        path,
        message: e.to_string(),
    };
    let summary_path = dir.join("summary.json");
    let json = serde_json::to_string_pretty(s).map_err(|e| render_err(summary_path.clone(), &e))?;
    let junit_path = dir.join("junit.xml");
    let xml = junit::render(s).map_err(|e| render_err(junit_path.clone(), &e))?;
    let html_path = dir.join("report.html");
    let page = html::render(s).map_err(|e| render_err(html_path.clone(), &e))?;
    Ok(ReportFiles {
        summary: write(summary_path, &(json + "\n"))?,
        junit: write(junit_path, &xml)?,
        html: write(html_path, &page)?,
    })
}

/// Reads a `summary.json`.
pub fn read_summary(path: &Path) -> Result<Summary, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    serde_json::from_str(&text)
        .map_err(|e| format!("{} is not a gcx simulation summary: {e}", path.display()))
}
