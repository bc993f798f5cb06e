//! The action catalogue (PROTOCOL.md section 3.5): which actions exist, their parameters,
//! types, bounds and dependency rules. Data, not code: the default is
//! `catalogue/default.toml` compiled in, and an operator may load another with
//! [`Catalogue::from_toml_str`] (the caller reads the file; this crate does no I/O).
//!
//! The file format is documented at the top of `catalogue/default.toml`. Loading checks
//! the whole file and reports *every* problem, each naming its place
//! (`actions[2].parameters[0] (text): ...`), so an operator fixes a file in one pass.
//!
//! One room, although long: the file's schema and its checks name the same places, so
//! every error can point into the file the operator wrote.

use std::collections::BTreeSet;
use std::fmt;
use std::sync::OnceLock;

use thiserror::Error;
use toml::{Table, Value};

/// The default catalogue's TOML text.
pub const DEFAULT_TOML: &str = include_str!("../catalogue/default.toml");

/// Why a catalogue text was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum CatalogueError {
    /// The text is not TOML at all (the message carries line and column).
    #[error("catalogue is not valid TOML: {0}")]
    Toml(String),
    /// The text is TOML but breaks the catalogue format; one entry per problem.
    #[error("catalogue is invalid: {}", .0.join("; "))]
    Invalid(Vec<String>),
}

/// A string format a parameter (or each item of an array parameter) must match.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StringFormat {
    /// `^[A-Za-z]{2,3}(-[A-Za-z0-9]{2,8})*$`.
    Bcp47,
}

impl StringFormat {
    /// The name used in catalogue files and messages.
    pub fn name(self) -> &'static str {
        match self {
            StringFormat::Bcp47 => "bcp47",
        }
    }
}

/// Rules for one string (a string parameter, or each item of an array parameter).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StringRule {
    /// Fewest Unicode scalar values allowed.
    pub min_length: Option<usize>,
    /// Most Unicode scalar values allowed.
    pub max_length: Option<usize>,
    /// A format the value must match.
    pub format: Option<StringFormat>,
}

/// The type of a parameter with its bounds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParamKind {
    String(StringRule),
    Integer {
        min: Option<i64>,
        max: Option<i64>,
    },
    StringArray {
        min_items: Option<usize>,
        max_items: Option<usize>,
        /// Rules each item must follow.
        item: StringRule,
    },
}

impl ParamKind {
    /// The type name used in catalogue files and messages.
    pub fn type_name(&self) -> &'static str {
        match self {
            ParamKind::String(_) => "string",
            ParamKind::Integer { .. } => "integer",
            ParamKind::StringArray { .. } => "array_of_strings",
        }
    }
}

/// One parameter of an action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParamSpec {
    /// The key in `parameterMatrix`.
    pub name: String,
    pub kind: ParamKind,
    /// Whether a trigger must give it (members of a `one_of` group are never required).
    pub required: bool,
    /// For people reading help and errors.
    pub description: Option<String>,
}

/// One action type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActionSpec {
    /// The `actionType` value.
    pub name: String,
    /// For people reading help and errors.
    pub description: Option<String>,
    /// In file order, so messages list them as the operator wrote them.
    pub parameters: Vec<ParamSpec>,
    /// Dependency groups: exactly one parameter of each group must be given.
    pub one_of: Vec<Vec<String>>,
}

impl ActionSpec {
    /// The parameter called `name`.
    pub fn parameter(&self, name: &str) -> Option<&ParamSpec> {
        self.parameters.iter().find(|p| p.name == name)
    }

    /// The parameter names, comma separated, for messages.
    pub fn parameter_names(&self) -> String {
        let names: Vec<&str> = self.parameters.iter().map(|p| p.name.as_str()).collect();
        names.join(", ")
    }
}

/// A loaded, checked catalogue.
#[derive(Debug, Clone, PartialEq)]
pub struct Catalogue {
    /// Recorded in every audit record, so a decision can be traced to the rules in force.
    version: String,
    /// In file order.
    actions: Vec<ActionSpec>,
}

impl Catalogue {
    /// The compiled-in default catalogue.
    pub fn builtin() -> Catalogue {
        static BUILTIN: OnceLock<Catalogue> = OnceLock::new();
        BUILTIN
            .get_or_init(|| {
                // The default text is part of this crate and `builtin_catalogue_parses`
                // checks it, so this cannot fail in a tested build.
                Catalogue::from_toml_str(DEFAULT_TOML)
                    .expect("the compiled-in catalogue is valid (tested)")
            })
            .clone()
    }

