//! Events as they go on the wire: the seed's `InteractionEvent` shape (PROTOCOL.md
//! section 4) with UUID ids and RFC 3339 nanosecond timestamps.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use gcx_protocol::AgentState;
use gcx_protocol::events::EVENT_TYPE;
use serde::Serialize;
use uuid::Uuid;

use super::agents::PlannedEvent;
use super::genesys::Mapped;
use super::rng::SimRng;

/// An event on its way: what was planned, its sequenceId, and what we learn when its
/// request is answered.
#[derive(Debug, Clone)]
pub struct SentEvent {
    pub planned: PlannedEvent,
    /// Given once, at generation; a retry re-sends the same one (never a new one).
    pub sequence_id: Uuid,
    /// When the schedule meant to send it: the end of the time slice it fell in. Response
    /// time is measured from here.
    pub intended: Duration,
    /// Response time, set when its request is answered.
    pub latency: Duration,
    /// When its request was answered (from the run start).
    pub answered_at: Duration,
    /// Its Events API events (the `genesys-events` target), mapped at generation.
    pub genesys: Option<Arc<[Mapped]>>,
}

/// The run's ids: agents (random per run unless given) and interactions (derived).
#[derive(Debug, Clone)]
pub struct Identities {
    agents: Arc<[Uuid]>,
    /// A per-run key, so interaction ids differ between runs but need no storage.
    interaction_key: u64,
}

impl Identities {
    pub fn new(agents: Vec<Uuid>, interaction_key: u64) -> Identities {
        Identities {
            agents: agents.into(),
            interaction_key,
        }
    }

    pub fn agent_id(&self, agent: u32) -> Uuid {
        self.agents.get(agent as usize).copied().unwrap_or_default()
    }

    pub fn agent_count(&self) -> usize {
        self.agents.len()
    }

    /// The id of the agent's `n`-th interaction.
    pub fn interaction_id(&self, agent: u32, n: u32) -> Uuid {
        SimRng::new(self.interaction_key ^ u64::from(agent), u64::from(n)).uuid()
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct WireEvent<'a> {
    sequence_id: Uuid,
    timestamp: &'a str,
    interaction_id: Uuid,
    agent_id: Uuid,
    state: AgentState,
    event_type: &'static str,
}

/// Writes the JSON array body of one request.
pub fn encode_batch(
    events: &[SentEvent],
    ids: &Identities,
    start: DateTime<Utc>,
    buf: &mut Vec<u8>,
) {
    buf.clear();
    buf.push(b'[');
    let mut stamp = String::with_capacity(32);
    for (i, e) in events.iter().enumerate() {
        if i > 0 {
            buf.push(b',');
        }
        stamp.clear();
        let at = chrono::Duration::from_std(e.planned.at).unwrap_or_default();
        stamp.push_str(&gcx_protocol::time::format_event(start + at));
        let wire = WireEvent {
            sequence_id: e.sequence_id,
            timestamp: &stamp,
            interaction_id: ids.interaction_id(e.planned.agent, e.planned.interaction),
            agent_id: ids.agent_id(e.planned.agent),
            state: e.planned.state,
            event_type: EVENT_TYPE,
        };
        // Serializing plain fields into a Vec cannot fail.
        let _ = serde_json::to_writer(&mut *buf, &wire);
    }
    buf.push(b']');
}

#[cfg(test)]
mod tests {
    use super::*;
    use gcx_protocol::InteractionEvent;

    #[test]
    fn the_body_is_a_valid_batch_of_the_seed_shape() {
        let mut rng = SimRng::new(1, 1);
        let ids = Identities::new(vec![rng.uuid(), rng.uuid()], 77);
        let events: Vec<SentEvent> = (0..2u32)
            .map(|k| SentEvent {
                planned: PlannedEvent {
                    n: u64::from(k),
                    agent: k,
                    from: None,
                    state: AgentState::Available,
                    invalid: false,
                    at: Duration::from_nanos(1_000_000_123),
                    interaction: 0,
                },
                sequence_id: rng.uuid(),
                intended: Duration::ZERO,
                latency: Duration::ZERO,
                answered_at: Duration::ZERO,
                genesys: None,
            })
            .collect();
        let start = gcx_protocol::time::parse("2026-11-21T10:00:00Z").unwrap();
        let mut buf = Vec::new();
        encode_batch(&events, &ids, start, &mut buf);
        let back: Vec<InteractionEvent> = serde_json::from_slice(&buf).unwrap();
        assert_eq!(back.len(), 2);
        assert_eq!(back[0].timestamp, "2026-11-21T10:00:01.000000123Z");
        assert_eq!(back[1].agent_id, ids.agent_id(1));
        assert_eq!(back[0].event_type, "routing/agent/state");
        assert_eq!(back[0].sequence_id, events[0].sequence_id);
        assert_eq!(back[0].interaction_id, ids.interaction_id(0, 0));
        assert_ne!(ids.interaction_id(0, 0), ids.interaction_id(0, 1));
        let text = String::from_utf8(buf).unwrap();
        assert!(text.contains("\"state\":\"routing/agent/available\""));
        assert!(text.contains(&format!(
            "\"sequenceId\":\"{}\"",
            events[0].sequence_id.hyphenated()
        )));
    }
}
