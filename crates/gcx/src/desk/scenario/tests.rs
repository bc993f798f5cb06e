use super::*;

fn err(text: &str) -> ScenarioError {
    Scenario::from_toml(text, "t.toml").unwrap_err()
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
        ">= 0",
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
    assert_eq!(e.field, "--rate");
    assert!(e.to_string().starts_with("command line: `--rate`"), "{e}");
    let e = Scenario::default()
        .with_overrides(&Overrides {
            batch_size: Some(0),
            ..Overrides::default()
        })
        .unwrap_err();
    assert_eq!(e.field, "--batch-size");
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
            if let Err(e) = Scenario::from_toml(&text, "p.toml")
                && let Some((line, _)) = e.location
            {
                prop_assert!(line >= 1 && line <= text.lines().count().max(1) + 1);
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
