//! The agent desktop state machine (PROTOCOL.md section 4): five states and the
//! transitions allowed between them, per agent.

use serde::{Deserialize, Serialize};

/// A desktop state; on the wire as its path (`routing/agent/available`, ...).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum AgentState {
    #[serde(rename = "routing/agent/available")]
    Available,
    #[serde(rename = "routing/agent/busy")]
    Busy,
    #[serde(rename = "interaction/media/connected")]
    Connected,
    #[serde(rename = "interaction/media/disconnected")]
    Disconnected,
    #[serde(rename = "routing/agent/wrapping")]
    Wrapping,
}

impl AgentState {
    /// Every state, in workflow order.
    pub const ALL: [AgentState; 5] = [
        AgentState::Available,
        AgentState::Busy,
        AgentState::Connected,
        AgentState::Disconnected,
        AgentState::Wrapping,
    ];

    /// The wire string.
    pub fn as_wire(self) -> &'static str {
        match self {
            AgentState::Available => "routing/agent/available",
            AgentState::Busy => "routing/agent/busy",
            AgentState::Connected => "interaction/media/connected",
            AgentState::Disconnected => "interaction/media/disconnected",
            AgentState::Wrapping => "routing/agent/wrapping",
        }
    }

    /// The short name used in scenario files and reports (`available`, `busy`, ...).
    pub fn short_name(self) -> &'static str {
        match self {
            AgentState::Available => "available",
            AgentState::Busy => "busy",
            AgentState::Connected => "connected",
            AgentState::Disconnected => "disconnected",
            AgentState::Wrapping => "wrapping",
        }
    }

    /// Parses the wire string.
    pub fn from_wire(s: &str) -> Option<AgentState> {
        Self::ALL.into_iter().find(|st| st.as_wire() == s)
    }

    /// Parses a short name or a wire string.
    pub fn from_name(s: &str) -> Option<AgentState> {
        Self::ALL
            .into_iter()
            .find(|st| st.short_name() == s || st.as_wire() == s)
    }

    /// The states this one may move to.
    pub fn next_states(self) -> &'static [AgentState] {
        match self {
            AgentState::Available => &[AgentState::Busy],
            AgentState::Busy => &[AgentState::Connected, AgentState::Available],
            AgentState::Connected => &[AgentState::Disconnected],
            AgentState::Disconnected => &[AgentState::Wrapping],
            AgentState::Wrapping => &[AgentState::Available],
        }
    }

    /// Whether `self -> to` is an allowed transition.
    pub fn can_move_to(self, to: AgentState) -> bool {
        self.next_states().contains(&to)
    }
}

impl std::fmt::Display for AgentState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_wire())
    }
}

/// Checks one agent's next event: `None` (first event) allows any state.
pub fn is_allowed(previous: Option<AgentState>, next: AgentState) -> bool {
    previous.is_none_or(|p| p.can_move_to(next))
}

#[cfg(test)]
mod tests {
    use super::AgentState::*;
    use super::*;

    #[test]
    fn transition_table() {
        // (from, to, allowed): every pair of the 5x5 table.
        let allowed = [
            (Available, Busy),
            (Busy, Connected),
            (Busy, Available),
            (Connected, Disconnected),
            (Disconnected, Wrapping),
            (Wrapping, Available),
        ];
        for from in AgentState::ALL {
            for to in AgentState::ALL {
                assert_eq!(
                    from.can_move_to(to),
                    allowed.contains(&(from, to)),
                    "{from} -> {to}"
                );
            }
        }
    }

    #[test]
    fn first_event_may_be_any_state() {
        assert!(AgentState::ALL.iter().all(|s| is_allowed(None, *s)));
    }

    #[test]
    fn wire_names_round_trip() {
        for s in AgentState::ALL {
            assert_eq!(AgentState::from_wire(s.as_wire()), Some(s));
            assert_eq!(AgentState::from_name(s.short_name()), Some(s));
            let json = serde_json::to_string(&s).unwrap();
            assert_eq!(json, format!("\"{}\"", s.as_wire()));
        }
    }
}