    /// Parses and checks a catalogue text, reporting every problem at once.
    pub fn from_toml_str(text: &str) -> Result<Catalogue, CatalogueError> {
        let table: Table = text
            .parse()
            .map_err(|e: toml::de::Error| CatalogueError::Toml(e.to_string().trim().to_owned()))?;
        let mut problems = Problems::default();
        let catalogue = read_catalogue(&table, &mut problems);
        if problems.0.is_empty() {
            Ok(catalogue)
        } else {
            Err(CatalogueError::Invalid(problems.0))
        }
    }

    /// The catalogue's `version` (recorded in every audit record).
    pub fn version(&self) -> &str {
        &self.version
    }

    /// The action types it names, in file order.
    pub fn action_types(&self) -> Vec<&str> {
        self.actions.iter().map(|a| a.name.as_str()).collect()
    }

    /// Every action, in file order.
    pub fn actions(&self) -> &[ActionSpec] {
        &self.actions
    }

    /// The action called `name`.
    pub fn action(&self, name: &str) -> Option<&ActionSpec> {
        self.actions.iter().find(|a| a.name == name)
    }

    /// `knowledge_search, document_extraction, sentiment_analysis`: for "expected one of"
    /// messages.
    pub fn action_list(&self) -> String {
        self.action_types().join(", ")
    }
}

/// Every problem found in a catalogue text, each naming its place.
#[derive(Default)]
struct Problems(Vec<String>);

impl Problems {
    fn push(&mut self, place: &dyn fmt::Display, message: impl fmt::Display) {
        self.0.push(format!("{place}: {message}"));
    }
}

/// The place of a problem, e.g. `actions[2].parameters[0] (text)`.
struct Place<'a> {
    path: String,
    name: Option<&'a str>,
}

impl fmt::Display for Place<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name {
            Some(n) => write!(f, "{} ({n})", self.path),
            None => f.write_str(&self.path),
        }
    }
}

fn describe(v: &Value) -> String {
    match v {
        Value::String(s) => format!("string {s:?}"),
        Value::Integer(i) => format!("integer {i}"),
        Value::Float(x) => format!("float {x}"),
        Value::Boolean(b) => format!("boolean {b}"),
        Value::Datetime(d) => format!("datetime {d}"),
        Value::Array(_) => "an array".into(),
        Value::Table(_) => "a table".into(),
    }
}

fn unknown_keys(
    table: &Table,
    allowed: &[&str],
    place: &dyn fmt::Display,
    problems: &mut Problems,
) {
    for key in table.keys() {
        if !allowed.contains(&key.as_str()) {
            problems.push(
                place,
                format!("unknown key `{key}`; accepted keys: {}", allowed.join(", ")),
            );
        }
    }
}

fn opt_string(
    table: &Table,
    key: &str,
    place: &dyn fmt::Display,
    problems: &mut Problems,
) -> Option<String> {
    match table.get(key)? {
        Value::String(s) => Some(s.clone()),
        other => {
            problems.push(
                place,
                format!("`{key}` must be a string, found {}", describe(other)),
            );
            None
        }
    }
}

fn opt_bool(table: &Table, key: &str, place: &dyn fmt::Display, problems: &mut Problems) -> bool {
    match table.get(key) {
        None => false,
        Some(Value::Boolean(b)) => *b,
        Some(other) => {
            problems.push(
                place,
                format!("`{key}` must be true or false, found {}", describe(other)),
            );
            false
        }
    }
}

fn opt_int(
    table: &Table,
    key: &str,
    place: &dyn fmt::Display,
    problems: &mut Problems,
) -> Option<i64> {
    match table.get(key)? {
        Value::Integer(i) => Some(*i),
        other => {
            problems.push(
                place,
                format!("`{key}` must be an integer, found {}", describe(other)),
            );
            None
        }
    }
}

/// A length or count: an integer of at least 0.
fn opt_count(
    table: &Table,
    key: &str,
    place: &dyn fmt::Display,
    problems: &mut Problems,
) -> Option<usize> {
    let i = opt_int(table, key, place, problems)?;
    match usize::try_from(i) {
        Ok(n) => Some(n),
        Err(_) => {
            problems.push(place, format!("`{key}` must be 0 or more, found {i}"));
            None
        }
    }
}

fn check_order<T: PartialOrd + fmt::Display>(
    (min_key, min): (&str, Option<T>),
    (max_key, max): (&str, Option<T>),
    place: &dyn fmt::Display,
    problems: &mut Problems,
) {
    if let (Some(lo), Some(hi)) = (min, max)
        && lo > hi
    {
        problems.push(
            place,
            format!("`{min_key}` {lo} is greater than `{max_key}` {hi}"),
        );
    }
}

