//! The effective configuration as rows (key, value, source) for `gcx config show`.
//! Secrets come out as `<redacted>`: the rows are built from the serialized [`Config`],
//! and [`super::Secret`] serializes that way.

use serde::Serialize;
use serde_json::Value;

use super::{Config, LoadedConfig, Source};

/// One effective setting.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Entry {
    /// Dotted key, as in the TOML file.
    pub key: String,
    /// The value (`null` when unset; secrets as `"<redacted>"`).
    pub value: Value,
    /// The layer that set it.
    pub source: Source,
}

impl Entry {
    /// The value as one line of text for a table.
    pub fn value_text(&self) -> String {
        text(&self.value)
    }
}

fn text(v: &Value) -> String {
    match v {
        Value::Null => "(not set)".into(),
        Value::String(s) => s.clone(),
        Value::Array(items) if items.is_empty() => "(none)".into(),
        Value::Array(items) => items.iter().map(text).collect::<Vec<_>>().join(", "),
        other => other.to_string(),
    }
}

/// Every key of the effective configuration, in file order, with its source.
pub fn entries(loaded: &LoadedConfig) -> Vec<Entry> {
    let mut out = Vec::new();
    for (section, fields) in sections(&loaded.config) {
        let Value::Object(fields) = fields else {
            continue;
        };
        for (field, value) in fields {
            let key = format!("{section}.{field}");
            let source = loaded.source(&key).clone();
            out.push(Entry { key, value, source });
        }
    }
    out
}

fn sections(config: &Config) -> Vec<(String, Value)> {
    // Serializing plain data (strings, numbers, durations as text) cannot fail; an empty
    // list is the harmless answer if it ever did.
    match serde_json::to_value(config) {
        Ok(Value::Object(m)) => m.into_iter().collect(),
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::config::{Overrides, load_from};

    #[test]
    fn every_key_with_secrets_redacted() {
        let env = BTreeMap::from([
            ("GCX_CLIENT_SECRET".to_owned(), "hunter2".to_owned()),
            ("GCX_API_KEYS".to_owned(), "k1,k2".to_owned()),
        ]);
        let loaded = load_from(&Overrides::default(), &env, None).unwrap();
        let rows = entries(&loaded);
        let secret = rows
            .iter()
            .find(|r| r.key == "genesys.client_secret")
            .unwrap();
        assert_eq!(secret.value_text(), "<redacted>");
        assert_eq!(secret.source, Source::Env("GCX_CLIENT_SECRET".into()));
        let keys = rows.iter().find(|r| r.key == "serve.api_keys").unwrap();
        assert_eq!(keys.value_text(), "<redacted>, <redacted>");
        let all = serde_json::to_string(&rows).unwrap();
        assert!(!all.contains("hunter2") && !all.contains("k1"), "{all}");
        // Every key of the schema is shown.
        for spec in crate::config::keys::KEYS {
            assert!(rows.iter().any(|r| r.key == spec.key), "{}", spec.key);
        }
        let region = rows.iter().find(|r| r.key == "genesys.region").unwrap();
        assert_eq!(region.value_text(), "(not set)");
        assert_eq!(region.source, Source::Default);
    }
}
