//! The scenario: what a simulation runs, from a TOML file, from flags, or both (flags
//! win). Every error names the file, the line and the field, and says what is accepted,
//! before any event is sent. The file format is documented in `examples/scenarios/`.
//!
//! One room, although long: the file's schema, the flags that override it and the located
//! checks share one set of field names and source positions; the ranges live in
//! `bounds.rs` and the tests in `tests.rs`.

pub mod bounds;
mod error;
mod locate;
mod overrides;
mod raw;

use std::cell::RefCell;
use std::collections::HashSet;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use gcx_protocol::AgentState;
use toml::Spanned;
use uuid::Uuid;

pub use bounds::MAX_AGENTS;
pub use error::{ScenarioError, ScenarioViolation};
pub use overrides::Overrides;

use super::agents::{LoadModel, RunEnd};
use super::dist::TimeDist;
use super::genesys::MapSettings;
use super::schedule::{ArrivalPattern, RateProfile, Stage};
use super::thresholds::Threshold;
use super::workflow::{Workflow, WorkflowError, idx};
use raw::{Dur, RawScenario};

/// Who the agents are.
#[derive(Debug, Clone, PartialEq)]
pub enum Agents {
    /// This many agents with fresh random ids (so earlier runs' server state never
    /// interferes).
    Count(u64),
    /// These agents (e.g. real test users, the seed's `TEST_AGENT_ID`).
    Ids(Vec<Uuid>),
}

impl Agents {
    pub fn len(&self) -> u64 {
        match self {
            Agents::Count(n) => *n,
            Agents::Ids(ids) => ids.len() as u64,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// How events are sent.
#[derive(Debug, Clone, PartialEq)]
pub struct InjectorSettings {
    /// Most events per request (the endpoint takes 1-500).
    pub batch_size: usize,
    /// Events due within one slice go out together.
    pub time_slice: Duration,
    /// `?async=true`: 202 now, outcome by query-back.
    pub async_mode: bool,
    /// Most requests unanswered at once (and at most one per agent, always).
    pub max_in_flight: usize,
    /// One attempt's timeout.
    pub request_timeout: Duration,
    /// How long one batch may keep being retried, from its first send.
    pub retry_deadline: Duration,
    /// When the oldest unsent event is this late, new arrivals are dropped (counted).
    pub max_lag: Duration,
}

/// How outcomes are looked up (PROTOCOL.md section 4.1).
#[derive(Debug, Clone, PartialEq)]
pub struct QuerySettings {
    /// Pause between query-back rounds.
    pub interval: Duration,
    /// An event not found this long after its request was answered is `missing`.
    pub timeout: Duration,
}

/// Which API the events go to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WireTarget {
    /// The interactions events endpoint of PROTOCOL.md section 4 (`gcx sandbox`).
    #[default]
    InteractionsEvents,
    /// The Genesys Cloud Events API (PROTOCOL.md 9.1; EX orgs).
    GenesysEvents,
}

impl WireTarget {
    pub const NAMES: [&'static str; 2] = ["interactions-events", "genesys-events"];

    pub fn name(self) -> &'static str {
        match self {
            WireTarget::InteractionsEvents => Self::NAMES[0],
            WireTarget::GenesysEvents => Self::NAMES[1],
        }
    }
}

impl std::str::FromStr for WireTarget {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "interactions-events" => Ok(WireTarget::InteractionsEvents),
            "genesys-events" => Ok(WireTarget::GenesysEvents),
            other => Err(format!(
                "unknown target {other:?}; targets are: {}",
                WireTarget::NAMES.join(", ")
            )),
        }
    }
}

/// The `genesys-events` target's settings (`[genesys]`).
#[derive(Debug, Clone, PartialEq)]
pub struct GenesysSettings {
    pub map: MapSettings,
    /// Watch the agents' topics over the Notifications API and correlate.
    pub observe: bool,
    /// How long after the last injection answer notifications are still waited for.
    pub observe_grace: Duration,
}

impl Default for GenesysSettings {
    fn default() -> Self {
        GenesysSettings {
            map: MapSettings::default(),
            observe: false,
            observe_grace: Duration::from_secs(5),
        }
    }
}

