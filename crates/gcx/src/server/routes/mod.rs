//! The `/v1` routes, one file per resource.

pub mod cluster;
pub mod metrics_audit;
pub mod outbox;
pub mod trigger_body;
pub mod triggers;
