//! The demo's one summary: what was sent, completed, rejected and why, latencies, retries,
//! CRM deliveries, the simulation and its QA export, the audit log, and a list of checks. Serialized as is
//! for `--output json`; [`DemoSummary::to_text`] is what a person reads in ten seconds.

use std::fmt::Write as _;
use std::path::PathBuf;

use gcx_sandbox::stats::Stats;
use serde::Serialize;

use super::DemoOptions;
use super::dispatch::TriggerFigures;
use super::faults::FaultPlan;
use super::simulation::SimulationFigures;
use super::triggers::Batch;
use crate::audit::VerifyReport;
use crate::delivery::{DeliveryCounters, DrainReport};
use crate::store::OutboxStatus;

/// The sandbox's own counters (PROTOCOL.md section 7): the engine's, the CRM and QA
/// receivers' view, independent of what gcx believes it did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct SandboxFigures {
    pub sends: u64,
    pub executed_unique: u64,
    /// Re-sends of an already taken action, answered from the idempotency store.
    pub duplicates: u64,
    pub rejected_429: u64,
    pub rejected_invalid: u64,
    pub max_in_flight_observed: u64,
    pub connections_total: u64,
    pub crm_deliveries: u64,
    pub crm_unique_messages: u64,
    pub crm_initiated: u64,
    pub crm_completed: u64,
    pub crm_failed: u64,
    pub crm_order_violations: u64,
    pub crm_bad_signatures: u64,
    /// QA exports answered 2xx (their signatures checked).
    pub qa_exports: u64,
    pub events_requests: u64,
    pub events_rate_limited: u64,
}

impl SandboxFigures {
    pub fn of(s: &Stats) -> SandboxFigures {
        let (a, c, e) = (&s.assist, &s.crm, &s.events);
        SandboxFigures {
            sends: a.sends.get(),
            executed_unique: a.executed_unique.get(),
            duplicates: a.duplicates.get(),
            rejected_429: a.rejected_429.get(),
            rejected_invalid: a.rejected_invalid.get(),
            max_in_flight_observed: a.max_in_flight_observed.get(),
            connections_total: a.connections_total.get(),
            crm_deliveries: c.deliveries.get(),
            crm_unique_messages: c.unique_messages.get(),
            crm_initiated: c.initiated.get(),
            crm_completed: c.completed.get(),
            crm_failed: c.failed.get(),
            crm_order_violations: c.order_violations.get(),
            crm_bad_signatures: c.bad_signatures.get(),
            qa_exports: s.qa_exports.get(),
            events_requests: e.requests.get(),
            events_rate_limited: e.rate_limited.get(),
        }
    }
}

/// The CRM outbox as gcx sees it after the drain.
#[derive(Debug, Clone, Default, Serialize)]
pub struct CrmFigures {
    pub delivered: u64,
    pub pending: u64,
    pub dead: u64,
    /// Failed attempts scheduled again (the receiver's first answers).
    pub retried: u64,
}

impl CrmFigures {
    /// `drained` counts the whole outbox: the simulation's QA export (`qa_export`, its
    /// status) is taken out of it. `counters` are the CRM worker's.
    pub fn of(drained: DrainReport, counters: DeliveryCounters, qa_export: &str) -> CrmFigures {
        let less = |n: u64, status: OutboxStatus| {
            n.saturating_sub(u64::from(qa_export == status.as_str()))
        };
        CrmFigures {
            delivered: less(drained.delivered, OutboxStatus::Delivered),
            pending: less(drained.pending, OutboxStatus::Pending),
            dead: less(drained.dead, OutboxStatus::Dead),
            retried: counters.retried,
        }
    }
}

/// One invalid trigger as the summary reports it.
#[derive(Debug, Clone, Serialize)]
pub struct InvalidReport {
    /// 1-based place in the generated batch.
    pub position: usize,
    pub defect: String,
    /// Every violation, as `path: message (code)`.
    pub violations: Vec<String>,
    /// Compact form for the text summary: `path code` per violation.
    #[serde(skip)]
    short: String,
}

