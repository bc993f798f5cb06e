use super::*;

/// The one violation `text` has.
fn err(text: &str) -> ScenarioViolation {
    let e = Scenario::from_toml(text, "t.toml").unwrap_err();
    assert_eq!(e.violations.len(), 1, "{e}");
    e.violations[0].clone()
}

/// Checks that an error names the line and field and says `needle`.
fn check_err(text: &str, line: usize, field: &str, needle: &str) {
    let e = err(text);
    assert_eq!(e.origin, "t.toml");
    assert_eq!(e.location.map(|l| l.0), Some(line), "{e}");
    assert_eq!(e.field, field, "{e}");
    assert!(e.message.contains(needle), "{e}");
    let shown = e.to_string();
    assert!(shown.starts_with(&format!("t.toml:{line}:")), "{shown}");
}

#[test]
fn an_empty_file_is_the_default_run() {
    let s = Scenario::from_toml("", "quick.toml").unwrap();
    assert_eq!(s.name, "quick");
    assert_eq!(s.agents, Agents::Count(100));
    assert_eq!(s.injector.batch_size, 100);
}

#[test]
fn a_full_file_parses() {
    let text = r#"
name = "full"
seed = 9
duration = "5s"
async = true
batch_size = 500
time_slice = 20
max_in_flight = 4
invalid_transitions = 0.1
thresholds = ["p95_latency_ms < 200", "state_mismatches == 0"]

[agents]
count = 50
login_over = "500ms"

[load]
model = "open"
rate = 5
arrival = "uniform"
stages = [{ duration = "2s", target = 20 }, { duration = "3s", target = 20 }]

[workflow]
start = "available"
[workflow.next]
busy = { connected = 3, available = 1 }

[time_in_state]
busy = "200ms"
connected = { dist = "lognormal", median = "1s", p95 = "3s" }
wrapping = { dist = "exponential", mean = 300 }
disconnected = { dist = "uniform", min = "10ms", max = "20ms" }

[query]
interval = "100ms"
timeout = "3s"
"#;
    let s = Scenario::from_toml(text, "t.toml").unwrap();
    assert_eq!(s.seed, Some(9));
    assert!(s.injector.async_mode);
    assert_eq!(s.injector.time_slice, Duration::from_millis(20));
    assert_eq!(s.thresholds.len(), 2);
    assert_eq!(s.end, RunEnd::Duration(Duration::from_secs(5)));
    let busy: Vec<_> = s
        .workflow
        .edges()
        .filter(|(f, _, _)| *f == AgentState::Busy)
        .collect();
    assert_eq!(
        busy,
        vec![
            (AgentState::Busy, AgentState::Available, 0.25),
            (AgentState::Busy, AgentState::Connected, 0.75)
        ]
    );
    assert_eq!(
        s.dwell[idx(AgentState::Busy)],
        TimeDist::Fixed(Duration::from_millis(200))
    );
    match &s.load {
        LoadModel::Open { profile, pattern } => {
            assert_eq!(*pattern, ArrivalPattern::Uniform);
            assert_eq!(profile.stages.len(), 2);
        }
        LoadModel::Closed => panic!("open expected"),
    }
}

#[test]
fn stages_alone_set_the_duration() {
    let s = Scenario::from_toml(
        "[load]\nstages = [{ duration = \"2s\", target = 5 }, { duration = \"1s\", target = 0 }]\n",
        "t.toml",
    )
    .unwrap();
    assert_eq!(s.end, RunEnd::Duration(Duration::from_secs(3)));
}