/// A validated scenario.
#[derive(Debug, Clone)]
pub struct Scenario {
    pub name: String,
    /// The file it came from (`None`: flags and defaults only).
    pub source: Option<PathBuf>,
    /// `None` until chosen: a run without a seed draws one and reports it.
    pub seed: Option<u64>,
    pub agents: Agents,
    pub login_over: Duration,
    pub load: LoadModel,
    pub end: RunEnd,
    pub workflow: Workflow,
    /// Dwell time per state, by [`idx`].
    pub dwell: [TimeDist; 5],
    /// Share of events that are deliberately invalid (0 to 0.5).
    pub invalid_share: f64,
    pub injector: InjectorSettings,
    pub query: QuerySettings,
    pub thresholds: Vec<Threshold>,
    /// A base URL from the file, and where it was written (for error messages).
    pub base_url: Option<(String, String)>,
    pub target: WireTarget,
    pub genesys: GenesysSettings,
}

fn ms(v: u64) -> Duration {
    Duration::from_millis(v)
}

impl Default for Scenario {
    /// A quick run: 100 agents, 10 interactions a second for 10 seconds, the seed's
    /// workflow, short handle times.
    fn default() -> Scenario {
        Scenario {
            name: "quick".into(),
            source: None,
            seed: None,
            agents: Agents::Count(100),
            login_over: ms(1000),
            load: LoadModel::Open {
                profile: RateProfile::constant(10.0),
                pattern: ArrivalPattern::Poisson,
            },
            end: RunEnd::Duration(ms(10_000)),
            workflow: Workflow::seed_default(),
            dwell: [
                TimeDist::Exponential { mean: ms(1000) },
                TimeDist::Uniform {
                    min: ms(100),
                    max: ms(300),
                },
                TimeDist::LogNormal {
                    median: ms(1000),
                    p95: ms(3000),
                },
                TimeDist::Fixed(ms(50)),
                TimeDist::Exponential { mean: ms(300) },
            ],
            invalid_share: 0.0,
            injector: InjectorSettings {
                batch_size: 100,
                time_slice: ms(50),
                async_mode: false,
                max_in_flight: 16,
                request_timeout: ms(10_000),
                retry_deadline: ms(30_000),
                max_lag: ms(5_000),
            },
            query: QuerySettings {
                interval: ms(200),
                timeout: ms(10_000),
            },
            thresholds: Vec::new(),
            base_url: None,
            target: WireTarget::InteractionsEvents,
            genesys: GenesysSettings::default(),
        }
    }
}

/// Checks values against one file, turning spans into lines and keeping every violation.
struct Checker<'a> {
    origin: String,
    text: &'a str,
    /// Every violation found so far, in the order of the checks.
    found: RefCell<Vec<ScenarioViolation>>,
}

/// A check's answer: the value, or the violation (not yet kept).
type Checked<T> = Result<T, ScenarioViolation>;

