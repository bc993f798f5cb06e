//! # gcx-protocol: the wire contract, as types
//!
//! Everything gcx and `gcx sandbox` say to each other is defined here, once, from
//! `shared/spec/PROTOCOL.md`. The crate is pure: no I/O, no async runtime, so both sides
//! (and property tests) can use it freely.
//!
//! # Layout
//! - [`time`]: the timestamp rules (what is accepted, how each kind is written).
//! - [`oauth`]: the client-credentials token response and error body (section 2).
//! - [`assist`]: the assist stream's `WsMessage` envelope and every payload (section 3).
//! - [`catalogue`]: the action catalogue, data loaded from TOML (section 3.5).
//! - [`validate`]: trigger validation returning *every* [`violation`] (section 3.5).
//! - [`violation`]: one broken rule: JSON Pointer path, code, message.
//! - [`events`]: `InteractionEvent`, batch validation, responses and query-back (section 4).
//! - [`genesys_events`]: the Genesys Cloud Events API bodies, answer and validators
//!   (section 9.1).
//! - [`desktop`]: the agent desktop state machine and its transition table (section 4).
//! - [`rest`]: the Genesys Cloud error body and error codes (section 4.2).
//! - [`webhook`]: the CRM webhook payload and the QA export (sections 5 and 6).
//! - [`region`]: region names and domains (section 1).
//!
//! **Architecture invariant:** nothing here opens a socket, reads a file or reads a clock
//! except `chrono::Utc::now()` in constructors that say so.

pub mod assist;
pub mod catalogue;
pub mod desktop;
pub mod events;
pub mod genesys_events;
pub mod genesys_notifications;
pub mod oauth;
pub mod region;
pub mod rest;
pub mod time;
pub mod validate;
pub mod violation;
pub mod webhook;

pub use assist::{ActionTriggerPayload, MessageType, WsError, WsMessage};
pub use catalogue::Catalogue;
pub use desktop::AgentState;
pub use events::InteractionEvent;
pub use violation::{Violation, ViolationCode};

/// The protocol version this crate speaks (`connected.payload.protocolVersion`).
pub const PROTOCOL_VERSION: u32 = 1;
