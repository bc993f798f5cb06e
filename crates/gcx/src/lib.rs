//! # gcx: Genesys Cloud integration toolkit
//!
//! One library behind one binary. Two jobs: the Agent Assist trigger service
//! (`gcx trigger`, `gcx serve`) and the agent desktop event simulator (`gcx simulate`),
//! plus `gcx sandbox` (the `gcx-sandbox` crate) that both run against.
//!
//! # Layout
//! - [`config`]: layered configuration (file, `gc` CLI profile, environment, flags) and
//!   where each value came from.
//! - [`bounded_read`]: settings files read with a size cap.
//! - [`http_client`]: the one reqwest client builder (rustls, ring).
//! - [`retry`]: the one back-off policy every outbound client uses.
//! - [`auth`]: `TokenProvider`, OAuth client credentials with single-flight refresh.
//! - [`assist`]: the assist stream (one socket), the dispatcher (slots, retries, resume)
//!   and intake (files, stdin, HTTP bodies -> validated triggers).
//! - [`pipeline`]: the dispatch side built from a `Config` (login, store, delivery
//!   worker, dispatcher), for `gcx trigger`, `gcx serve`, `gcx demo` and `gcx bench`.
//! - [`notify`]: the Genesys Notifications API: channels, their sockets kept alive, many
//!   channels as one stream, and notifications matched to the events that caused them.
//! - [`desk`]: the agent desktop simulator: scenario, schedule, agents, injector,
//!   correlation, latency and reports.
//! - [`delivery`]: the outbox worker: Standard Webhooks signing, retries, per-key order,
//!   dead letters, circuit breaker. Used for the CRM and the QA platform alike.
//! - [`audit_chain`]: the audit log's records, hash chain, signing key and checkpoints
//!   (what the store writes with).
//! - [`store`]: durable state (SQLite or PostgreSQL) with group commit.
//! - [`audit`]: the audit log's readers: verify, report, export (over the store).
//! - [`instance`]: this process's name (`hostname:pid`) in audit records and leases.
//! - [`private_files`]: the data folder (0700) and its store and key files (0600).
//! - [`server`]: `gcx serve`, the HTTP API.
//! - [`demo`]: `gcx demo`, the whole product against an embedded sandbox, with checks.
//! - [`bench`]: `gcx bench`, every benchmark behind one table.
//! - [`cli`]: one file per subcommand; `main.rs` only calls [`cli::main`].
//!
//! See `ARCHITECTURE.md` at the repository root for the data flow and invariants.

pub mod assist;
pub mod audit;
pub mod audit_chain;
pub mod auth;
pub mod bench;
pub mod bounded_read;
pub mod cli;
pub mod cluster;
pub mod config;
pub mod delivery;
pub mod demo;
pub mod desk;
pub mod http_client;
pub mod instance;
pub mod notify;
pub mod pipeline;
pub mod private_files;
pub mod retry;
pub mod server;
pub mod store;
