//! The scenario: what a simulation runs, from a TOML file, from flags, or both (flags
//! win). Every error names the file, the line and the field, and says what is accepted,
//! before any event is sent. The file format is documented in `examples/scenarios/`.

mod locate;
mod overrides;
mod raw;

use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use gcx_protocol::AgentState;
use toml::Spanned;
use uuid::Uuid;

pub use overrides::Overrides;

use super::agents::{LoadModel, RunEnd};
use super::dist::TimeDist;
use super::schedule::{ArrivalPattern, RateProfile, Stage};
use super::thresholds::Threshold;
use super::workflow::{Workflow, WorkflowError, idx};
use raw::{Dur, RawScenario};

/// Most agents one run (or shard) simulates.
pub const MAX_AGENTS: u64 = 1_000_000;

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
}

/// A scenario that cannot be run, and where.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{}{}: {}", origin, location.map(|(l, c)| format!(":{l}:{c}")).unwrap_or_default(), self.what())]
pub struct ScenarioError {
    /// The file (or `command line`).
    pub origin: String,
    /// 1-based line and column, when the error is in a file.
    pub location: Option<(usize, usize)>,
    /// The dotted key (`load.rate`) or flag (`--rate`).
    pub field: String,
    pub message: String,
}

impl ScenarioError {
    fn what(&self) -> String {
        if self.field.is_empty() {
            self.message.clone()
        } else {
            format!("`{}`: {}", self.field, self.message)
        }
    }

    pub(crate) fn flag(flag: &str, message: impl Into<String>) -> ScenarioError {
        ScenarioError {
            origin: "command line".into(),
            location: None,
            field: flag.into(),
            message: message.into(),
        }
    }
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
        }
    }
}

/// Checks values against one file, turning spans into lines.
struct Checker<'a> {
    origin: String,
    text: &'a str,
}