#[test]
fn errors_name_file_line_and_field() {
    check_err(
        "[load]\nmodel = \"open\"\nrate = -5\n",
        3,
        "load.rate",
        "0, or 0.001 to 100000, got -5.0",
    );
    check_err(
        "[workflow]\nstart = \"lunch\"\n",
        2,
        "workflow.start",
        "unknown state \"lunch\"",
    );
    check_err(
        "\n[time_in_state]\nbsy = \"1s\"\n",
        3,
        "time_in_state.bsy",
        "unknown field `bsy`",
    );
    check_err(
        "[workflow.next]\nbusy = { conected = 1 }\n",
        2,
        "workflow.next.busy",
        "unknown field `conected`",
    );
    check_err(
        "[workflow.next]\nbusy = { connected = 0, available = 0 }\n",
        2,
        "workflow.next.busy",
        "no way out",
    );
    check_err(
        "[workflow.next]\navailable = { connected = 1 }\n",
        2,
        "workflow.next.available",
        "not an allowed transition",
    );
    check_err(
        "thresholds = [\n  \"p95_latency_ms < 200\",\n  \"p96_latency_ms < 1\",\n]\n",
        3,
        "thresholds",
        "unknown metric `p96_latency_ms`",
    );
    check_err("batch_size = 501\n", 1, "batch_size", "1 to 500");
    check_err(
        "duration = \"ten seconds\"\n",
        1,
        "duration",
        "not a duration",
    );
    check_err("duration = -3\n", 1, "duration", "must not be negative");
    check_err("colour = 3\n", 1, "colour", "unknown field `colour`");
    check_err(
        "[agents]\ncount = 2\nids = [\"x\"]\n",
        3,
        "agents.ids",
        "either",
    );
    check_err(
        "[agents]\nids = [\"A0000000-0000-4000-8000-000000000000\"]\n",
        2,
        "agents.ids",
        "lowercase",
    );
    check_err(
        "[load]\nmodel = \"closed\"\nrate = 3\n",
        3,
        "load.rate",
        "open model only",
    );
    check_err(
        "[load]\nmodel = \"ring\"\n",
        2,
        "load.model",
        "\"open\" or \"closed\"",
    );
    check_err("[load]\nrate = 0\n", 2, "load.rate", "would ever arrive");
    check_err(
        "[time_in_state]\nbusy = { dist = \"uniform\", min = \"2s\", max = \"1s\" }\n",
        2,
        "time_in_state.busy",
        "min <= max",
    );
    check_err(
        "[time_in_state]\nbusy = { dist = \"gamma\" }\n",
        2,
        "time_in_state.busy",
        "unknown dist",
    );
    check_err(
        "invalid_transitions = 0.7\n",
        1,
        "invalid_transitions",
        "0 to 0.5",
    );
    check_err("base_url = \"not a url\"\n", 1, "base_url", "not a URL");
    check_err("name = \"x\"\nseed = \"x\"\n", 2, "seed", "invalid type");
}

#[test]
fn flags_override_the_file() {
    let s = Scenario::from_toml("[load]\nrate = 5\n[agents]\ncount = 3\n", "t.toml").unwrap();
    let s = s
        .with_overrides(&Overrides {
            agents: Some(7),
            rate: Some(50.0),
            seed: Some(3),
            duration: Some(Duration::from_secs(2)),
            batch_size: Some(10),
            async_mode: Some(true),
            ..Overrides::default()
        })
        .unwrap();
    assert_eq!(s.agents, Agents::Count(7));
    assert_eq!(s.seed, Some(3));
    assert_eq!(s.end, RunEnd::Duration(Duration::from_secs(2)));
    assert!(s.injector.async_mode);
    assert!(matches!(&s.load, LoadModel::Open { profile, .. } if profile.start_rate == 50.0));
}