impl Checker<'_> {
    fn err(
        &self,
        span: Range<usize>,
        field: &str,
        message: impl Into<String>,
    ) -> ScenarioViolation {
        ScenarioViolation {
            origin: self.origin.clone(),
            location: Some(locate::line_col(self.text, span.start)),
            field: field.to_owned(),
            message: message.into(),
        }
    }

    /// Records a violation.
    fn report(&self, v: ScenarioViolation) {
        self.found.borrow_mut().push(v);
    }

    /// The value of a check, recording its violation instead when it failed.
    fn keep<T>(&self, checked: Checked<T>) -> Option<T> {
        checked.map_err(|v| self.report(v)).ok()
    }

    fn int_in<T: TryFrom<i64>>(
        &self,
        v: &Spanned<i64>,
        field: &str,
        lo: i64,
        hi: i64,
        what: &str,
    ) -> Checked<T> {
        let n = *v.get_ref();
        if n < lo || n > hi {
            return Err(self.err(
                v.span(),
                field,
                format!("must be {lo} to {hi} ({what}), got {n}"),
            ));
        }
        T::try_from(n).map_err(|_| self.err(v.span(), field, format!("{n} is out of range")))
    }

    /// A duration above zero and at most [`bounds::MAX_SPAN`].
    fn positive(&self, v: &Spanned<Dur>, field: &str) -> Checked<Duration> {
        self.span_in(v, field, false)
    }

    /// A duration at most [`bounds::MAX_SPAN`] (zero allowed when `zero_ok`).
    fn span_in(&self, v: &Spanned<Dur>, field: &str, zero_ok: bool) -> Checked<Duration> {
        let d = v.get_ref().0;
        match bounds::span_problem(d, zero_ok, bounds::MAX_SPAN, bounds::MAX_SPAN_TEXT) {
            Some(m) => Err(self.err(v.span(), field, m)),
            None => Ok(d),
        }
    }

    fn rate(&self, v: &Spanned<f64>, field: &str) -> Checked<f64> {
        let r = *v.get_ref();
        match bounds::rate_problem(r, true) {
            Some(m) => Err(self.err(v.span(), field, m)),
            None => Ok(r),
        }
    }

    fn state(&self, v: &Spanned<String>, field: &str) -> Checked<AgentState> {
        AgentState::from_name(v.get_ref()).ok_or_else(|| {
            self.err(
                v.span(),
                field,
                format!(
                    "unknown state {:?}; states are: {}",
                    v.get_ref(),
                    AgentState::ALL.map(AgentState::short_name).join(", ")
                ),
            )
        })
    }

    fn dist(&self, v: &Spanned<toml::Value>, field: &str) -> Checked<TimeDist> {
        let bad = |m: String| self.err(v.span(), field, m);
        let dur = |val: Option<&toml::Value>, key: &str| -> Checked<Duration> {
            let val = val.ok_or_else(|| bad(format!("missing `{key}`")))?;
            value_duration(val).map_err(|m| bad(format!("`{key}`: {m}")))
        };
        let d = match v.get_ref() {
            toml::Value::Table(t) => {
                let kind = t.get("dist").and_then(toml::Value::as_str).ok_or_else(|| {
                    bad("a table needs `dist` = \"fixed\" | \"uniform\" | \"exponential\" | \"lognormal\"".into())
                })?;
                let (d, keys): (TimeDist, &[&str]) = match kind {
                    "fixed" => (TimeDist::Fixed(dur(t.get("value"), "value")?), &["value"]),
                    "uniform" => (
                        TimeDist::Uniform {
                            min: dur(t.get("min"), "min")?,
                            max: dur(t.get("max"), "max")?,
                        },
                        &["min", "max"],
                    ),
                    "exponential" => (
                        TimeDist::Exponential {
                            mean: dur(t.get("mean"), "mean")?,
                        },
                        &["mean"],
                    ),
                    "lognormal" => (
                        TimeDist::LogNormal {
                            median: dur(t.get("median"), "median")?,
                            p95: dur(t.get("p95"), "p95")?,
                        },
                        &["median", "p95"],
                    ),
                    other => {
                        return Err(bad(format!(
                            "unknown dist {other:?}; use fixed, uniform, exponential or lognormal"
                        )));
                    }
                };
                if let Some(k) = t
                    .keys()
                    .find(|k| *k != "dist" && !keys.contains(&k.as_str()))
                {
                    return Err(bad(format!(
                        "`{k}` does not apply to {kind} (it takes: {})",
                        keys.join(", ")
                    )));
                }
                d
            }
            other => TimeDist::Fixed(value_duration(other).map_err(bad)?),
        };
        d.check().map_err(|e| bad(e.to_string()))?;
        Ok(d)
    }
}

/// A dwell time's duration: at most [`bounds::MAX_DWELL`] (a longer draw would be cut).
fn value_duration(v: &toml::Value) -> Result<Duration, String> {
    let d = match v {
        toml::Value::Integer(i) => u64::try_from(*i)
            .map(Duration::from_millis)
            .map_err(|_| format!("a duration must not be negative, got {i}")),
        toml::Value::String(s) => humantime::parse_duration(s.trim()).map_err(|e| {
            format!("{s:?} is not a duration ({e}); write e.g. \"250ms\", \"10s\", \"2m\"")
        }),
        other => Err(format!(
            "expected a duration (\"250ms\", \"10s\" or milliseconds), got {}",
            other.type_str()
        )),
    }?;
    match bounds::span_problem(d, true, bounds::MAX_DWELL, "24h (one dwell time)") {
        Some(m) => Err(m),
        None => Ok(d),
    }
}

/// The most bytes a scenario file may hold.
pub const MAX_FILE_BYTES: u64 = crate::bounded_read::MAX_SETTINGS_FILE;

