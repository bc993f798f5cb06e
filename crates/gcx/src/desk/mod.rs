//! # The agent desktop event simulator (`gcx simulate`)
//!
//! Thousands of simulated agents follow the desktop workflow; their events are injected
//! into the interactions events API on an open-model schedule, timed honestly, and every
//! one of them is accounted for.
//!
//! # Layout (in data-flow order)
//! - [`scenario`]: the TOML file and flag overrides, checked with file/line/field errors.
//! - [`workflow`], [`dist`], [`rng`]: the state graph, dwell-time distributions and the
//!   seeded random streams they draw from.
//! - [`schedule`]: open-model arrival times (constant or ramping, uniform or Poisson).
//! - [`agents`]: the fleet of per-agent state machines; emits the events due by a time.
//! - [`wire`]: ids and the JSON body of a request.
//! - [`batcher`]: events into batches, at most one unanswered request per agent.
//! - [`sender`]: one batch's POST with the retry rules (tokens from [`crate::auth`]),
//!   over the [`transport`] (hyper directly, or reqwest when a proxy applies).
//! - [`injector`]: the run loop tying these together; [`correlate`]: query-back.
//! - [`latency`]: HDR histograms and the per-second series; [`tally`]: the accounting.
//! - [`thresholds`]: pass/fail expressions; [`report`]: summary, JUnit, HTML, audit files,
//!   terminal table, QA export (an outbox message that [`crate::delivery`] sends);
//!   [`merge`]: shards merged exactly.
//! - [`run`]: one simulation from scenario to report ([`run::simulate`]).
//!
//! **Invariants:** generation never reads the clock (same seed, same events); a retry
//! re-sends the same sequenceIds; every generated event ends accepted, rejected, failed or
//! missing, exactly once.

pub mod agents;
pub mod batcher;
pub mod correlate;
pub mod dist;
pub mod genesys;
pub mod injector;
pub mod latency;
pub mod live;
pub mod merge;
pub mod report;
pub mod rng;
pub mod run;
pub mod scenario;
pub mod schedule;
pub mod sender;
pub mod tally;
pub mod thresholds;
pub mod transport;
pub mod wire;
pub mod workflow;

pub use run::{RunOptions, RunReport, Shard, SimulateError, Target, simulate};
pub use scenario::{Overrides, Scenario, ScenarioError};
