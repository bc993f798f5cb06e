//! A violation of a protocol rule (PROTOCOL.md section 3.5): where (JSON Pointer), which
//! rule, and a sentence for a person. [`crate::validate`] reports them, and an assist
//! `error` carries them in its `details` ([`crate::assist`]).

use serde::{Deserialize, Serialize};

/// What kind of rule a violation broke.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ViolationCode {
    Required,
    Null,
    Type,
    Enum,
    Format,
    Range,
    Unknown,
    OneOf,
    Size,
}

impl ViolationCode {
    /// The code as written on the wire (`one_of`, `required`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            ViolationCode::Required => "required",
            ViolationCode::Null => "null",
            ViolationCode::Type => "type",
            ViolationCode::Enum => "enum",
            ViolationCode::Format => "format",
            ViolationCode::Range => "range",
            ViolationCode::Unknown => "unknown",
            ViolationCode::OneOf => "one_of",
            ViolationCode::Size => "size",
        }
    }
}

impl std::fmt::Display for ViolationCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One broken rule: where (JSON Pointer), which rule, and a sentence for a person.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Violation {
    pub path: String,
    pub code: ViolationCode,
    pub message: String,
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let path = if self.path.is_empty() {
            "(whole message)"
        } else {
            &self.path
        };
        write!(f, "{path}: {} ({})", self.message, self.code)
    }
}