impl Scenario {
    /// Reads and checks a scenario file (at most [`MAX_FILE_BYTES`]).
    pub fn load(path: &Path) -> Result<Scenario, ScenarioError> {
        let text = crate::bounded_read::read_to_string(path, MAX_FILE_BYTES).map_err(|e| {
            ScenarioViolation {
                origin: path.display().to_string(),
                location: None,
                field: String::new(),
                message: format!("cannot read the scenario file: {e}"),
            }
        })?;
        let mut s = Scenario::from_toml(&text, &path.display().to_string())?;
        s.source = Some(path.to_owned());
        Ok(s)
    }

    /// Parses and checks scenario text; `origin` names it in errors. Every violation is
    /// reported (pure: no I/O).
    pub fn from_toml(text: &str, origin: &str) -> Result<Scenario, ScenarioError> {
        let c = Checker {
            origin: origin.to_owned(),
            text,
            found: RefCell::new(Vec::new()),
        };
        let raw: RawScenario = toml::from_str(text).map_err(|e| {
            let span = e.span().unwrap_or(0..0);
            c.err(
                span.clone(),
                &locate::key_at(text, span.start),
                e.message().trim().to_owned(),
            )
        })?;
        let mut s = Scenario::default();
        if let Some(v) = &raw.name {
            s.name = v.get_ref().clone();
        } else if let Some(stem) = Path::new(origin).file_stem() {
            s.name = stem.to_string_lossy().into_owned();
        }
        s.seed = raw.seed.as_ref().map(|v| *v.get_ref());
        injector(&c, &raw, &mut s);
        genesys(&c, &raw, &mut s);

        // End of the run.
        let duration = raw
            .duration
            .as_ref()
            .and_then(|v| c.keep(c.positive(v, "duration")));
        if let Some(v) = &raw.iterations {
            if let Some(count) = c.keep(c.int_in(
                v,
                "iterations",
                1,
                bounds::MAX_ITERATIONS as i64,
                "interactions to run",
            )) {
                s.end = RunEnd::Iterations {
                    count,
                    max: duration,
                };
            }
        } else if let Some(d) = duration {
            s.end = RunEnd::Duration(d);
        }

        if let Some(a) = &raw.agents {
            agents(&c, a, &mut s);
        }
        if let Some(load) = &raw.load
            && let Some(model) = load_model(&c, load, &mut s.end, raw.duration.is_some())
        {
            s.load = model;
        }
        if let Some(wf) = raw.workflow
            && let Some(w) = workflow(&c, wf, &s.workflow)
        {
            s.workflow = w;
        }

        // Time in state.
        if let Some(t) = raw.time_in_state {
            for (state, v) in AgentState::ALL.into_iter().zip(t.into_array()) {
                if let Some(v) = v
                    && let Some(d) =
                        c.keep(c.dist(&v, &format!("time_in_state.{}", state.short_name())))
                {
                    s.dwell[idx(state)] = d;
                }
            }
        }

        // Query-back.
        if let Some(q) = &raw.query {
            if let Some(v) = &q.interval
                && let Some(d) = c.keep(c.positive(v, "query.interval"))
            {
                s.query.interval = d;
            }
            if let Some(v) = &q.timeout
                && let Some(d) = c.keep(c.span_in(v, "query.timeout", true))
            {
                s.query.timeout = d;
            }
        }

        // Thresholds.
        for t in raw.thresholds.iter().flatten() {
            let parsed = t
                .get_ref()
                .parse()
                .map_err(|e: super::thresholds::ThresholdError| {
                    c.err(t.span(), "thresholds", e.to_string())
                });
            if let Some(parsed) = c.keep(parsed) {
                s.thresholds.push(parsed);
            }
        }
        ScenarioError::check(c.found.into_inner())?;
        Ok(s)
    }

    /// The scenario with command-line values on top (see [`Overrides`]).
    pub fn with_overrides(mut self, o: &Overrides) -> Result<Scenario, ScenarioError> {
        o.apply(&mut self)?;
        Ok(self)
    }
}

