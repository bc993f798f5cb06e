//! What is wrong with a scenario: every violation found, each with its place (file, line,
//! column and key, or the flag), so one run of the checks shows them all.

/// One thing wrong with a scenario, and where.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{}{}: {}", origin, location.map(|(l, c)| format!(":{l}:{c}")).unwrap_or_default(), self.what())]
pub struct ScenarioViolation {
    /// The file (or `command line`).
    pub origin: String,
    /// 1-based line and column, when the violation is in a file.
    pub location: Option<(usize, usize)>,
    /// The dotted key (`load.rate`) or flag (`--rate`).
    pub field: String,
    pub message: String,
}

impl ScenarioViolation {
    fn what(&self) -> String {
        if self.field.is_empty() {
            self.message.clone()
        } else {
            format!("`{}`: {}", self.field, self.message)
        }
    }

    pub(crate) fn flag(flag: &str, message: impl Into<String>) -> ScenarioViolation {
        ScenarioViolation {
            origin: "command line".into(),
            location: None,
            field: flag.into(),
            message: message.into(),
        }
    }
}

/// A scenario that cannot be run: every violation found, in the order of the checks (at
/// least one). A file that is not TOML, or has a key of the wrong type or name, stops at
/// that one, since nothing after it can be read reliably.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{}", self.violations.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))]
pub struct ScenarioError {
    pub violations: Vec<ScenarioViolation>,
}

impl From<ScenarioViolation> for ScenarioError {
    fn from(v: ScenarioViolation) -> ScenarioError {
        ScenarioError {
            violations: vec![v],
        }
    }
}

impl ScenarioError {
    /// `Ok(())` when `violations` is empty, else the error holding them.
    pub(crate) fn check(violations: Vec<ScenarioViolation>) -> Result<(), ScenarioError> {
        if violations.is_empty() {
            Ok(())
        } else {
            Err(ScenarioError { violations })
        }
    }
}
