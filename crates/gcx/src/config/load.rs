//! Building the effective configuration from its layers, lowest first: built-in defaults,
//! the `--config` file, the `gc` CLI profile, environment variables, then flags. Each
//! layer is checked on its own, so an error names the file, the variable or the flag it
//! came from; the merged result records the source of every key.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::Serialize;
use thiserror::Error;
use toml::{Table, Value};

use super::Config;
use super::keys::{self, KEYS, KeySpec, Kind};
use super::profile;

/// Where a key's effective value came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", content = "name", rename_all = "lowercase")]
pub enum Source {
    Default,
    File(PathBuf),
    /// A `gc` CLI profile, by name.
    Profile(String),
    /// An environment variable, by name.
    Env(String),
    /// A command-line flag, as typed (`--base-url`).
    Flag(String),
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Default => f.write_str("default"),
            Source::File(p) => write!(f, "file {}", p.display()),
            Source::Profile(n) => write!(f, "gc profile {n}"),
            Source::Env(v) => write!(f, "env {v}"),
            Source::Flag(n) => write!(f, "flag {n}"),
        }
    }
}

/// Why the configuration could not be built. Each names the input and the place in it.
#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("cannot read config file {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: crate::bounded_read::BoundedReadError,
    },
    #[error("config file {}: {message}", path.display())]
    File { path: PathBuf, message: String },
    #[error("gc CLI profiles file {}: {message}", path.display())]
    Profile { path: PathBuf, message: String },
    #[error("environment variable {var}: {message}")]
    Env { var: String, message: String },
    #[error("flag {flag}: {message}")]
    Flag { flag: String, message: String },
    /// A merged value that breaks a rule no single layer can check alone.
    #[error("setting {key} (from {origin}): {message}")]
    Invalid {
        key: String,
        /// The layer that set the value.
        origin: Source,
        message: String,
    },
    /// Several of the above at once, each naming its key and source.
    #[error("{} settings are invalid:\n  {}", .0.len(), several(.0))]
    Several(Vec<ConfigError>),
    /// The endpoints cannot be worked out from the `genesys` settings.
    #[error("{0}")]
    Endpoint(String),
}

fn several(problems: &[ConfigError]) -> String {
    problems
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n  ")
}

/// The effective configuration and where each value came from.
#[derive(Debug, Clone)]
pub struct LoadedConfig {
    pub config: Config,
    /// Every key of [`keys::KEYS`] with the layer that set it (`Default` when none did).
    pub sources: BTreeMap<String, Source>,
    /// Things worth a log line once logging is up (an ignored synonym, ...).
    pub warnings: Vec<String>,
    /// The `--config` file, when one was read.
    pub config_file: Option<PathBuf>,
    /// The `gc` CLI profile applied, when one was.
    pub profile: Option<profile::Profile>,
}

impl LoadedConfig {
    /// The source of `key` (`Default` for a key no layer set).
    pub fn source(&self, key: &str) -> &Source {
        self.sources.get(key).unwrap_or(&Source::Default)
    }
}

/// The values of the options every command takes, as given on the command line (`None`:
/// not given). `config_path` and `profile` choose layers; the rest are the top layer.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    /// `--config`: a TOML configuration file.
    pub config_path: Option<PathBuf>,
    /// `--profile`: a `gc` CLI profile's name.
    pub profile: Option<String>,
    /// `--base-url`.
    pub base_url: Option<String>,
    /// `--region`.
    pub region: Option<String>,
    /// `--data-dir`.
    pub data_dir: Option<PathBuf>,
    /// `--database-url`.
    pub database_url: Option<String>,
    /// `--log-format`.
    pub log_format: Option<String>,
    /// `--log-level`.
    pub log_level: Option<String>,
}

/// Loads the configuration from the process environment and the user's home folder.
pub fn load(overrides: &Overrides) -> Result<LoadedConfig, ConfigError> {
    // Variables that are not UTF-8 cannot name a gcx setting: skip them.
    let env: BTreeMap<String, String> = std::env::vars_os()
        .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
        .collect();
    let home = env
        .get("HOME")
        .filter(|h| !h.is_empty())
        .map(PathBuf::from)
        .or_else(dirs::home_dir);
    load_from(overrides, &env, home.as_deref())
}