/// `target` and `[genesys]`, and what the Events API cannot take.
fn genesys(c: &Checker<'_>, raw: &RawScenario, s: &mut Scenario) {
    if let Some(v) = &raw.target {
        match v.get_ref().parse::<WireTarget>() {
            Ok(t) => s.target = t,
            Err(m) => c.report(c.err(v.span(), "target", m)),
        }
    }
    let Some(g) = &raw.genesys else {
        if let Some(v) = &raw.target {
            for m in s.target_problems() {
                c.report(c.err(v.span(), "target", m));
            }
        }
        return;
    };
    let set = &mut s.genesys;
    if let Some(v) = &g.presence {
        set.map.presence = *v.get_ref();
    }
    if let Some(v) = &g.hold_share {
        let x = *v.get_ref();
        if (0.0..=1.0).contains(&x) {
            set.map.hold_share = x;
        } else {
            c.report(c.err(
                v.span(),
                "genesys.hold_share",
                format!("a share from 0 to 1, got {x}"),
            ));
        }
    }
    if let Some(v) = &g.source_id {
        match Uuid::parse_str(v.get_ref()) {
            Ok(u) => set.map.source_id = u,
            Err(_) => c.report(c.err(
                v.span(),
                "genesys.source_id",
                format!(
                    "{:?} is not a UUID (the id of the external platform the events come from)",
                    v.get_ref()
                ),
            )),
        }
    }
    if let Some(v) = &g.observe {
        set.observe = *v.get_ref();
    }
    if let Some(v) = &g.observe_grace
        && let Some(d) = c.keep(c.span_in(v, "genesys.observe_grace", true))
    {
        set.observe_grace = d;
    }
    let at = raw
        .target
        .as_ref()
        .map(|v| (v.span(), "target"))
        .or_else(|| g.observe.as_ref().map(|v| (v.span(), "genesys.observe")));
    if let Some((span, field)) = at {
        for m in s.target_problems() {
            c.report(c.err(span.clone(), field, m));
        }
    }
}

impl Scenario {
    /// What this scenario asks that its target cannot do (empty: nothing).
    pub fn target_problems(&self) -> Vec<String> {
        let mut found = Vec::new();
        match self.target {
            WireTarget::GenesysEvents => {
                if self.invalid_share > 0.0 {
                    found.push(format!(
                        "invalid_transitions is {} but the genesys-events target takes none: the Events API checks fields, not transitions, so an invalid transition would be accepted; set it to 0",
                        self.invalid_share
                    ));
                }
                if self.injector.async_mode {
                    found.push(
                        "async is on but the Events API answers every request synchronously; turn it off"
                            .into(),
                    );
                }
            }
            WireTarget::InteractionsEvents => {
                if self.genesys.observe {
                    found.push(
                        "observing needs the genesys-events target (the Notifications API reports what the Events API injected)"
                            .into(),
                    );
                }
            }
        }
        found
    }
}

/// An agent id: a lowercase hyphenated UUID (PROTOCOL.md section 4).
pub fn parse_agent_id(s: &str) -> Result<Uuid, String> {
    let u = Uuid::parse_str(s).map_err(|_| {
        format!("{s:?} is not a UUID (lowercase, hyphenated: 8-4-4-4-12 hex digits)")
    })?;
    if u.hyphenated().to_string() != s {
        return Err(format!(
            "{s:?} must be written lowercase and hyphenated, as {}",
            u.hyphenated()
        ));
    }
    Ok(u)
}

/// The top-level keys that shape sending.
fn injector(c: &Checker<'_>, raw: &RawScenario, s: &mut Scenario) {
    let inj = &mut s.injector;
    if let Some(v) = &raw.batch_size
        && let Some(n) = c.keep(c.int_in(
            v,
            "batch_size",
            1,
            500,
            "the events endpoint takes 1-500 events per request",
        ))
    {
        inj.batch_size = n;
    }
    if let Some(v) = &raw.time_slice
        && let Some(d) = c.keep(c.positive(v, "time_slice"))
    {
        if d > Duration::from_secs(10) {
            c.report(c.err(v.span(), "time_slice", "must be 10s or less"));
        } else {
            inj.time_slice = d;
        }
    }
    if let Some(v) = &raw.async_mode {
        inj.async_mode = *v.get_ref();
    }
    if let Some(v) = &raw.max_in_flight
        && let Some(n) =
            c.keep(c.int_in(v, "max_in_flight", 1, 4096, "requests unanswered at once"))
    {
        inj.max_in_flight = n;
    }
    for (v, field, slot) in [
        (
            &raw.request_timeout,
            "request_timeout",
            &mut inj.request_timeout,
        ),
        (
            &raw.retry_deadline,
            "retry_deadline",
            &mut inj.retry_deadline,
        ),
        (&raw.max_lag, "max_lag", &mut inj.max_lag),
    ] {
        if let Some(v) = v
            && let Some(d) = c.keep(c.positive(v, field))
        {
            *slot = d;
        }
    }
    if let Some(v) = &raw.invalid_transitions {
        let x = *v.get_ref();
        if (0.0..=0.5).contains(&x) {
            s.invalid_share = x;
        } else {
            c.report(c.err(
                v.span(),
                "invalid_transitions",
                format!("a share from 0 to 0.5, got {x}"),
            ));
        }
    }
    if let Some(v) = &raw.base_url {
        match reqwest::Url::parse(v.get_ref()) {
            Err(e) => c.report(c.err(
                v.span(),
                "base_url",
                format!("not a URL ({e}); e.g. \"http://127.0.0.1:8080\""),
            )),
            Ok(_) => {
                let (line, _) = locate::line_col(c.text, v.span().start);
                s.base_url = Some((
                    v.get_ref().clone(),
                    format!("{}:{line} `base_url`", c.origin),
                ));
            }
        }
    }
}