/// The audit log's verification.
#[derive(Debug, Clone, Default, Serialize)]
pub struct AuditFigures {
    pub intact: bool,
    pub records: u64,
    pub checkpoints_verified: u64,
    /// Records after the last signed checkpoint (chained, not yet signed).
    pub unsigned_tail: u64,
    pub problem: Option<String>,
}

/// One check: a claim, whether it held, and the numbers behind it.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub name: String,
    pub passed: bool,
    pub detail: String,
}

impl Check {
    fn new(name: &str, passed: bool, detail: String) -> Check {
        Check {
            name: name.to_owned(),
            passed,
            detail,
        }
    }
}

/// The triggers part of the summary.
#[derive(Debug, Clone, Serialize)]
pub struct TriggerSection {
    pub generated: u64,
    pub valid: u64,
    pub invalid: u64,
    /// Valid triggers per action type.
    pub by_action: Vec<(String, u64)>,
    pub invalid_triggers: Vec<InvalidReport>,
    #[serde(flatten)]
    pub figures: TriggerFigures,
}

/// Everything `gcx demo` reports.
#[derive(Debug, Clone, Serialize)]
pub struct DemoSummary {
    /// Every check held.
    pub passed: bool,
    pub seed: u64,
    /// Wall time of the whole demo, sandbox start to summary.
    pub elapsed_s: f64,
    pub sandbox_url: String,
    pub faults: FaultPlan,
    pub data_dir: PathBuf,
    pub triggers: TriggerSection,
    pub sandbox: SandboxFigures,
    pub crm: CrmFigures,
    pub simulation: SimulationFigures,
    pub audit: AuditFigures,
    pub checks: Vec<Check>,
}

/// What [`DemoSummary::new`] is made from.
pub struct Parts<'a> {
    pub options: &'a DemoOptions,
    pub sandbox_url: String,
    pub faults: FaultPlan,
    pub batch: &'a Batch,
    pub triggers: TriggerFigures,
    pub sandbox: SandboxFigures,
    pub crm: CrmFigures,
    pub simulation: SimulationFigures,
    pub audit: VerifyReport,
}

impl DemoSummary {
    pub fn new(p: Parts<'_>) -> DemoSummary {
        let valid = p.batch.valid.len() as u64;
        let invalid_triggers = p
            .batch
            .invalid
            .iter()
            .map(|t| InvalidReport {
                position: t.position,
                defect: t.defect.to_owned(),
                violations: t.violations.iter().map(ToString::to_string).collect(),
                short: t
                    .violations
                    .iter()
                    .map(|v| format!("{} {}", display_path(&v.path), v.code.as_str()))
                    .collect::<Vec<_>>()
                    .join(", "),
            })
            .collect();
        let audit = AuditFigures {
            intact: p.audit.is_intact(),
            records: p.audit.records,
            checkpoints_verified: p.audit.checkpoints_verified,
            unsigned_tail: p.audit.unsigned_tail,
            problem: p.audit.problem.as_ref().map(ToString::to_string),
        };
        let triggers = TriggerSection {
            generated: (p.batch.valid.len() + p.batch.invalid.len()) as u64,
            valid,
            invalid: p.batch.invalid.len() as u64,
            by_action: p.batch.by_action(),
            invalid_triggers,
            figures: p.triggers,
        };
        let checks = checks(
            &triggers,
            &p.sandbox,
            &p.crm,
            &p.simulation,
            &audit,
            p.faults.engine_limit,
        );
        DemoSummary {
            passed: checks.iter().all(|c| c.passed),
            seed: p.options.seed,
            elapsed_s: 0.0,
            sandbox_url: p.sandbox_url,
            faults: p.faults,
            data_dir: p.options.data_dir.clone(),
            triggers,
            sandbox: p.sandbox,
            crm: p.crm,
            simulation: p.simulation,
            audit,
            checks,
        }
    }