/// Loads the configuration from an explicit environment and home folder (tests pass
/// their own; nothing here reads the process environment).
pub fn load_from(
    overrides: &Overrides,
    env: &BTreeMap<String, String>,
    home: Option<&Path>,
) -> Result<LoadedConfig, ConfigError> {
    let mut layers = Layers::default();

    // --config (or GCX_CONFIG when the caller's environment has it and clap did not see it).
    let config_file = overrides
        .config_path
        .clone()
        .or_else(|| non_empty(env, "GCX_CONFIG").map(PathBuf::from));
    if let Some(path) = &config_file {
        layers.apply_file(path)?;
    }

    // The gc CLI profile.
    let profile_name = overrides
        .profile
        .clone()
        .or_else(|| non_empty(env, "GCX_PROFILE").map(str::to_owned));
    let home = home
        .map(Path::to_owned)
        .or_else(|| non_empty(env, "HOME").map(PathBuf::from));
    let profile = match (&home, &profile_name) {
        (Some(home), name) => profile::read(&profile::profiles_path(home), name.as_deref())?,
        (None, Some(name)) => {
            return Err(ConfigError::Profile {
                path: PathBuf::from("~/.gc/config.toml"),
                message: format!(
                    "profile {name:?} was asked for, but there is no home folder (set HOME)"
                ),
            });
        }
        (None, None) => None,
    };
    if let Some(p) = &profile {
        layers.apply_profile(p);
    }

    layers.apply_env(env)?;
    layers.apply_flags(overrides)?;

    let config: Config =
        Value::Table(layers.table.clone())
            .try_into()
            .map_err(|e: toml::de::Error| ConfigError::Invalid {
                key: "(merged)".into(),
                origin: Source::Default,
                message: e.to_string().trim().to_owned(),
            })?;
    let mut sources: BTreeMap<String, Source> = KEYS
        .iter()
        .map(|s| (s.key.to_owned(), Source::Default))
        .collect();
    sources.extend(layers.sources);
    let loaded = LoadedConfig {
        config,
        sources,
        warnings: layers.warnings,
        config_file,
        profile,
    };
    check_merged(&loaded)?;
    Ok(loaded)
}

fn non_empty<'e>(env: &'e BTreeMap<String, String>, var: &str) -> Option<&'e str> {
    env.get(var)
        .map(String::as_str)
        .filter(|v| !v.trim().is_empty())
}

/// Rules on values that the types alone do not hold; every broken one is reported.
fn check_merged(loaded: &LoadedConfig) -> Result<(), ConfigError> {
    let invalid = |key: &str, message: String| ConfigError::Invalid {
        key: key.to_owned(),
        origin: loaded.source(key).clone(),
        message,
    };
    let mut problems = Vec::new();
    let log = &loaded.config.log;
    if !["human", "json"].contains(&log.format.as_str()) {
        problems.push(invalid(
            "log.format",
            format!(
                "{:?} is not a log format; expected human or json",
                log.format
            ),
        ));
    }
    if let Err(e) = tracing_subscriber::EnvFilter::try_new(&log.level) {
        problems.push(invalid(
            "log.level",
            format!(
                "{:?} is not a log filter ({e}); expected e.g. info, debug, gcx=debug,warn",
                log.level
            ),
        ));
    }
    if let Some(why) = super::keep_finished_too_short(loaded.config.store.keep_finished) {
        problems.push(invalid(
            "store.keep_finished",
            format!("{why} (or 0, keep forever)"),
        ));
    }
    if loaded.config.dispatch.concurrency == Some(0) {
        problems.push(invalid(
            "dispatch.concurrency",
            "0 would never send anything; expected 1 or more (or leave it unset for the engine's limit)".into(),
        ));
    }
    for (key, why) in super::limits::zero_limits(&loaded.config) {
        problems.push(invalid(key, why));
    }
    match problems.len() {
        0 => Ok(()),
        1 => Err(problems.remove(0)),
        _ => Err(ConfigError::Several(problems)),
    }
}

/// The merged TOML table and the source of each key set so far.
#[derive(Default)]
struct Layers {
    table: Table,
    sources: BTreeMap<String, Source>,
    warnings: Vec<String>,
}

impl Layers {
    fn set(&mut self, key: &str, value: Value, source: Source) {
        let (section, field) = key.split_once('.').unwrap_or(("", key));
        let entry = self
            .table
            .entry(section.to_owned())
            .or_insert_with(|| Value::Table(Table::new()));
        if let Value::Table(t) = entry {
            t.insert(field.to_owned(), value);
        }
        self.sources.insert(key.to_owned(), source);
    }

