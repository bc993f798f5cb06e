//! A `--config` file's text through gcx's configuration loader (`config::load_from`:
//! TOML, unknown keys, types, each layer's checks, the merged checks), then the rows of
//! `gcx config show` and the endpoints.
//! Asserts: a refusal has a message; secrets show as `<redacted>` in the rows.
#![no_main]

use std::collections::BTreeMap;

use gcx::config::{Overrides, endpoints, load_from, show};
use gcx_fuzz::scratch_file;
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

const SECRET_KEYS: [&str; 5] = [
    "genesys.client_secret",
    "crm.secret",
    "qa.secret",
    "store.database_url",
    "serve.api_keys",
];

fn redacted(value: &Value) -> bool {
    match value {
        Value::Null => true,
        Value::String(s) => s == "<redacted>",
        Value::Array(items) => items.iter().all(redacted),
        _ => false,
    }
}

fuzz_target!(|data: &[u8]| {
    let path = scratch_file("gcx.toml", data);
    let overrides = Overrides {
        config_path: Some(path),
        ..Overrides::default()
    };
    match load_from(&overrides, &BTreeMap::new(), None) {
        Ok(loaded) => {
            for entry in show::entries(&loaded) {
                let _ = entry.value_text();
                if SECRET_KEYS.contains(&entry.key.as_str()) {
                    assert!(
                        redacted(&entry.value),
                        "{} shows {:?}",
                        entry.key,
                        entry.value
                    );
                }
            }
            let _ = endpoints(&loaded.config.genesys);
        }
        Err(e) => assert!(!e.to_string().is_empty()),
    }
});
