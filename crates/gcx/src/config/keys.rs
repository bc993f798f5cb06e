//! The configuration keys as a table: each dotted key, its value kind and the environment
//! variables that set it. The table is the schema every layer is checked against (a file's
//! unknown keys, an environment value's type) and the list `gcx config show` walks.
//!
//! Environment synonyms: when several variables name one key, the first one set (and not
//! empty) wins, in the order listed here: gcx's own `GCX_*` names first (they are specific
//! to this tool), then the Genesys Cloud CLI's and Terraform provider's `GENESYSCLOUD_*`,
//! then the seed tutorials' `GENESYS_CLOUD_*`, `GENESYS_*` and other plain names. Every key
//! also has a systematic name, `GCX_` + the dotted key in upper case with `_` for `.`
//! (`store.group_commit_max_rows` -> `GCX_STORE_GROUP_COMMIT_MAX_ROWS`).

/// What a key holds, so a string from the environment or a flag becomes the right TOML
/// value before the typed structs see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Free text (URLs, names, paths).
    Text,
    /// A credential: shown as `<redacted>`.
    Secret,
    /// A whole number.
    Integer,
    /// `true`/`false` (also `1`/`0`, `yes`/`no`, `on`/`off` from the environment).
    Bool,
    /// Milliseconds as an integer, or a humantime string (`250ms`, `5s`, `2h`).
    Duration,
    /// Comma-separated durations.
    DurationList,
    /// Comma-separated credentials.
    SecretList,
}

/// One configuration key.
#[derive(Debug, Clone, Copy)]
pub struct KeySpec {
    /// `section.field`, as in the TOML file.
    pub key: &'static str,
    pub kind: Kind,
    /// Environment variables that set it, highest precedence first (the systematic
    /// `GCX_*` name is added by [`env_vars`]).
    pub env: &'static [&'static str],
}

const fn k(key: &'static str, kind: Kind, env: &'static [&'static str]) -> KeySpec {
    KeySpec { key, kind, env }
}

/// Every key of [`super::Config`], in file order. A test checks it against the structs.
pub const KEYS: &[KeySpec] = &[
    k(
        "genesys.region",
        Kind::Text,
        &["GCX_REGION", "GENESYSCLOUD_REGION", "GENESYS_CLOUD_REGION"],
    ),
    k("genesys.base_url", Kind::Text, &["GCX_BASE_URL"]),
    k("genesys.api_base", Kind::Text, &["GCX_API_BASE"]),
    k("genesys.login_base", Kind::Text, &["GCX_LOGIN_BASE"]),
    k(
        "genesys.assist_stream_url",
        Kind::Text,
        &["GCX_ASSIST_STREAM_URL"],
    ),
    k(
        "genesys.client_id",
        Kind::Text,
        &[
            "GCX_CLIENT_ID",
            "GENESYSCLOUD_OAUTHCLIENT_ID",
            "GENESYS_CLOUD_CLIENT_ID",
            "GENESYS_CLIENT_ID",
        ],
    ),
    k(
        "genesys.client_secret",
        Kind::Secret,
        &[
            "GCX_CLIENT_SECRET",
            "GENESYSCLOUD_OAUTHCLIENT_SECRET",
            "GENESYS_CLOUD_CLIENT_SECRET",
            "GENESYS_CLIENT_SECRET",
        ],
    ),
    k(
        "genesys.allow_insecure",
        Kind::Bool,
        &["GCX_ALLOW_INSECURE"],
    ),
    k("crm.url", Kind::Text, &["GCX_CRM_URL", "CRM_WEBHOOK_URL"]),
    k("crm.secret", Kind::Secret, &["GCX_CRM_WEBHOOK_SECRET"]),
    k(
        "qa.url",
        Kind::Text,
        &["GCX_QA_URL", "QA_PLATFORM_ENDPOINT"],
    ),
    k("qa.secret", Kind::Secret, &["GCX_QA_WEBHOOK_SECRET"]),
    k("store.data_dir", Kind::Text, &["GCX_DATA_DIR"]),
    k("store.database_url", Kind::Secret, &["GCX_DATABASE_URL"]),
    k("store.group_commit_max_rows", Kind::Integer, &[]),
    k("store.group_commit_interval", Kind::Duration, &[]),
    k("store.audit_store_parameters", Kind::Bool, &[]),
    k("store.audit_checkpoint_every", Kind::Integer, &[]),
    k("store.keep_finished", Kind::Duration, &[]),
    k("dispatch.concurrency", Kind::Integer, &["GCX_CONCURRENCY"]),
    k("dispatch.slot_timeout", Kind::Duration, &[]),
    k("dispatch.catalogue_path", Kind::Text, &["GCX_CATALOGUE"]),
    k("delivery.schedule", Kind::DurationList, &[]),
    k("delivery.max_parallel_per_endpoint", Kind::Integer, &[]),
    k("delivery.request_timeout", Kind::Duration, &[]),
    k("delivery.breaker_failures", Kind::Integer, &[]),
    k("delivery.breaker_cooldown", Kind::Duration, &[]),
    k("serve.bind", Kind::Text, &["GCX_BIND"]),
    k("serve.api_keys", Kind::SecretList, &["GCX_API_KEYS"]),
    k("serve.max_batch", Kind::Integer, &[]),
    k("serve.max_body_bytes", Kind::Integer, &[]),
    k("serve.request_timeout", Kind::Duration, &[]),
    k("serve.rate_limit_per_key", Kind::Integer, &[]),
    k("serve.max_connections", Kind::Integer, &[]),
    k("serve.header_read_timeout", Kind::Duration, &[]),
    k("serve.body_read_timeout", Kind::Duration, &[]),
    k("serve.auth_failures_per_minute", Kind::Integer, &[]),
    k("serve.metrics_require_key", Kind::Bool, &[]),
    k("serve.drain_timeout", Kind::Duration, &[]),
    k(
        "simulate.agent_id",
        Kind::Text,
        &["GCX_AGENT_ID", "TEST_AGENT_ID"],
    ),
    k(
        "simulate.interaction_id",
        Kind::Text,
        &["GCX_INTERACTION_ID", "TEST_INTERACTION_ID"],
    ),
    k("log.format", Kind::Text, &["GCX_LOG_FORMAT"]),
    k("log.level", Kind::Text, &["GCX_LOG_LEVEL", "RUST_LOG"]),
];

/// The key called `key`.
pub fn spec(key: &str) -> Option<&'static KeySpec> {
    KEYS.iter().find(|s| s.key == key)
}