    /// The summary as a person reads it.
    pub fn to_text(&self) -> String {
        let mut o = String::new();
        let t = &self.triggers;
        let f = &t.figures;
        let s = &self.sandbox;
        let sim = &self.simulation;
        // Writing into a String cannot fail; the results are ignored for that reason.
        let _ = writeln!(o, "gcx demo: seed {}, {:.1} s", self.seed, self.elapsed_s);
        let _ = writeln!(
            o,
            "sandbox {} with faults: {}",
            self.sandbox_url,
            self.faults.describe()
        );
        let _ = writeln!(o);
        let by_action = t
            .by_action
            .iter()
            .map(|(a, n)| format!("{a} {}", n_(*n)))
            .collect::<Vec<_>>()
            .join(", ");
        let _ = writeln!(
            o,
            "TRIGGERS    {} generated: {} valid ({by_action}), {} invalid (not sent)",
            n_(t.generated),
            n_(t.valid),
            n_(t.invalid)
        );
        let _ = writeln!(
            o,
            "            {} completed, {} failed, {} unfinished in {:.1} s ({}/s)",
            n_(f.completed),
            n_(f.failed),
            n_(f.unfinished),
            f.elapsed_s,
            n_(f.per_second.round() as u64)
        );
        let _ = writeln!(
            o,
            "            send->result p50 {:.1} ms, p95 {:.1} ms, p99 {:.1} ms; {} retries ({} triggers), {} reconnect{}",
            f.p50_ms,
            f.p95_ms,
            f.p99_ms,
            n_(f.retries),
            n_(f.triggers_retried),
            f.reconnects,
            if f.reconnects == 1 { "" } else { "s" }
        );
        let _ = writeln!(
            o,
            "            engine: {} sends, {} executed once each, {} duplicates answered, {} refused 429, max {} in flight",
            n_(s.sends),
            n_(s.executed_unique),
            n_(s.duplicates),
            n_(s.rejected_429),
            s.max_in_flight_observed
        );
        for (reason, count) in &f.failure_reasons {
            let _ = writeln!(o, "  failed    {count} x {reason}");
        }
        for (i, inv) in t.invalid_triggers.iter().enumerate() {
            let label = if i == 0 { "  invalid" } else { "" };
            let _ = writeln!(
                o,
                "{label:<12}#{:<5} {}: {}",
                inv.position, inv.defect, inv.short
            );
        }
        let _ = writeln!(
            o,
            "CRM         {} webhooks delivered, signed and verified (initiated {}, completed {}, failed {})",
            n_(s.crm_unique_messages),
            n_(s.crm_initiated),
            n_(s.crm_completed),
            n_(s.crm_failed)
        );
        let _ = writeln!(
            o,
            "            {} retried, {} order violations, {} bad signatures; outbox pending {}, dead {}",
            n_(self.crm.retried),
            s.crm_order_violations,
            s.crm_bad_signatures,
            self.crm.pending,
            self.crm.dead
        );
        let _ = writeln!(
            o,
            "SIMULATION  {} agents, {:.0} s: {} events, {} accepted, {} rejected ({} of {} deliberately invalid)",
            sim.agents,
            sim.duration_s,
            n_(sim.events),
            n_(sim.accepted),
            n_(sim.rejected),
            n_(sim.expected_rejections),
            n_(sim.invalid_generated)
        );
        let _ = writeln!(
            o,
            "            {} mismatches, {} missing, {} retries ({} requests refused 429); p50 {:.1} ms, p95 {:.1} ms, p99 {:.1} ms",
            sim.state_mismatches,
            sim.missing,
            sim.retries,
            s.events_rate_limited,
            sim.p50_ms,
            sim.p95_ms,
            sim.p99_ms
        );
        let _ = writeln!(o, "            report: {}", sim.report_html.display());
        let _ = writeln!(
            o,
            "            QA export: {} (receiver took {}, signed and verified)",
            sim.qa_export, s.qa_exports
        );
        let a = &self.audit;
        let _ = writeln!(
            o,
            "AUDIT       {} records: {}",
            n_(a.records),
            match &a.problem {
                None => format!(
                    "hash chain and {} signed checkpoints verified",
                    a.checkpoints_verified
                ),
                Some(p) => format!("NOT intact: {p}"),
            }
        );
        let _ = writeln!(o);
        let width = self.checks.iter().map(|c| c.name.len()).max().unwrap_or(0);
        for c in &self.checks {
            let mark = if c.passed { "✓" } else { "✗" };
            let _ = writeln!(o, "  {mark} {:<width$}  {}", c.name, c.detail);
        }
        let failed = self.checks.iter().filter(|c| !c.passed).count();
        let _ = writeln!(o);
        if failed == 0 {
            let _ = writeln!(o, "all {} checks held", self.checks.len());
        } else {
            let _ = writeln!(o, "{failed} of {} checks FAILED", self.checks.len());
        }
        let _ = writeln!(o, "data: {}", self.data_dir.display());
        o
    }
}