fn opt_format(
    table: &Table,
    key: &str,
    place: &dyn fmt::Display,
    problems: &mut Problems,
) -> Option<StringFormat> {
    let name = opt_string(table, key, place, problems)?;
    match name.as_str() {
        "bcp47" => Some(StringFormat::Bcp47),
        other => {
            problems.push(
                place,
                format!("unknown `{key}` {other:?}; accepted formats: bcp47"),
            );
            None
        }
    }
}

fn read_catalogue(table: &Table, problems: &mut Problems) -> Catalogue {
    let top = Place {
        path: "(top level)".into(),
        name: None,
    };
    unknown_keys(table, &["version", "actions"], &top, problems);
    let version = match opt_string(table, "version", &top, problems) {
        Some(v) if !v.trim().is_empty() => v,
        Some(_) => {
            problems.push(&top, "`version` must not be empty");
            String::new()
        }
        None => {
            if !table.contains_key("version") {
                problems.push(
                    &top,
                    "`version` is required (a string, e.g. \"2026-11-01\")",
                );
            }
            String::new()
        }
    };
    let mut actions = Vec::new();
    match table.get("actions") {
        None => problems.push(
            &top,
            "`actions` is required: at least one [[actions]] table",
        ),
        Some(Value::Array(items)) if items.is_empty() => {
            problems.push(&top, "`actions` must list at least one action")
        }
        Some(Value::Array(items)) => {
            let mut seen = BTreeSet::new();
            for (i, item) in items.iter().enumerate() {
                let path = format!("actions[{i}]");
                let Value::Table(t) = item else {
                    problems.push(
                        &Place { path, name: None },
                        format!("must be a table, found {}", describe(item)),
                    );
                    continue;
                };
                if let Some(action) = read_action(t, path, problems) {
                    if !seen.insert(action.name.clone()) {
                        problems.push(
                            &Place {
                                path: format!("actions[{i}]"),
                                name: Some(&action.name),
                            },
                            "this action name is listed twice",
                        );
                    }
                    actions.push(action);
                }
            }
        }
        Some(other) => problems.push(
            &top,
            format!(
                "`actions` must be an array of tables ([[actions]]), found {}",
                describe(other)
            ),
        ),
    }
    Catalogue { version, actions }
}

fn read_action(table: &Table, path: String, problems: &mut Problems) -> Option<ActionSpec> {
    let unnamed = Place {
        path: path.clone(),
        name: None,
    };
    let name = opt_string(table, "name", &unnamed, problems);
    let place = Place {
        path: path.clone(),
        name: name.as_deref(),
    };
    unknown_keys(
        table,
        &["name", "description", "parameters", "one_of"],
        &place,
        problems,
    );
    match name.as_deref() {
        None if !table.contains_key("name") => {
            problems.push(&place, "`name` is required (the actionType value)")
        }
        Some("") => problems.push(&place, "`name` must not be empty"),
        _ => {}
    }
    let description = opt_string(table, "description", &place, problems);

    let mut parameters: Vec<ParamSpec> = Vec::new();
    match table.get("parameters") {
        None => {}
        Some(Value::Array(items)) => {
            for (j, item) in items.iter().enumerate() {
                let ppath = format!("{path}.parameters[{j}]");
                let Value::Table(t) = item else {
                    problems.push(
                        &Place {
                            path: ppath,
                            name: None,
                        },
                        format!("must be a table, found {}", describe(item)),
                    );
                    continue;
                };
                if let Some(p) = read_param(t, ppath.clone(), problems) {
                    if parameters.iter().any(|q| q.name == p.name) {
                        problems.push(
                            &Place {
                                path: ppath,
                                name: Some(&p.name),
                            },
                            "this parameter name is listed twice in the action",
                        );
                    }
                    parameters.push(p);
                }
            }
        }
        Some(other) => problems.push(
            &place,
            format!(
                "`parameters` must be an array of tables ([[actions.parameters]]), found {}",
                describe(other)
            ),
        ),
    }

    let one_of = read_one_of(table, &place, &parameters, problems);
    Some(ActionSpec {
        name: name?,
        description,
        parameters,
        one_of,
    })
}