fn agents(c: &Checker<'_>, a: &raw::RawAgents, s: &mut Scenario) {
    match (&a.count, &a.ids) {
        (Some(_), Some(ids)) => c.report(c.err(
            ids.span(),
            "agents.ids",
            "give either `count` or `ids`, not both",
        )),
        (Some(n), None) => {
            if let Some(n) = c.keep(c.int_in(
                n,
                "agents.count",
                1,
                MAX_AGENTS as i64,
                "agents to simulate",
            )) {
                s.agents = Agents::Count(n);
            }
        }
        (None, Some(ids)) => {
            let given = ids.get_ref();
            if given.is_empty() {
                c.report(c.err(ids.span(), "agents.ids", "needs at least one agent id"));
            } else if given.len() as u64 > MAX_AGENTS {
                c.report(c.err(
                    ids.span(),
                    "agents.ids",
                    format!("at most {MAX_AGENTS} agents, got {}", given.len()),
                ));
            } else {
                let mut out = Vec::with_capacity(given.len());
                let mut seen = HashSet::with_capacity(given.len());
                let before = c.found.borrow().len();
                for id in given {
                    let Some(parsed) = c.keep(
                        parse_agent_id(id.get_ref()).map_err(|m| c.err(id.span(), "agents.ids", m)),
                    ) else {
                        continue;
                    };
                    if !seen.insert(parsed) {
                        c.report(c.err(id.span(), "agents.ids", format!("{parsed} appears twice")));
                        continue;
                    }
                    out.push(parsed);
                }
                if c.found.borrow().len() == before {
                    s.agents = Agents::Ids(out);
                }
            }
        }
        (None, None) => {}
    }
    if let Some(v) = &a.login_over
        && let Some(d) = c.keep(c.span_in(v, "agents.login_over", true))
    {
        s.login_over = d;
    }
}

fn workflow(c: &Checker<'_>, wf: raw::RawWorkflow, default: &Workflow) -> Option<Workflow> {
    let start = match &wf.start {
        Some(v) => c.keep(c.state(v, "workflow.start"))?,
        None => AgentState::Available,
    };
    let mut edges: Vec<(AgentState, AgentState, f64)> = default.edges().collect();
    // Where each state's row was written, for errors about it.
    let mut rows: [Option<Range<usize>>; 5] = Default::default();
    let mut bad_edge = false;
    if let Some(next) = wf.next {
        for (from, row) in AgentState::ALL.into_iter().zip(next.into_array()) {
            let Some(row) = row else { continue };
            let field = format!("workflow.next.{}", from.short_name());
            rows[idx(from)] = Some(row.span());
            edges.retain(|(f, _, _)| *f != from);
            for (to, w) in AgentState::ALL
                .into_iter()
                .zip(row.into_inner().into_array())
            {
                let Some(w) = w else { continue };
                let weight = *w.get_ref();
                if !from.can_move_to(to) {
                    bad_edge = true;
                    c.report(c.err(
                        w.span(),
                        &field,
                        WorkflowError::NotAllowed { from, to }.to_string(),
                    ));
                } else if !weight.is_finite() || !(0.0..=bounds::MAX_WEIGHT).contains(&weight) {
                    bad_edge = true;
                    c.report(c.err(
                        w.span(),
                        &field,
                        format!(
                            "a weight must be a number from 0 to {}, got {weight}",
                            bounds::MAX_WEIGHT
                        ),
                    ));
                } else {
                    edges.push((from, to, weight));
                }
            }
        }
    }
    if bad_edge {
        return None;
    }
    let built = Workflow::new(start, &edges).map_err(|e| {
        let (span, field) = match &e {
            WorkflowError::NoWayOut { state } => (
                rows[idx(*state)]
                    .clone()
                    .or_else(|| wf.start.as_ref().map(Spanned::span)),
                format!("workflow.next.{}", state.short_name()),
            ),
            _ => (None, "workflow".to_owned()),
        };
        c.err(span.unwrap_or(0..0), &field, e.to_string())
    });
    c.keep(built)
}