    fn apply_file(&mut self, path: &Path) -> Result<(), ConfigError> {
        let text =
            crate::bounded_read::read_to_string(path, crate::bounded_read::MAX_SETTINGS_FILE)
                .map_err(|source| ConfigError::Read {
                    path: path.to_owned(),
                    source,
                })?;
        let file_error = |message: String| ConfigError::File {
            path: path.to_owned(),
            message,
        };
        let table: Table = text.parse().map_err(|e: toml::de::Error| {
            file_error(format!("not valid TOML: {}", e.to_string().trim()))
        })?;
        let problems = unknown_keys(&table);
        if !problems.is_empty() {
            return Err(file_error(problems.join("; ")));
        }
        // Types, with the line and column toml reports.
        toml::from_str::<Config>(&text).map_err(|e| file_error(e.to_string().trim().to_owned()))?;
        for (section, fields) in &table {
            if let Value::Table(fields) = fields {
                for (field, value) in fields {
                    self.set(
                        &format!("{section}.{field}"),
                        value.clone(),
                        Source::File(path.to_owned()),
                    );
                }
            }
        }
        Ok(())
    }

    fn apply_profile(&mut self, p: &profile::Profile) {
        let source = Source::Profile(p.name.clone());
        let secret = p.client_secret.as_ref().map(|s| s.expose().to_owned());
        for (key, value) in [
            ("genesys.region", &p.environment),
            ("genesys.client_id", &p.client_id),
            ("genesys.client_secret", &secret),
        ] {
            if let Some(v) = value {
                self.set(key, Value::String(v.clone()), source.clone());
            }
        }
    }

    fn apply_env(&mut self, env: &BTreeMap<String, String>) -> Result<(), ConfigError> {
        for spec in KEYS {
            let vars = keys::env_vars(spec);
            let mut set: Vec<(&str, &str)> = vars
                .iter()
                .filter_map(|v| Some((v.as_str(), non_empty(env, v)?)))
                .collect();
            if set.is_empty() {
                continue;
            }
            let (var, raw) = set.remove(0);
            for (ignored, other) in set {
                if other.trim() != raw.trim() {
                    self.warnings.push(format!(
                        "{ignored} is ignored for {}: {var} is also set and takes precedence",
                        spec.key
                    ));
                }
            }
            let value = convert(spec, raw).map_err(|message| ConfigError::Env {
                var: var.to_owned(),
                message,
            })?;
            check_alone(spec.key, &value).map_err(|message| ConfigError::Env {
                var: var.to_owned(),
                message,
            })?;
            self.set(spec.key, value, Source::Env(var.to_owned()));
        }
        Ok(())
    }

    fn apply_flags(&mut self, overrides: &Overrides) -> Result<(), ConfigError> {
        let path_text = |p: &Option<PathBuf>| p.as_ref().map(|p| p.to_string_lossy().into_owned());
        let flags = [
            ("--region", "genesys.region", overrides.region.clone()),
            ("--base-url", "genesys.base_url", overrides.base_url.clone()),
            (
                "--data-dir",
                "store.data_dir",
                path_text(&overrides.data_dir),
            ),
            (
                "--database-url",
                "store.database_url",
                overrides.database_url.clone(),
            ),
            ("--log-format", "log.format", overrides.log_format.clone()),
            ("--log-level", "log.level", overrides.log_level.clone()),
        ];
        for (flag, key, raw) in flags {
            let Some(raw) = raw else { continue };
            let Some(spec) = keys::spec(key) else {
                continue;
            };
            let flag_error = |message: String| ConfigError::Flag {
                flag: flag.to_owned(),
                message,
            };
            let value = convert(spec, &raw).map_err(flag_error)?;
            check_alone(key, &value).map_err(flag_error)?;
            self.set(key, value, Source::Flag(flag.to_owned()));
        }
        Ok(())
    }
}

/// Every key of a config file that the schema does not name, as messages.
fn unknown_keys(table: &Table) -> Vec<String> {
    let sections = keys::sections();
    let mut problems = Vec::new();
    for (section, value) in table {
        if !sections.contains(&section.as_str()) {
            problems.push(format!(
                "unknown key `{section}`; accepted sections: {}",
                sections.join(", ")
            ));
            continue;
        }
        let Value::Table(fields) = value else {
            problems.push(format!(
                "`{section}` must be a table ([{section}]), found a {}",
                value.type_str()
            ));
            continue;
        };
        for field in fields.keys() {
            if keys::spec(&format!("{section}.{field}")).is_none() {
                problems.push(format!(
                    "unknown key `{section}.{field}`; keys of [{section}]: {}",
                    keys::fields_of(section).join(", ")
                ));
            }
        }
    }
    problems
}

