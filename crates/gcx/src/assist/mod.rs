//! The Agent Assist trigger pipeline: `stream` (one WebSocket), `dispatch` (slots,
//! retries, resume) and `intake` (files, stdin, HTTP bodies -> validated triggers).
//!
//! - [`stream`]: the supervised WebSocket and its events.
//! - [`frame`]: one text frame from the engine read into what it says (pure).
//! - [`dispatch`]: the dispatcher: admission, routing of engine events, each trigger's
//!   life (slots, sends, retries, store writes) and its decisions, resume.
//! - [`intake`]: files, stdin and HTTP bodies -> validated triggers, with line numbers.
//! - [`batch`]: a known set of triggers through a dispatcher, every outcome collected.
//! - [`slots`]: the resizable FIFO semaphore behind the concurrency limit.
//! - [`record`]: the store batches (state, CRM outbox row, audit event) of each step.
//! - [`metrics`]: metric names.

pub mod batch;
pub mod dispatch;
pub mod frame;
pub mod intake;
pub mod metrics;
pub mod record;
pub mod slots;
pub mod stream;