#[test]
fn flag_errors_name_the_flag() {
    let closed = Scenario::from_toml("[load]\nmodel = \"closed\"\n", "t.toml").unwrap();
    let e = closed
        .with_overrides(&Overrides {
            rate: Some(3.0),
            ..Overrides::default()
        })
        .unwrap_err();
    assert_eq!(e.violations[0].field, "--rate");
    assert!(e.to_string().starts_with("command line: `--rate`"), "{e}");
    let e = Scenario::default()
        .with_overrides(&Overrides {
            batch_size: Some(0),
            ..Overrides::default()
        })
        .unwrap_err();
    assert_eq!(e.violations[0].field, "--batch-size");
    // Every bad flag at once.
    let e = Scenario::default()
        .with_overrides(&Overrides {
            rate: Some(1e-300),
            agents: Some(0),
            duration: Some(Duration::from_secs(40 * 24 * 3600)),
            iterations: Some(u64::MAX),
            ..Overrides::default()
        })
        .unwrap_err();
    let fields: Vec<&str> = e.violations.iter().map(|v| v.field.as_str()).collect();
    assert_eq!(
        fields,
        ["--agents", "--duration", "--iterations", "--rate"],
        "{e}"
    );
    assert!(
        e.violations[3]
            .message
            .contains("0.001 to 100000, got 1e-300"),
        "{e}"
    );
}

#[test]
fn numbers_out_of_range_are_refused_where_they_are() {
    check_err(
        "[load]\nrate = 1e-20\n",
        2,
        "load.rate",
        "0, or 0.001 to 100000, got 1e-20",
    );
    check_err("[load]\nrate = 1e308\n", 2, "load.rate", "0.001 to 100000");
    check_err("[load]\nrate = nan\n", 2, "load.rate", "got NaN");
    check_err(
        "[load]\nstages = [{ duration = \"1s\", target = 1e300 }]\n",
        2,
        "load.stages.target",
        "0.001 to 100000",
    );
    check_err(
        "[load]\nstages = [{ duration = \"400d\", target = 5 }]\n",
        2,
        "load.stages.duration",
        "at most 30 days",
    );
    check_err(
        "duration = \"1000000000000s\"\n",
        1,
        "duration",
        "at most 30 days",
    );
    check_err(
        "request_timeout = \"31d\"\n",
        1,
        "request_timeout",
        "at most 30 days",
    );
    check_err(
        "[agents]\nlogin_over = \"100y\"\n",
        2,
        "agents.login_over",
        "at most 30 days",
    );
    check_err(
        "[query]\ntimeout = \"60d\"\n",
        2,
        "query.timeout",
        "at most 30 days",
    );
    check_err(
        "iterations = 9223372036854775807\n",
        1,
        "iterations",
        "1 to 1000000000",
    );
    check_err(
        "[time_in_state]\nbusy = { dist = \"uniform\", min = \"1s\", max = \"100000000000s\" }\n",
        2,
        "time_in_state.busy",
        "at most 24h",
    );
    check_err(
        "[time_in_state]\nbusy = \"2d\"\n",
        2,
        "time_in_state.busy",
        "at most 24h",
    );
    check_err(
        "[workflow.next]\nbusy = { connected = 1e300 }\n",
        2,
        "workflow.next.busy",
        "0 to 1000000",
    );
    // The edges of the ranges are accepted.
    let s = Scenario::from_toml(
        "duration = \"30days\"\n[load]\nrate = 0.001\nstages = [{ duration = \"1s\", target = 100000 }]\n",
        "t.toml",
    )
    .unwrap();
    assert_eq!(s.end, RunEnd::Duration(Duration::from_secs(30 * 24 * 3600)));
}

#[test]
fn every_violation_is_reported_at_once() {
    let text = "batch_size = 0\nduration = \"99999d\"\ninvalid_transitions = 2\n\n[agents]\ncount = 0\n\n[load]\nrate = 1e-20\nstages = [{ duration = \"1s\", target = -1 }]\n\n[time_in_state]\nbusy = \"3d\"\n\n[query]\ninterval = 0\n";
    let e = Scenario::from_toml(text, "t.toml").unwrap_err();
    let found: Vec<(usize, &str)> = e
        .violations
        .iter()
        .map(|v| (v.location.unwrap().0, v.field.as_str()))
        .collect();
    assert_eq!(
        found,
        [
            (1, "batch_size"),
            (3, "invalid_transitions"),
            (2, "duration"),
            (6, "agents.count"),
            (9, "load.rate"),
            (10, "load.stages.target"),
            (13, "time_in_state.busy"),
            (16, "query.interval"),
        ],
        "{e}"
    );
    assert_eq!(e.to_string().lines().count(), 8, "{e}");
    assert!(
        e.to_string()
            .starts_with("t.toml:1:14: `batch_size`: must be 1 to 500"),
        "{e}"
    );
}

