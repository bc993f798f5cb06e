//! The soak, short: `gcx serve` (the built binary, a child process) on SQLite for half a
//! minute under steady load and every fault, with the fault periods shortened so each
//! one happens (two CRM outages, a `closing`, dropped connections, tokens renewed). The
//! account must pass, and the page and the samples must be written with every column.

use std::time::Duration;

use gcx::bench::soak::fault_mix::{Action, FaultMix};
use gcx::bench::soak::sample::CSV_COLUMNS;
use gcx::bench::soak::{self, Settings};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_soak_under_every_fault_accounts_for_every_trigger() {
    let out = tempfile::tempdir().unwrap();
    let settings = Settings {
        duration: Duration::from_secs(30),
        rate: 40.0,
        batch: 10,
        sample_every: Duration::from_secs(1),
        drain_within: Duration::from_secs(8),
        out_dir: out.path().to_owned(),
        postgres: None,
        restart_postgres: false,
        faults: FaultMix {
            drop_every_messages: 1_500,
            closing_every: Duration::from_secs(12),
            crm_down: Duration::from_secs(4),
            crm_period: Duration::from_secs(12),
            ..FaultMix::default()
        },
    };
    let (report, files) = soak::run(env!("CARGO_BIN_EXE_gcx").as_ref(), &settings)
        .await
        .expect("the soak runs");

    // The account passes: nothing lost, nothing doubled, webhooks delivered in order or
    // pending with a reason, the audit log verifies, the service stopped cleanly. The
    // flatness verdict is given but not asserted: half a minute is mostly warm-up.
    let failed: Vec<_> = report
        .checks
        .iter()
        .filter(|c| !c.passed && !c.name.contains("flat after warm-up"))
        .collect();
    assert!(failed.is_empty(), "{}", report.summary());
    let account = report.account.as_ref().expect("the store was read back");
    let acknowledged = report.load.acknowledged.len() as u64;
    assert!(acknowledged >= 600, "the load ran: {acknowledged}");
    assert_eq!(account.acknowledged, acknowledged);
    assert_eq!(report.flatness.len(), 2, "both figures judged");

    // Every fault was met.
    let s = &report.sandbox_stats;
    let count = |a| {
        report
            .events
            .iter()
            .filter(|e| e.action == a && e.error.is_none())
            .count()
    };
    assert!(
        count(Action::CrmDown) >= 2 && count(Action::ClosingOn) >= 2,
        "{:?}",
        report.events
    );
    assert!(
        s["assist"]["connections_total"].as_u64().unwrap() >= 3,
        "{s}"
    );
    assert!(s["oauth"]["tokens_issued"].as_u64().unwrap() >= 4, "{s}");
    assert!(s["assist"]["rejected_429"].as_u64().unwrap() > 0, "{s}");
    assert!(
        s["crm"]["deliveries"].as_u64().unwrap() > s["crm"]["unique_messages"].as_u64().unwrap(),
        "webhooks were retried after CRM outages: {s}"
    );
    assert!(
        report.samples.iter().any(|x| x.crm_down),
        "samples mark the outages"
    );

    // The samples: the header, one row per sample, every figure read under load.
    let csv = std::fs::read_to_string(&files.csv).unwrap();
    let mut lines = csv.lines();
    assert_eq!(lines.next().unwrap(), CSV_COLUMNS.join(","));
    let rows: Vec<Vec<&str>> = lines.map(|l| l.split(',').collect()).collect();
    assert_eq!(rows.len(), report.samples.len());
    assert!(rows.len() >= 25, "{} samples", rows.len());
    for row in &rows {
        assert_eq!(row.len(), CSV_COLUMNS.len(), "{row:?}");
        for (column, field) in CSV_COLUMNS.iter().zip(row).take(6) {
            assert!(!field.is_empty(), "{column} empty in {row:?}");
        }
    }
    assert!(rows.iter().any(|r| r[1] == "drain"), "the drain is sampled");

    // The page: self-contained, the verdict, the account and six charts.
    let html = std::fs::read_to_string(&files.html).unwrap();
    assert!(html.starts_with("<!doctype html>"));
    assert!(
        !html.contains("<script") && !html.contains("<link "),
        "no script, no network"
    );
    assert_eq!(html.matches("<svg").count(), 6);
    for c in &report.checks {
        assert!(html.contains(c.name), "{} on the page", c.name);
    }
    assert!(html.contains("--bg: #f4f6fa"), "the report's style sheet");
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&files.json).unwrap()).unwrap();
    assert_eq!(json["samples"].as_array().unwrap().len(), rows.len());
}
