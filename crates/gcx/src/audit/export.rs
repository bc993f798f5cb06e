//! Export: the records as JSON lines (one [`AuditRecord`] per line, with `seq`,
//! `prev_hash` and `hash`), read page by page so any size streams in constant memory.
//! Each exported record re-hashes to its `hash` ([`AuditRecord::compute_hash`]).

use std::io::Write;

use super::{AuditError, AuditRecord, TimeRange};
use crate::store::Store;

/// Which records to export.
#[derive(Debug, Clone, Default)]
pub struct ExportOptions {
    /// Start at this seq (default 1).
    pub from_seq: Option<u64>,
    /// Only records whose `recorded_at` lies in `[since, until)`.
    pub range: TimeRange,
    /// Records read per query (0: a default).
    pub page_size: usize,
}

/// Writes the selected records to `out`, one JSON object per line; returns how many.
pub async fn export(
    store: &Store,
    options: &ExportOptions,
    out: &mut (dyn Write + Send),
) -> Result<u64, AuditError> {
    let page = if options.page_size == 0 {
        5_000
    } else {
        options.page_size
    };
    let mut next = options.from_seq.unwrap_or(1);
    let mut written = 0;
    loop {
        let records = store.audit_records(Some(next), page).await?;
        let Some(last) = records.last() else { break };
        next = last.seq + 1;
        let full = records.len() == page;
        for record in records.iter().filter(|r| in_range(r, &options.range)) {
            serde_json::to_writer(&mut *out, record)
                .map_err(|e| AuditError::Write(std::io::Error::other(e)))?;
            out.write_all(b"\n").map_err(AuditError::Write)?;
            written += 1;
        }
        if !full {
            break;
        }
    }
    out.flush().map_err(AuditError::Write)?;
    Ok(written)
}

fn in_range(record: &AuditRecord, range: &TimeRange) -> bool {
    range.since.is_none_or(|s| record.recorded_at >= s)
        && range.until.is_none_or(|u| record.recorded_at < u)
}