#[test]
fn agent_ids_must_be_lowercase_uuids() {
    assert!(parse_agent_id("0a7c9c1e-8d2f-4b7e-9a51-3f0c2d4e5b6a").is_ok());
    assert!(parse_agent_id("0A7C9C1E-8D2F-4B7E-9A51-3F0C2D4E5B6A").is_err());
    assert!(parse_agent_id("0a7c9c1e8d2f4b7e9a513f0c2d4e5b6a").is_err());
    assert!(parse_agent_id("sim-0-123").is_err());
}

mod prop {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Whatever the text, parsing returns a scenario or a located error; never panics,
        /// and a located error's line is inside the text.
        #[test]
        fn never_panics_and_locates_inside(text in "[a-z_\\[\\]=\"0-9. {},\n-]{0,200}") {
            if let Err(e) = Scenario::from_toml(&text, "p.toml") {
                prop_assert!(!e.violations.is_empty());
                for (line, _) in e.violations.iter().filter_map(|v| v.location) {
                    prop_assert!(line >= 1 && line <= text.lines().count().max(1) + 1);
                }
            }
        }

        /// Any in-range batch size, rate and share round-trip through the file.
        #[test]
        fn valid_values_are_kept(b in 1usize..=500, r in 0.1f64..10_000.0, q in 0.0f64..=0.5) {
            let text = format!("batch_size = {b}\ninvalid_transitions = {q:?}\n[load]\nrate = {r:?}\n");
            let s = Scenario::from_toml(&text, "p.toml").unwrap();
            prop_assert_eq!(s.injector.batch_size, b);
            prop_assert_eq!(s.invalid_share, q);
            let kept = matches!(&s.load, LoadModel::Open { profile, .. } if profile.start_rate == r);
            prop_assert!(kept);
        }
    }
}

#[test]
fn the_shipped_examples_parse() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/scenarios");
    for name in ["smoke", "soak", "negative"] {
        let s = Scenario::load(&dir.join(format!("{name}.toml"))).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(s.name, name);
        assert!(!s.thresholds.is_empty(), "{name}");
    }
}

#[test]
fn the_genesys_target_reads_its_table_and_refuses_what_the_events_api_cannot_take() {
    let s = Scenario::from_toml(
        "target = \"genesys-events\"\n[genesys]\npresence = true\nhold_share = 0.25\nobserve = true\nobserve_grace = \"2s\"\n",
        "t.toml",
    )
    .unwrap();
    assert_eq!(s.target, WireTarget::GenesysEvents);
    assert!(s.genesys.map.presence && s.genesys.observe);
    assert_eq!(s.genesys.map.hold_share, 0.25);
    assert_eq!(s.genesys.observe_grace, Duration::from_secs(2));

    check_err(
        "invalid_transitions = 0.1\ntarget = \"genesys-events\"\n",
        2,
        "target",
        "checks fields, not transitions",
    );
    check_err("target = \"genesys\"\n", 1, "target", "genesys-events");
    check_err(
        "[genesys]\nobserve = true\n",
        2,
        "genesys.observe",
        "needs the genesys-events target",
    );
    check_err(
        "target = \"genesys-events\"\n[genesys]\nhold_share = 2.0\n",
        3,
        "genesys.hold_share",
        "from 0 to 1",
    );
    // A flag that turns the target on is checked against the file's values too.
    let file = Scenario::from_toml("invalid_transitions = 0.2\n", "t.toml").unwrap();
    let e = file
        .with_overrides(&Overrides {
            target: Some(WireTarget::GenesysEvents),
            ..Overrides::default()
        })
        .unwrap_err();
    assert!(e.to_string().contains("--target"), "{e}");
}
