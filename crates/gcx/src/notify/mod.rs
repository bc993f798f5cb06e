//! The Genesys Cloud Notifications API, client side (PROTOCOL.md 9.2): user topics
//! watched over channels and their sockets, kept alive, and what a notification shows
//! matched against what an injection should have caused.
//!
//! # Layout
//! - [`api`]: the REST half: create a channel, subscribe its topics (`PUT` replaces,
//!   `POST` adds), every rejected topic kept with its reason and missing permissions.
//! - [`plan`]: topics spread over channels (1,000 per channel, 20 channels at most).
//! - [`message`]: one socket text frame read into what it says (pure).
//! - [`keepalive`]: the watchdog's rule: when a quiet socket pings and when it is dead
//!   (pure, instants passed in).
//! - [`socket`]: one channel's life: its socket, keep-alive, the switch on
//!   `socket_closing`, reconnects with back-off, a new channel when the server drops the
//!   subscriptions or revokes the token, the periodic re-subscription.
//! - [`counters`]: what the channels count ([`WatchStats`]) and the gaps they had.
//! - [`watcher`]: [`Watcher`], every channel as one stream of [`Observed`].
//! - [`keys`]: an [`Observed`] read into the [`ObsKey`]s it shows ([`KeyReader`]).
//! - [`observe`]: [`Observer`], expectations matched to observations with an HDR
//!   histogram of the latency (pure, times passed in), and its [`ObservationReport`].
//! - [`error`]: [`NotifyError`] and [`ApiError`]; neither ever holds a token or secret.

pub mod api;
pub mod counters;
pub mod error;
pub mod keepalive;
pub mod keys;
pub mod message;
pub mod observe;
pub mod plan;
pub mod socket;
pub mod watcher;

pub use api::{NotificationsApi, RejectedTopic, Subscription};
pub use counters::{ChannelFailure, Gap, WatchStats};
pub use error::{ApiError, NotifyError};
pub use keys::{KeyReader, ObsKey};
pub use observe::{ObservationReport, Observer};
pub use watcher::{Observed, WatchOptions, Watcher};