impl Checker<'_> {
    fn err(&self, span: Range<usize>, field: &str, message: impl Into<String>) -> ScenarioError {
        ScenarioError {
            origin: self.origin.clone(),
            location: Some(locate::line_col(self.text, span.start)),
            field: field.to_owned(),
            message: message.into(),
        }
    }

    fn int_in<T: TryFrom<i64>>(
        &self,
        v: &Spanned<i64>,
        field: &str,
        lo: i64,
        hi: i64,
        what: &str,
    ) -> Result<T, ScenarioError> {
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

    fn positive(&self, v: &Spanned<Dur>, field: &str) -> Result<Duration, ScenarioError> {
        let d = v.get_ref().0;
        if d.is_zero() {
            return Err(self.err(v.span(), field, "must be longer than 0"));
        }
        Ok(d)
    }

    fn state(&self, v: &Spanned<String>, field: &str) -> Result<AgentState, ScenarioError> {
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

    fn dist(&self, v: &Spanned<toml::Value>, field: &str) -> Result<TimeDist, ScenarioError> {
        let bad = |m: String| self.err(v.span(), field, m);
        let dur = |val: Option<&toml::Value>, key: &str| -> Result<Duration, ScenarioError> {
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

fn value_duration(v: &toml::Value) -> Result<Duration, String> {
    match v {
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
    }
}

impl Scenario {
    /// Reads and checks a scenario file.
    pub fn load(path: &Path) -> Result<Scenario, ScenarioError> {
        let text = std::fs::read_to_string(path).map_err(|e| ScenarioError {
            origin: path.display().to_string(),
            location: None,
            field: String::new(),
            message: format!("cannot read the scenario file: {e}"),
        })?;
        let mut s = Scenario::from_toml(&text, &path.display().to_string())?;
        s.source = Some(path.to_owned());
        Ok(s)
    }

    /// Parses and checks scenario text; `origin` names it in errors.
    pub fn from_toml(text: &str, origin: &str) -> Result<Scenario, ScenarioError> {
        let c = Checker {
            origin: origin.to_owned(),
            text,
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

        // Injector.
        let inj = &mut s.injector;
        if let Some(v) = &raw.batch_size {
            inj.batch_size = c.int_in(
                v,
                "batch_size",
                1,
                500,
                "the events endpoint takes 1-500 events per request",
            )?;
        }
        if let Some(v) = &raw.time_slice {
            let d = c.positive(v, "time_slice")?;
            if d > Duration::from_secs(10) {
                return Err(c.err(v.span(), "time_slice", "must be 10s or less"));
            }
            inj.time_slice = d;
        }
        if let Some(v) = &raw.async_mode {
            inj.async_mode = *v.get_ref();
        }
        if let Some(v) = &raw.max_in_flight {
            inj.max_in_flight =
                c.int_in(v, "max_in_flight", 1, 4096, "requests unanswered at once")?;
        }
        if let Some(v) = &raw.request_timeout {
            inj.request_timeout = c.positive(v, "request_timeout")?;
        }
        if let Some(v) = &raw.retry_deadline {
            inj.retry_deadline = c.positive(v, "retry_deadline")?;
        }
        if let Some(v) = &raw.max_lag {
            inj.max_lag = c.positive(v, "max_lag")?;
        }
        if let Some(v) = &raw.invalid_transitions {
            let x = *v.get_ref();
            if !(0.0..=0.5).contains(&x) {
                return Err(c.err(
                    v.span(),
                    "invalid_transitions",
                    format!("a share from 0 to 0.5, got {x}"),
                ));
            }
            s.invalid_share = x;
        }
        if let Some(v) = &raw.base_url {
            if let Err(e) = reqwest::Url::parse(v.get_ref()) {
                return Err(c.err(
                    v.span(),
                    "base_url",
                    format!("not a URL ({e}); e.g. \"http://127.0.0.1:8080\""),
                ));
            }
            let (line, _) = locate::line_col(text, v.span().start);
            s.base_url = Some((v.get_ref().clone(), format!("{origin}:{line} `base_url`")));
        }

        // End of the run.
        let duration = match &raw.duration {
            Some(v) => Some(c.positive(v, "duration")?),
            None => None,
        };
        if let Some(v) = &raw.iterations {
            let count = c.int_in(v, "iterations", 1, i64::MAX, "interactions to run")?;
            s.end = RunEnd::Iterations {
                count,
                max: duration,
            };
        } else if let Some(d) = duration {
            s.end = RunEnd::Duration(d);
        }

        // Agents.
        if let Some(a) = &raw.agents {
            match (&a.count, &a.ids) {
                (Some(_), Some(ids)) => {
                    return Err(c.err(
                        ids.span(),
                        "agents.ids",
                        "give either `count` or `ids`, not both",
                    ));
                }
                (Some(n), None) => {
                    s.agents = Agents::Count(c.int_in(
                        n,
                        "agents.count",
                        1,
                        MAX_AGENTS as i64,
                        "agents to simulate",
                    )?);
                }
                (None, Some(ids)) => {
                    if ids.get_ref().is_empty() {
                        return Err(c.err(ids.span(), "agents.ids", "needs at least one agent id"));
                    }
                    let mut out = Vec::with_capacity(ids.get_ref().len());
                    for id in ids.get_ref() {
                        let parsed = parse_agent_id(id.get_ref())
                            .map_err(|m| c.err(id.span(), "agents.ids", m))?;
                        if out.contains(&parsed) {
                            return Err(c.err(
                                id.span(),
                                "agents.ids",
                                format!("{parsed} appears twice"),
                            ));
                        }
                        out.push(parsed);
                    }
                    s.agents = Agents::Ids(out);
                }
                (None, None) => {}
            }
            if let Some(v) = &a.login_over {
                s.login_over = v.get_ref().0;
            }
        }

        // Load model.
        if let Some(load) = &raw.load {
            s.load = load_model(&c, load, &mut s.end, raw.duration.is_some())?;
        }

        // Workflow.
        if let Some(wf) = raw.workflow {
            let start = match &wf.start {
                Some(v) => c.state(v, "workflow.start")?,
                None => AgentState::Available,
            };
            let mut edges: Vec<(AgentState, AgentState, f64)> = s.workflow.edges().collect();
            // Where each state's row was written, for errors about it.
            let mut rows: [Option<Range<usize>>; 5] = Default::default();
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
                            return Err(c.err(
                                w.span(),
                                &field,
                                WorkflowError::NotAllowed { from, to }.to_string(),
                            ));
                        }
                        if !weight.is_finite() || weight < 0.0 {
                            return Err(c.err(
                                w.span(),
                                &field,
                                format!("a weight must be a number >= 0, got {weight}"),
                            ));
                        }
                        edges.push((from, to, weight));
                    }
                }
            }
            s.workflow = Workflow::new(start, &edges).map_err(|e| {
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
            })?;
        }

        // Time in state.
        if let Some(t) = raw.time_in_state {
            for (state, v) in AgentState::ALL.into_iter().zip(t.into_array()) {
                if let Some(v) = v {
                    s.dwell[idx(state)] =
                        c.dist(&v, &format!("time_in_state.{}", state.short_name()))?;
                }
            }
        }

        // Query-back.
        if let Some(q) = &raw.query {
            if let Some(v) = &q.interval {
                s.query.interval = c.positive(v, "query.interval")?;
            }
            if let Some(v) = &q.timeout {
                s.query.timeout = v.get_ref().0;
            }
        }

        // Thresholds.
        for t in raw.thresholds.iter().flatten() {
            let parsed: Threshold =
                t.get_ref()
                    .parse()
                    .map_err(|e: super::thresholds::ThresholdError| {
                        c.err(t.span(), "thresholds", e.to_string())
                    })?;
            s.thresholds.push(parsed);
        }
        Ok(s)
    }

    /// The scenario with command-line values on top (see [`Overrides`]).
    pub fn with_overrides(mut self, o: &Overrides) -> Result<Scenario, ScenarioError> {
        o.apply(&mut self)?;
        Ok(self)
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

fn load_model(
    c: &Checker<'_>,
    load: &Spanned<raw::RawLoad>,
    end: &mut RunEnd,
    has_duration: bool,
) -> Result<LoadModel, ScenarioError> {
    let l = load.get_ref();
    let closed = match &l.model {
        None => false,
        Some(m) => match m.get_ref().as_str() {
            "open" => false,
            "closed" => true,
            other => {
                return Err(c.err(
                    m.span(),
                    "load.model",
                    format!("unknown model {other:?}; use \"open\" or \"closed\""),
                ));
            }
        },
    };
    if closed {
        for (present, field) in [
            (l.rate.as_ref().map(Spanned::span), "load.rate"),
            (l.arrival.as_ref().map(Spanned::span), "load.arrival"),
            (
                l.stages.as_ref().and_then(|s| s.first()).map(Spanned::span),
                "load.stages",
            ),
        ] {
            if let Some(span) = present {
                return Err(c.err(span, field, "applies to the open model only (the closed model's pace is the agents' idle time)"));
            }
        }
        return Ok(LoadModel::Closed);
    }
    let pattern = match &l.arrival {
        None => ArrivalPattern::Poisson,
        Some(a) => match a.get_ref().as_str() {
            "poisson" => ArrivalPattern::Poisson,
            "uniform" => ArrivalPattern::Uniform,
            other => {
                return Err(c.err(
                    a.span(),
                    "load.arrival",
                    format!("unknown arrival pattern {other:?}; use \"poisson\" or \"uniform\""),
                ));
            }
        },
    };
    let rate_ok = |v: &Spanned<f64>, field: &str| -> Result<f64, ScenarioError> {
        let r = *v.get_ref();
        if !r.is_finite() || r < 0.0 {
            return Err(c.err(
                v.span(),
                field,
                format!("arrivals per second must be a number >= 0, got {r}"),
            ));
        }
        Ok(r)
    };
    let start_rate = match &l.rate {
        Some(v) => rate_ok(v, "load.rate")?,
        None => {
            if l.stages.is_some() {
                0.0
            } else {
                RateProfile::constant(10.0).start_rate
            }
        }
    };
    let mut stages = Vec::new();
    for st in l.stages.iter().flatten() {
        let s = st.get_ref();
        stages.push(Stage {
            duration: c.positive(&s.duration, "load.stages.duration")?,
            target: rate_ok(&s.target, "load.stages.target")?,
        });
    }
    let profile = RateProfile { start_rate, stages };
    if profile.start_rate == 0.0 && profile.stages.iter().all(|s| s.target == 0.0) {
        let span = l.rate.as_ref().map_or(load.span(), Spanned::span);
        return Err(c.err(
            span,
            "load.rate",
            "no interaction would ever arrive: give a rate (or a stage target) above 0",
        ));
    }
    // Stages without an explicit duration: the run lasts as long as the stages.
    if !has_duration && !profile.stages.is_empty() && matches!(end, RunEnd::Duration(_)) {
        *end = RunEnd::Duration(profile.stages_duration());
    }
    Ok(LoadModel::Open { profile, pattern })
}

#[cfg(test)]
mod tests;