fn read_one_of(
    table: &Table,
    place: &Place<'_>,
    parameters: &[ParamSpec],
    problems: &mut Problems,
) -> Vec<Vec<String>> {
    let mut groups = Vec::new();
    let Some(raw) = table.get("one_of") else {
        return groups;
    };
    let shape = "`one_of` must be an array of arrays of parameter names, e.g. [[\"text\", \"transcriptId\"]]";
    let Value::Array(raw_groups) = raw else {
        problems.push(place, format!("{shape}; found {}", describe(raw)));
        return groups;
    };
    for (g, raw_group) in raw_groups.iter().enumerate() {
        let Value::Array(names) = raw_group else {
            problems.push(
                place,
                format!("{shape}; group {g} is {}", describe(raw_group)),
            );
            continue;
        };
        let mut group = Vec::new();
        for n in names {
            let Value::String(n) = n else {
                problems.push(place, format!("{shape}; group {g} holds {}", describe(n)));
                continue;
            };
            match parameters.iter().find(|p| &p.name == n) {
                None => problems.push(
                    place,
                    format!(
                        "`one_of` group {g} names {n:?}, which is not a parameter of this action"
                    ),
                ),
                Some(p) if p.required => problems.push(
                    place,
                    format!(
                        "`one_of` group {g} names {n:?}, which is `required = true`; a member of a one_of group must be optional"
                    ),
                ),
                Some(_) => {}
            }
            if group.contains(n) {
                problems.push(place, format!("`one_of` group {g} names {n:?} twice"));
            } else {
                group.push(n.clone());
            }
        }
        if group.len() < 2 {
            problems.push(
                place,
                format!("`one_of` group {g} must name at least two parameters"),
            );
        }
        groups.push(group);
    }
    groups
}

const STRING_KEYS: [&str; 7] = [
    "name",
    "type",
    "required",
    "description",
    "min_length",
    "max_length",
    "format",
];
const INTEGER_KEYS: [&str; 6] = ["name", "type", "required", "description", "min", "max"];
const ARRAY_KEYS: [&str; 9] = [
    "name",
    "type",
    "required",
    "description",
    "min_items",
    "max_items",
    "item_min_length",
    "item_max_length",
    "item_format",
];
const TYPE_NAMES: &str = "string, integer, array_of_strings";

fn read_param(table: &Table, path: String, problems: &mut Problems) -> Option<ParamSpec> {
    let unnamed = Place {
        path: path.clone(),
        name: None,
    };
    let name = opt_string(table, "name", &unnamed, problems);
    let place = Place {
        path,
        name: name.as_deref(),
    };
    match name.as_deref() {
        None if !table.contains_key("name") => {
            problems.push(&place, "`name` is required (the key in parameterMatrix)")
        }
        Some("") => problems.push(&place, "`name` must not be empty"),
        _ => {}
    }
    let required = opt_bool(table, "required", &place, problems);
    let description = opt_string(table, "description", &place, problems);
    let type_name = opt_string(table, "type", &place, problems);
    let kind = match type_name.as_deref() {
        None => {
            if !table.contains_key("type") {
                problems.push(&place, format!("`type` is required; one of {TYPE_NAMES}"));
            }
            None
        }
        Some("string") => {
            unknown_keys(table, &STRING_KEYS, &place, problems);
            Some(ParamKind::String(read_string_rule(
                table,
                ("min_length", "max_length", "format"),
                &place,
                problems,
            )))
        }
        Some("integer") => {
            unknown_keys(table, &INTEGER_KEYS, &place, problems);
            let min = opt_int(table, "min", &place, problems);
            let max = opt_int(table, "max", &place, problems);
            check_order(("min", min), ("max", max), &place, problems);
            Some(ParamKind::Integer { min, max })
        }
        Some("array_of_strings") => {
            unknown_keys(table, &ARRAY_KEYS, &place, problems);
            let min_items = opt_count(table, "min_items", &place, problems);
            let max_items = opt_count(table, "max_items", &place, problems);
            check_order(
                ("min_items", min_items),
                ("max_items", max_items),
                &place,
                problems,
            );
            let item = read_string_rule(
                table,
                ("item_min_length", "item_max_length", "item_format"),
                &place,
                problems,
            );
            Some(ParamKind::StringArray {
                min_items,
                max_items,
                item,
            })
        }
        Some(other) => {
            problems.push(
                &place,
                format!("unknown type {other:?}; accepted types: {TYPE_NAMES}"),
            );
            None
        }
    };
    Some(ParamSpec {
        name: name?,
        kind: kind?,
        required,
        description,
    })
}

fn read_string_rule(
    table: &Table,
    (min_key, max_key, format_key): (&str, &str, &str),
    place: &Place<'_>,
    problems: &mut Problems,
) -> StringRule {
    let min_length = opt_count(table, min_key, place, problems);
    let max_length = opt_count(table, max_key, place, problems);
    check_order(
        (min_key, min_length),
        (max_key, max_length),
        place,
        problems,
    );
    StringRule {
        min_length,
        max_length,
        format: opt_format(table, format_key, place, problems),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_catalogue_parses() {
        let c = Catalogue::from_toml_str(DEFAULT_TOML).unwrap();
        assert_eq!(
            c.action_types(),
            [
                "knowledge_search",
                "document_extraction",
                "sentiment_analysis"
            ]
        );
        assert_eq!(c.version(), "2026-11-01");
        assert_eq!(Catalogue::builtin(), c);
    }
}
