//! `gcx simulate --target genesys-events`: the simulated agents driven through the Genesys
//! Cloud Events API (PROTOCOL.md 9.1) instead of the interactions events endpoint.
//!
//! - [`connect`]: the endpoints, and one authorized read before the first event.
//! - [`map`]: desktop transitions -> routing status, presence and conversation events,
//!   with the notification each should cause.
//! - [`send`]: one batch's events to the three endpoints, at most 100 per request, with the
//!   API's retry rules (only `retryable` errors re-sent; a 403 stops the run).
//! - [`tally`]: the events' own accounting, and a transition's outcome from its events'.

pub mod connect;
pub mod map;
pub mod send;
pub mod tally;

pub use map::{Change, Endpoint, GenesysEvent, MapSettings, Mapped, Mapper};
pub use send::{Fate, GenesysAnswer, GenesysEndpoints};
pub use tally::{GenesysTally, KindCount};