/// The systematic variable of a key: `GCX_` + `SECTION_FIELD`.
pub fn systematic_var(key: &str) -> String {
    format!("GCX_{}", key.replace('.', "_").to_ascii_uppercase())
}

/// Every variable that sets `spec`, highest precedence first: the listed names, with the
/// systematic one right after the other `GCX_*` names.
pub fn env_vars(spec: &KeySpec) -> Vec<String> {
    let systematic = systematic_var(spec.key);
    let mut vars: Vec<String> = Vec::with_capacity(spec.env.len() + 1);
    let own = spec.env.iter().take_while(|v| v.starts_with("GCX_"));
    vars.extend(own.map(|v| (*v).to_owned()));
    if !vars.contains(&systematic) {
        vars.push(systematic);
    }
    vars.extend(
        spec.env
            .iter()
            .skip_while(|v| v.starts_with("GCX_"))
            .map(|v| (*v).to_owned()),
    );
    vars
}

/// The sections (`genesys`, `crm`, ...), in file order.
pub fn sections() -> Vec<&'static str> {
    let mut out: Vec<&'static str> = Vec::new();
    for s in KEYS {
        let section = s.key.split('.').next().unwrap_or(s.key);
        if !out.contains(&section) {
            out.push(section);
        }
    }
    out
}

/// The field names of `section`, for "accepted keys" messages.
pub fn fields_of(section: &str) -> Vec<&'static str> {
    KEYS.iter()
        .filter_map(|s| s.key.strip_prefix(section)?.strip_prefix('.'))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn systematic_names() {
        assert_eq!(
            systematic_var("store.group_commit_max_rows"),
            "GCX_STORE_GROUP_COMMIT_MAX_ROWS"
        );
        let region = spec("genesys.region").unwrap();
        assert_eq!(
            env_vars(region),
            [
                "GCX_REGION",
                "GCX_GENESYS_REGION",
                "GENESYSCLOUD_REGION",
                "GENESYS_CLOUD_REGION"
            ]
        );
        assert_eq!(env_vars(spec("log.format").unwrap()), ["GCX_LOG_FORMAT"]);
    }

    #[test]
    fn every_variable_names_one_key() {
        let mut seen = std::collections::BTreeMap::new();
        for s in KEYS {
            for v in env_vars(s) {
                if let Some(other) = seen.insert(v.clone(), s.key) {
                    panic!("{v} sets both {other} and {}", s.key);
                }
            }
        }
    }
}