fn load_model(
    c: &Checker<'_>,
    load: &Spanned<raw::RawLoad>,
    end: &mut RunEnd,
    has_duration: bool,
) -> Option<LoadModel> {
    let l = load.get_ref();
    let closed = match &l.model {
        None => false,
        Some(m) => match m.get_ref().as_str() {
            "open" => false,
            "closed" => true,
            other => {
                c.report(c.err(
                    m.span(),
                    "load.model",
                    format!("unknown model {other:?}; use \"open\" or \"closed\""),
                ));
                return None;
            }
        },
    };
    if closed {
        let mut ok = true;
        for (present, field) in [
            (l.rate.as_ref().map(Spanned::span), "load.rate"),
            (l.arrival.as_ref().map(Spanned::span), "load.arrival"),
            (
                l.stages.as_ref().and_then(|s| s.first()).map(Spanned::span),
                "load.stages",
            ),
        ] {
            if let Some(span) = present {
                ok = false;
                c.report(c.err(span, field, "applies to the open model only (the closed model's pace is the agents' idle time)"));
            }
        }
        return ok.then_some(LoadModel::Closed);
    }
    let pattern = match &l.arrival {
        None => Some(ArrivalPattern::Poisson),
        Some(a) => match a.get_ref().as_str() {
            "poisson" => Some(ArrivalPattern::Poisson),
            "uniform" => Some(ArrivalPattern::Uniform),
            other => {
                c.report(c.err(
                    a.span(),
                    "load.arrival",
                    format!("unknown arrival pattern {other:?}; use \"poisson\" or \"uniform\""),
                ));
                None
            }
        },
    };
    let start_rate = match &l.rate {
        Some(v) => c.keep(c.rate(v, "load.rate")),
        None if l.stages.is_some() => Some(0.0),
        None => Some(RateProfile::constant(10.0).start_rate),
    };
    let mut stages = Some(Vec::new());
    for st in l.stages.iter().flatten() {
        let raw = st.get_ref();
        let duration = c.keep(c.positive(&raw.duration, "load.stages.duration"));
        let target = c.keep(c.rate(&raw.target, "load.stages.target"));
        match (duration, target, stages.as_mut()) {
            (Some(duration), Some(target), Some(list)) => list.push(Stage { duration, target }),
            _ => stages = None,
        }
    }
    let profile = RateProfile {
        start_rate: start_rate?,
        stages: stages?,
    };
    if profile.stages_duration() > bounds::MAX_SPAN {
        let span = l
            .stages
            .as_ref()
            .and_then(|s| s.first())
            .map_or(load.span(), Spanned::span);
        c.report(c.err(
            span,
            "load.stages",
            format!(
                "the stages together must last at most {}, got {}",
                bounds::MAX_SPAN_TEXT,
                humantime::format_duration(profile.stages_duration())
            ),
        ));
        return None;
    }
    if profile.start_rate == 0.0 && profile.stages.iter().all(|s| s.target == 0.0) {
        let span = l.rate.as_ref().map_or(load.span(), Spanned::span);
        c.report(c.err(
            span,
            "load.rate",
            "no interaction would ever arrive: give a rate (or a stage target) above 0",
        ));
        return None;
    }
    // Stages without an explicit duration: the run lasts as long as the stages.
    if !has_duration && !profile.stages.is_empty() && matches!(end, RunEnd::Duration(_)) {
        *end = RunEnd::Duration(profile.stages_duration());
    }
    Some(LoadModel::Open {
        profile,
        pattern: pattern?,
    })
}

#[cfg(test)]
mod tests;