/// A string from the environment or a flag as the TOML value its key takes.
fn convert(spec: &KeySpec, raw: &str) -> Result<Value, String> {
    let raw_trimmed = raw.trim();
    let shown = || {
        if matches!(spec.kind, Kind::Secret | Kind::SecretList) {
            "<redacted>".to_owned()
        } else {
            format!("{raw:?}")
        }
    };
    match spec.kind {
        Kind::Text | Kind::Secret => Ok(Value::String(raw_trimmed.to_owned())),
        Kind::Integer => raw_trimmed.parse::<i64>().map(Value::Integer).map_err(|_| {
            format!(
                "{} is not a whole number; {} takes an integer",
                shown(),
                spec.key
            )
        }),
        Kind::Bool => match raw_trimmed.to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" | "on" => Ok(Value::Boolean(true)),
            "false" | "0" | "no" | "off" => Ok(Value::Boolean(false)),
            _ => Err(format!(
                "{} is not a boolean; {} takes true or false (also 1/0, yes/no, on/off)",
                shown(),
                spec.key
            )),
        },
        Kind::Duration => duration(raw_trimmed).ok_or_else(|| {
            format!(
                "{} is not a duration; {} takes e.g. 250ms, 5s, 2m, 1h (or a number of milliseconds)",
                shown(),
                spec.key
            )
        }),
        Kind::DurationList => raw_trimmed
            .split(',')
            .map(|part| {
                duration(part.trim()).ok_or_else(|| {
                    format!(
                        "{:?} in {} is not a duration; {} takes a comma-separated list such as 0s,5s,5m",
                        part.trim(),
                        shown(),
                        spec.key
                    )
                })
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Value::Array),
        Kind::SecretList => Ok(Value::Array(
            raw_trimmed
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(|s| Value::String(s.to_owned()))
                .collect(),
        )),
    }
}

fn duration(text: &str) -> Option<Value> {
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        return text.parse::<i64>().ok().map(Value::Integer);
    }
    humantime::parse_duration(text)
        .ok()
        .map(|_| Value::String(text.to_owned()))
}

