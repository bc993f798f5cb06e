//! The per-event audit files, written as the run goes (on a thread of their own, so disk
//! never stalls the injector): the seed's `workspace_sim_audit_<YYYYMMDD_HHMMSS>.json`, a
//! JSON array of its `AuditLogEntry` fields, and `audit.jsonl`, one richer line per event.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::thread::JoinHandle;

use gcx_protocol::AgentState;
use serde::Serialize;
use uuid::Uuid;

/// The seed's `AuditLogEntry`, field for field.
#[derive(Debug, Clone, Serialize)]
pub struct AuditLogEntry<'a> {
    pub run_id: &'a str,
    pub agent_id: Uuid,
    pub sequence_id: Uuid,
    pub state: AgentState,
    pub latency_ms: f64,
    /// The outcome is what the event was generated for: accepted if valid, rejected if
    /// deliberately invalid.
    pub validated: bool,
    pub logged_at: &'a str,
}

/// One event's final record.
#[derive(Debug, Clone, Serialize)]
pub struct AuditRecord {
    pub agent_id: Uuid,
    pub sequence_id: Uuid,
    pub state: AgentState,
    /// Response time from the intended send time.
    pub latency_ms: f64,
    pub validated: bool,
    pub logged_at: String,
    /// Generation order (sort by it to see the generated sequence).
    pub n: u64,
    /// The agent's index in this run or shard.
    pub agent: u32,
    pub from: Option<AgentState>,
    pub invalid: bool,
    /// accepted, rejected, failed or missing.
    pub status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub duplicate: bool,
    /// When the event happened, ms from the run start.
    pub at_ms: f64,
}

#[derive(Serialize)]
struct JsonlLine<'a> {
    run_id: &'a str,
    #[serde(flatten)]
    record: &'a AuditRecord,
}

/// Where the audit went.
#[derive(Debug, Clone)]
pub struct AuditFiles {
    pub json: PathBuf,
    pub jsonl: PathBuf,
    pub records: u64,
}

/// The writer thread's handle.
pub struct AuditWriter {
    tx: Option<mpsc::Sender<Vec<AuditRecord>>>,
    thread: Option<JoinHandle<std::io::Result<u64>>>,
    json: PathBuf,
    jsonl: PathBuf,
}

impl AuditWriter {
    /// Creates both files in `dir`; `stamp` is `YYYYMMDD_HHMMSS`.
    pub fn create(dir: &Path, run_id: &str, stamp: &str) -> std::io::Result<AuditWriter> {
        let json = dir.join(format!("workspace_sim_audit_{stamp}.json"));
        let jsonl = dir.join("audit.jsonl");
        let mut a = BufWriter::with_capacity(1 << 16, File::create(&json)?);
        let mut b = BufWriter::with_capacity(1 << 16, File::create(&jsonl)?);
        let (tx, rx) = mpsc::channel::<Vec<AuditRecord>>();
        let run_id = run_id.to_owned();
        let thread = std::thread::Builder::new()
            .name("gcx-sim-audit".into())
            .spawn(move || -> std::io::Result<u64> {
                let mut n = 0u64;
                a.write_all(b"[")?;
                for chunk in rx {
                    for r in &chunk {
                        a.write_all(if n == 0 { b"\n  " } else { b",\n  " })?;
                        let entry = AuditLogEntry {
                            run_id: &run_id,
                            agent_id: r.agent_id,
                            sequence_id: r.sequence_id,
                            state: r.state,
                            latency_ms: r.latency_ms,
                            validated: r.validated,
                            logged_at: &r.logged_at,
                        };
                        serde_json::to_writer(&mut a, &entry)?;
                        serde_json::to_writer(
                            &mut b,
                            &JsonlLine {
                                run_id: &run_id,
                                record: r,
                            },
                        )?;
                        b.write_all(b"\n")?;
                        n += 1;
                    }
                }
                a.write_all(if n == 0 { b"]\n" } else { b"\n]\n" })?;
                a.flush()?;
                b.flush()?;
                Ok(n)
            })?;
        Ok(AuditWriter {
            tx: Some(tx),
            thread: Some(thread),
            json,
            jsonl,
        })
    }

    pub fn write(&self, records: Vec<AuditRecord>) {
        if records.is_empty() {
            return;
        }
        if let Some(tx) = &self.tx {
            // A send fails only if the thread died on an I/O error; `finish` reports it.
            let _ = tx.send(records);
        }
    }

    /// Closes both files (waiting for the thread).
    pub fn finish(mut self) -> std::io::Result<AuditFiles> {
        self.tx = None;
        let records = match self.thread.take().map(JoinHandle::join) {
            Some(Ok(r)) => r?,
            Some(Err(_)) => return Err(std::io::Error::other("the audit writer thread panicked")),
            None => 0,
        };
        Ok(AuditFiles {
            json: self.json.clone(),
            jsonl: self.jsonl.clone(),
            records,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_a_json_array_of_the_seed_fields_and_jsonl() {
        let dir = tempfile::tempdir().unwrap();
        let w = AuditWriter::create(dir.path(), "run-1", "20260101_000000").unwrap();
        let rec = |n: u64| AuditRecord {
            agent_id: Uuid::new_v4(),
            sequence_id: Uuid::new_v4(),
            state: AgentState::Busy,
            latency_ms: 1.5,
            validated: true,
            logged_at: "2026-01-01T00:00:00.000Z".into(),
            n,
            agent: 0,
            from: Some(AgentState::Available),
            invalid: false,
            status: "accepted",
            code: None,
            duplicate: false,
            at_ms: 0.0,
        };
        w.write(vec![rec(0), rec(1)]);
        w.write(vec![rec(2)]);
        let files = w.finish().unwrap();
        assert_eq!(files.records, 3);
        let arr: Vec<serde_json::Value> =
            serde_json::from_slice(&std::fs::read(&files.json).unwrap()).unwrap();
        assert_eq!(arr.len(), 3);
        let keys: Vec<&str> = arr[0]
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(
            keys,
            [
                "run_id",
                "agent_id",
                "sequence_id",
                "state",
                "latency_ms",
                "validated",
                "logged_at"
            ]
        );
        assert!(
            files
                .json
                .file_name()
                .unwrap()
                .to_str()
                .unwrap()
                .starts_with("workspace_sim_audit_20260101_000000")
        );
        let lines = std::fs::read_to_string(&files.jsonl).unwrap();
        assert_eq!(lines.lines().count(), 3);
        let first: serde_json::Value = serde_json::from_str(lines.lines().next().unwrap()).unwrap();
        assert_eq!(first["run_id"], "run-1");
        assert_eq!(first["status"], "accepted");

        let empty = AuditWriter::create(dir.path(), "run-2", "x")
            .unwrap()
            .finish()
            .unwrap();
        let arr: Vec<serde_json::Value> =
            serde_json::from_slice(&std::fs::read(&empty.json).unwrap()).unwrap();
        assert!(arr.is_empty());
    }
}