fn checks(
    t: &TriggerSection,
    s: &SandboxFigures,
    crm: &CrmFigures,
    sim: &SimulationFigures,
    audit: &AuditFigures,
    limit: u32,
) -> Vec<Check> {
    let f = &t.figures;
    let valid = t.valid;
    let mut checks = vec![
        Check::new(
            "every valid trigger completed",
            f.completed == valid && f.halted.is_none(),
            match &f.halted {
                None => format!("{} of {}", n_(f.completed), n_(valid)),
                Some(why) => format!(
                    "{} of {}; dispatcher halted: {why}",
                    n_(f.completed),
                    n_(valid)
                ),
            },
        ),
        Check::new(
            "no action executed twice",
            s.executed_unique == valid,
            format!(
                "executed_unique {} = {} valid triggers",
                n_(s.executed_unique),
                n_(valid)
            ),
        ),
        Check::new(
            "engine limit held",
            s.max_in_flight_observed <= u64::from(limit),
            format!("max in flight {} <= {limit}", s.max_in_flight_observed),
        ),
        Check::new(
            "invalid triggers never sent",
            s.rejected_invalid == 0,
            format!(
                "{} refused locally with their violations, {} reached the engine",
                t.invalid, s.rejected_invalid
            ),
        ),
    ];
    let both_states = s.crm_initiated == valid && s.crm_completed + s.crm_failed == valid;
    checks.push(Check::new(
        "CRM got every state, in order",
        both_states
            && s.crm_order_violations == 0
            && s.crm_bad_signatures == 0
            && crm.pending == 0
            && crm.dead == 0,
        format!(
            "initiated {} and final {} of {}, order violations {}, bad signatures {}, pending {}, dead {}",
            n_(s.crm_initiated),
            n_(s.crm_completed + s.crm_failed),
            n_(valid),
            s.crm_order_violations,
            s.crm_bad_signatures,
            crm.pending,
            crm.dead
        ),
    ));
    let failed: Vec<&str> = sim
        .thresholds
        .iter()
        .filter(|(_, ok)| !ok)
        .map(|(t, _)| t.as_str())
        .collect();
    checks.push(Check::new(
        "simulation thresholds passed",
        sim.passed,
        if failed.is_empty() {
            format!(
                "{} of {}: {}",
                sim.thresholds.len(),
                sim.thresholds.len(),
                super::simulation::THRESHOLDS.join(", ")
            )
        } else {
            format!("failed: {}", failed.join("; "))
        },
    ));
    checks.push(Check::new(
        "QA export delivered through the outbox",
        sim.qa_export == OutboxStatus::Delivered.as_str() && s.qa_exports == 1,
        format!(
            "outbox status {}, QA receiver took {}",
            sim.qa_export, s.qa_exports
        ),
    ));
    checks.push(Check::new(
        "audit log verified",
        audit.intact && audit.records > 0,
        format!(
            "{} records, {} checkpoints{}",
            n_(audit.records),
            audit.checkpoints_verified,
            audit
                .problem
                .as_ref()
                .map(|p| format!("; {p}"))
                .unwrap_or_default()
        ),
    ));
    checks
}

fn display_path(path: &str) -> &str {
    if path.is_empty() { "(message)" } else { path }
}

/// `1234567` as `1,234,567`.
fn n_(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thousands_separators() {
        assert_eq!(n_(0), "0");
        assert_eq!(n_(999), "999");
        assert_eq!(n_(1000), "1,000");
        assert_eq!(n_(1234567), "1,234,567");
    }
}