/// Checks one value against the typed structs by itself, so a type error names its source.
fn check_alone(key: &str, value: &Value) -> Result<(), String> {
    let mut layer = Layers::default();
    layer.set(key, value.clone(), Source::Default);
    Value::Table(layer.table)
        .try_into::<Config>()
        .map(|_| ())
        .map_err(|e| format!("{key}: {}", e.to_string().trim()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Secret;

    fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn json(c: &Config) -> serde_json::Value {
        serde_json::to_value(c).unwrap()
    }

    /// A home folder holding `~/.gc/config.toml` with `text`.
    fn home_with_profiles(text: &str) -> tempfile::TempDir {
        let home = tempfile::tempdir().unwrap();
        let path = profile::profiles_path(home.path());
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
        home
    }

    fn config_file(text: &str) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("gcx.toml");
        std::fs::write(&path, text).unwrap();
        (dir, path)
    }

    fn with_file(path: &Path) -> Overrides {
        Overrides {
            config_path: Some(path.to_owned()),
            ..Default::default()
        }
    }

    const DEFAULT_FILE: &str = include_str!("../../../../config/gcx.default.toml");

    #[test]
    fn nothing_set_gives_the_defaults() {
        let empty = tempfile::tempdir().unwrap();
        let loaded = load_from(&Overrides::default(), &env(&[]), Some(empty.path())).unwrap();
        assert_eq!(json(&loaded.config), json(&Config::default()));
        assert!(loaded.sources.values().all(|s| *s == Source::Default));
        assert_eq!(loaded.sources.len(), KEYS.len());
        assert!(loaded.profile.is_none());
    }

    #[test]
    fn the_documented_defaults_file_is_the_defaults() {
        let parsed: Config = toml::from_str(DEFAULT_FILE).unwrap();
        assert_eq!(json(&parsed), json(&Config::default()));
        // And it loads as a --config file without complaint.
        let (_d, path) = config_file(DEFAULT_FILE);
        let loaded = load_from(&with_file(&path), &env(&[]), None).unwrap();
        assert_eq!(json(&loaded.config), json(&Config::default()));
    }

    #[test]
    fn the_defaults_file_mentions_every_key() {
        for spec in KEYS {
            let field = spec.key.split_once('.').unwrap().1;
            let section = spec.key.split_once('.').unwrap().0;
            let in_section = DEFAULT_FILE
                .split(&format!("[{section}]"))
                .nth(1)
                .unwrap_or_else(|| panic!("no [{section}] in the defaults file"));
            assert!(
                in_section.contains(&format!("{field} = ")),
                "{} is not documented in config/gcx.default.toml",
                spec.key
            );
        }
    }

    #[test]
    fn the_key_table_matches_the_structs() {
        // Every key the structs serialize (None as null) is in the table ...
        let value = json(&Config::default());
        let mut serialized = Vec::new();
        for (section, fields) in value.as_object().unwrap() {
            for field in fields.as_object().unwrap().keys() {
                serialized.push(format!("{section}.{field}"));
            }
        }
        for key in &serialized {
            assert!(
                keys::spec(key).is_some(),
                "{key} is missing from config::keys::KEYS"
            );
        }
        // ... and every key in the table is a field the structs accept, of its kind.
        for spec in KEYS {
            let sample = match spec.kind {
                Kind::Text | Kind::Secret => "x",
                Kind::Integer => "7",
                Kind::Bool => "true",
                Kind::Duration => "5s",
                Kind::DurationList => "1s,2s",
                Kind::SecretList => "a,b",
            };
            let v = convert(spec, sample).unwrap();
            check_alone(spec.key, &v).unwrap_or_else(|e| panic!("{}: {e}", spec.key));
        }
        assert_eq!(serialized.len(), KEYS.len());
    }

    #[test]
    fn a_file_sets_keys_and_is_their_source() {
        let (_d, path) = config_file(
            "[store]\ndata_dir = \"/var/lib/gcx\"\ngroup_commit_interval = 5\n[log]\nlevel = \"debug\"\n",
        );
        let loaded = load_from(&with_file(&path), &env(&[]), None).unwrap();
        assert_eq!(loaded.config.store.data_dir, PathBuf::from("/var/lib/gcx"));
        assert_eq!(
            loaded.config.store.group_commit_interval,
            std::time::Duration::from_millis(5)
        );
        assert_eq!(loaded.config.log.level, "debug");
        assert_eq!(loaded.source("store.data_dir"), &Source::File(path.clone()));
        assert_eq!(loaded.source("log.format"), &Source::Default);
        assert_eq!(loaded.config_file, Some(path));
    }

    #[test]
    fn unknown_keys_in_a_file_name_the_key_and_the_file() {
        let (_d, path) = config_file(
            "colour = 1\n[store]\ndata_dirr = \"x\"\n[genesys]\nregion = \"us-east-1\"\n",
        );
        let e = load_from(&with_file(&path), &env(&[]), None)
            .unwrap_err()
            .to_string();
        assert!(e.contains(&path.display().to_string()), "{e}");
        assert!(e.contains("unknown key `colour`"), "{e}");
        assert!(e.contains("unknown key `store.data_dirr`"), "{e}");
        assert!(e.contains("data_dir, database_url"), "{e}");
    }

    #[test]
    fn a_wrong_type_in_a_file_names_the_line() {
        let (_d, path) = config_file("[store]\n\ngroup_commit_max_rows = \"many\"\n");
        let e = load_from(&with_file(&path), &env(&[]), None)
            .unwrap_err()
            .to_string();
        assert!(e.contains(&path.display().to_string()), "{e}");
        assert!(e.contains("line 3"), "{e}");
    }

    #[test]
    fn a_missing_file_names_the_path() {
        let e = load_from(
            &with_file(Path::new("/nonexistent/gcx.toml")),
            &env(&[]),
            None,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("/nonexistent/gcx.toml"), "{e}");
    }

    #[test]
    fn gcx_config_from_the_given_environment() {
        let (_d, path) = config_file("[log]\nformat = \"json\"\n");
        let loaded = load_from(
            &Overrides::default(),
            &env(&[("GCX_CONFIG", path.to_str().unwrap())]),
            None,
        )
        .unwrap();
        assert_eq!(loaded.config.log.format, "json");
    }

    const PROFILES: &str = r#"
[DEFAULT]
environment = "mypurecloud.de"
client_credentials = "default-id"
client_secret = "default-secret"

[prod]
environment = "us_east_1"
client_credentials = "prod-id"
client_secret = "prod-secret"
"#;

    #[test]
    fn the_default_profile_applies_when_the_file_exists() {
        let home = home_with_profiles(PROFILES);
        let loaded = load_from(&Overrides::default(), &env(&[]), Some(home.path())).unwrap();
        let g = &loaded.config.genesys;
        assert_eq!(g.region.as_deref(), Some("mypurecloud.de"));
        assert_eq!(g.client_id.as_deref(), Some("default-id"));
        assert_eq!(
            g.client_secret.as_ref().map(Secret::expose),
            Some("default-secret")
        );
        assert_eq!(
            loaded.source("genesys.region"),
            &Source::Profile("DEFAULT".into())
        );
    }

    #[test]
    fn home_comes_from_the_environment() {
        let home = home_with_profiles(PROFILES);
        let loaded = load_from(
            &Overrides::default(),
            &env(&[("HOME", home.path().to_str().unwrap())]),
            None,
        )
        .unwrap();
        assert_eq!(
            loaded.config.genesys.client_id.as_deref(),
            Some("default-id")
        );
    }

    #[test]
    fn a_named_profile_then_env_then_flags() {
        let home = home_with_profiles(PROFILES);
        let (_d, path) =
            config_file("[genesys]\nregion = \"eu-west-1\"\nclient_id = \"file-id\"\n");
        let overrides = Overrides {
            config_path: Some(path.clone()),
            profile: Some("prod".into()),
            region: Some("ap-south-1".into()),
            ..Default::default()
        };
        let loaded = load_from(
            &overrides,
            &env(&[("GENESYSCLOUD_OAUTHCLIENT_SECRET", "env-secret")]),
            Some(home.path()),
        )
        .unwrap();
        let g = &loaded.config.genesys;
        // The profile beats the file ...
        assert_eq!(g.client_id.as_deref(), Some("prod-id"));
        assert_eq!(
            loaded.source("genesys.client_id"),
            &Source::Profile("prod".into())
        );
        // ... the environment beats the profile ...
        assert_eq!(
            g.client_secret.as_ref().map(Secret::expose),
            Some("env-secret")
        );
        assert_eq!(
            loaded.source("genesys.client_secret"),
            &Source::Env("GENESYSCLOUD_OAUTHCLIENT_SECRET".into())
        );
        // ... and the flag beats them all.
        assert_eq!(g.region.as_deref(), Some("ap-south-1"));
        assert_eq!(
            loaded.source("genesys.region"),
            &Source::Flag("--region".into())
        );
    }

    #[test]
    fn a_missing_named_profile_is_an_error() {
        let home = home_with_profiles(PROFILES);
        let overrides = Overrides {
            profile: Some("staging".into()),
            ..Default::default()
        };
        let e = load_from(&overrides, &env(&[]), Some(home.path()))
            .unwrap_err()
            .to_string();
        assert!(e.contains("\"staging\""), "{e}");
        assert!(e.contains("DEFAULT, prod"), "{e}");
    }

    #[test]
    fn synonyms_in_documented_precedence() {
        let all = [
            ("GENESYS_CLIENT_ID", "seed"),
            ("GENESYS_CLOUD_CLIENT_ID", "seed-cloud"),
            ("GENESYSCLOUD_OAUTHCLIENT_ID", "terraform"),
            ("GCX_GENESYS_CLIENT_ID", "systematic"),
            ("GCX_CLIENT_ID", "gcx"),
        ];
        for n in 0..all.len() {
            let loaded = load_from(&Overrides::default(), &env(&all[..=n]), None).unwrap();
            let (var, value) = all[n];
            assert_eq!(loaded.config.genesys.client_id.as_deref(), Some(value));
            assert_eq!(loaded.source("genesys.client_id"), &Source::Env(var.into()));
            assert_eq!(loaded.warnings.len(), n, "{:?}", loaded.warnings);
        }
        let regions = env(&[
            ("GENESYS_CLOUD_REGION", "eu-west-1"),
            ("GENESYSCLOUD_REGION", "us-east-1"),
        ]);
        let loaded = load_from(&Overrides::default(), &regions, None).unwrap();
        assert_eq!(loaded.config.genesys.region.as_deref(), Some("us-east-1"));
        assert!(
            loaded.warnings[0].contains("GENESYS_CLOUD_REGION is ignored"),
            "{:?}",
            loaded.warnings
        );
    }

    #[test]
    fn the_seed_and_gcx_variables() {
        let loaded = load_from(
            &Overrides::default(),
            &env(&[
                ("CRM_WEBHOOK_URL", "https://crm.example.com/h"),
                ("GCX_CRM_WEBHOOK_SECRET", "whsec_abc"),
                ("QA_PLATFORM_ENDPOINT", "https://qa.example.com/i"),
                ("GCX_QA_WEBHOOK_SECRET", "whsec_def"),
                ("TEST_AGENT_ID", "agent"),
                ("TEST_INTERACTION_ID", "interaction"),
                ("GCX_DATA_DIR", "/tmp/d"),
                ("GCX_DATABASE_URL", "postgres://u:pw@h/db"),
                ("GCX_BASE_URL", "http://127.0.0.1:9"),
                ("GCX_LOG_FORMAT", "json"),
                ("GCX_STORE_GROUP_COMMIT_MAX_ROWS", "64"),
                ("GCX_STORE_AUDIT_STORE_PARAMETERS", "yes"),
                ("GCX_DELIVERY_SCHEDULE", "0, 1s,250ms"),
                ("GCX_DISPATCH_SLOT_TIMEOUT", "1500"),
                ("GCX_CONCURRENCY", "8"),
            ]),
            None,
        )
        .unwrap();
        let c = &loaded.config;
        assert_eq!(c.crm.url.as_deref(), Some("https://crm.example.com/h"));
        assert_eq!(c.crm.secret.as_ref().map(Secret::expose), Some("whsec_abc"));
        assert_eq!(c.qa.url.as_deref(), Some("https://qa.example.com/i"));
        assert_eq!(c.qa.secret.as_ref().map(Secret::expose), Some("whsec_def"));
        assert_eq!(c.simulate.agent_id.as_deref(), Some("agent"));
        assert_eq!(c.simulate.interaction_id.as_deref(), Some("interaction"));
        assert_eq!(c.store.data_dir, PathBuf::from("/tmp/d"));
        assert_eq!(
            c.store.database_url.as_ref().map(Secret::expose),
            Some("postgres://u:pw@h/db")
        );
        assert_eq!(c.genesys.base_url.as_deref(), Some("http://127.0.0.1:9"));
        assert_eq!(c.log.format, "json");
        assert_eq!(c.store.group_commit_max_rows, 64);
        assert!(c.store.audit_store_parameters);
        use std::time::Duration;
        assert_eq!(
            c.delivery.schedule,
            [
                Duration::ZERO,
                Duration::from_secs(1),
                Duration::from_millis(250)
            ]
        );
        assert_eq!(c.dispatch.slot_timeout, Duration::from_millis(1500));
        assert_eq!(c.dispatch.concurrency, Some(8));
        assert_eq!(
            loaded.source("crm.url"),
            &Source::Env("CRM_WEBHOOK_URL".into())
        );
        // Debug output never shows a secret.
        let debug = format!("{loaded:?}");
        for secret in ["whsec_abc", "whsec_def", "u:pw"] {
            assert!(!debug.contains(secret), "{secret} in {debug}");
        }
    }

    #[test]
    fn empty_variables_count_as_unset() {
        let loaded = load_from(
            &Overrides::default(),
            &env(&[("GCX_CLIENT_ID", ""), ("GENESYS_CLIENT_ID", "seed")]),
            None,
        )
        .unwrap();
        assert_eq!(loaded.config.genesys.client_id.as_deref(), Some("seed"));
        assert!(loaded.warnings.is_empty());
    }

    #[track_caller]
    fn env_error(var: &str, value: &str) -> String {
        load_from(&Overrides::default(), &env(&[(var, value)]), None)
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn bad_environment_values_name_the_variable() {
        let e = env_error("GCX_STORE_GROUP_COMMIT_MAX_ROWS", "lots");
        assert!(e.contains("GCX_STORE_GROUP_COMMIT_MAX_ROWS"), "{e}");
        assert!(e.contains("\"lots\" is not a whole number"), "{e}");
        let e = env_error("GCX_ALLOW_INSECURE", "maybe");
        assert!(
            e.contains("GCX_ALLOW_INSECURE") && e.contains("true or false"),
            "{e}"
        );
        let e = env_error("GCX_DISPATCH_SLOT_TIMEOUT", "soon");
        assert!(e.contains("not a duration") && e.contains("5s"), "{e}");
        let e = env_error("GCX_DELIVERY_SCHEDULE", "1s,later");
        assert!(e.contains("\"later\""), "{e}");
        let e = env_error("GCX_CONCURRENCY", "-1");
        assert!(
            e.contains("GCX_CONCURRENCY") && e.contains("dispatch.concurrency"),
            "{e}"
        );
    }

    #[test]
    fn merged_rules_name_the_source() {
        let e = env_error("GCX_LOG_FORMAT", "xml");
        assert!(
            e.contains("log.format") && e.contains("env GCX_LOG_FORMAT"),
            "{e}"
        );
        assert!(e.contains("human or json"), "{e}");
        let e = env_error("GCX_CONCURRENCY", "0");
        assert!(e.contains("dispatch.concurrency"), "{e}");
        let overrides = Overrides {
            log_level: Some("gcx=[".into()),
            ..Default::default()
        };
        let e = load_from(&overrides, &env(&[]), None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("flag --log-level"), "{e}");
    }

    #[test]
    fn keep_finished_is_forever_or_at_least_a_day() {
        let e = env_error("GCX_STORE_KEEP_FINISHED", "12h");
        assert!(
            e.contains("store.keep_finished") && e.contains("env GCX_STORE_KEEP_FINISHED"),
            "{e}"
        );
        assert!(e.contains("12h") && e.contains("at least 24h"), "{e}");
        for ok in ["0", "24h", "30days"] {
            let loaded = load_from(
                &Overrides::default(),
                &env(&[("GCX_STORE_KEEP_FINISHED", ok)]),
                None,
            )
            .unwrap();
            assert_eq!(
                loaded.config.store.keep_finished.is_zero(),
                ok == "0",
                "{ok}"
            );
        }
    }

    #[test]
    fn zero_limits_are_all_refused_naming_key_and_source() {
        let (_dir, path) = config_file("[serve]\nmax_body_bytes = 0\nrate_limit_per_key = 0\n");
        let e = load_from(
            &with_file(&path),
            &env(&[
                ("GCX_SERVE_MAX_BATCH", "0"),
                ("GCX_SERVE_REQUEST_TIMEOUT", "0"),
                ("GCX_LOG_FORMAT", "xml"),
            ]),
            None,
        )
        .unwrap_err()
        .to_string();
        assert!(e.starts_with("4 settings are invalid"), "{e}");
        assert!(
            e.contains("serve.max_batch (from env GCX_SERVE_MAX_BATCH)") && e.contains("1 or more"),
            "{e}"
        );
        assert!(
            e.contains("serve.request_timeout (from env GCX_SERVE_REQUEST_TIMEOUT)")
                && e.contains("a duration above 0"),
            "{e}"
        );
        assert!(
            e.contains(&format!(
                "serve.max_body_bytes (from file {})",
                path.display()
            )),
            "{e}"
        );
        assert!(e.contains("log.format"), "{e}");
        // 0 turns the per-key rate limit off: not a violation.
        assert!(!e.contains("rate_limit_per_key"), "{e}");
    }

    #[test]
    fn flags_win_over_the_environment() {
        let overrides = Overrides {
            base_url: Some("http://127.0.0.1:1".into()),
            data_dir: Some(PathBuf::from("/flag/dir")),
            database_url: Some("postgres://flag".into()),
            log_format: Some("json".into()),
            log_level: Some("debug".into()),
            ..Default::default()
        };
        let loaded = load_from(
            &overrides,
            &env(&[
                ("GCX_BASE_URL", "http://127.0.0.1:2"),
                ("GCX_LOG_LEVEL", "warn"),
            ]),
            None,
        )
        .unwrap();
        assert_eq!(
            loaded.config.genesys.base_url.as_deref(),
            Some("http://127.0.0.1:1")
        );
        assert_eq!(loaded.config.store.data_dir, PathBuf::from("/flag/dir"));
        assert_eq!(loaded.config.log.level, "debug");
        assert_eq!(
            loaded.source("log.level"),
            &Source::Flag("--log-level".into())
        );
        assert_eq!(
            loaded.source("store.database_url"),
            &Source::Flag("--database-url".into())
        );
    }
}
