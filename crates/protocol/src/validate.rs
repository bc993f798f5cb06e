//! Trigger validation (PROTOCOL.md section 3.5): the client before sending and the server
//! on receipt apply the same rules, and report *every* violation with a JSON Pointer path.
//!
//! Order of the violations: the top-level keys in document order (each key's own
//! violations, nested ones included, where the key appears), then the `required` keys that
//! are missing, in the order of section 3.4. Inside `parameterMatrix` and
//! `executionContext` the same rule holds: present keys in document order, then the missing
//! required ones, then dependency (`one_of`) rules.
//!
//! One room, although long: the order of violations above is one walk over the payload,
//! and splitting the walk would split the rule that orders them.

use std::collections::BTreeMap;

use serde_json::{Map, Value};
use uuid::Uuid;

use crate::assist::{ActionTriggerPayload, INTERACTION_TYPES, MAX_MESSAGE_BYTES};
use crate::catalogue::{ActionSpec, Catalogue, ParamKind, ParamSpec, StringFormat, StringRule};
use crate::violation::{Violation, ViolationCode};

/// The top-level keys of a trigger, in the order of section 3.4.
pub const TOP_LEVEL_KEYS: [&str; 5] = [
    "actionType",
    "parameterMatrix",
    "executionContext",
    "correlationId",
    "maxRetries",
];
/// The most re-sends a trigger may ask for.
pub const MAX_RETRIES: u8 = 3;
/// Bounds of `executionContext.sessionId`, in Unicode scalar values.
pub const SESSION_ID_LENGTH: (usize, usize) = (1, 128);

/// Validates one trigger already parsed as JSON. On success returns the typed payload
/// (correlationId lowercased); otherwise every violation (order: see the module header).
pub fn validate_trigger(
    value: &Value,
    catalogue: &Catalogue,
) -> Result<ActionTriggerPayload, Vec<Violation>> {
    let mut out = Violations::default();
    let Some(top) = value.as_object() else {
        out.push(
            &Path::Root,
            ViolationCode::Type,
            format!(
                "expected a JSON object (an ActionTriggerPayload), found {}",
                describe(value)
            ),
        );
        return Err(out.0);
    };

    // The action decides the parameter rules, wherever `actionType` sits in the object.
    let action = top
        .get("actionType")
        .and_then(Value::as_str)
        .and_then(|name| catalogue.action(name));

    let mut action_type = None;
    let mut parameters = None;
    let mut context = None;
    let mut correlation_id = None;
    let mut max_retries = Some(0);
    for (key, v) in top {
        let path = Path::Root.key(key);
        match key.as_str() {
            "actionType" => action_type = check_action_type(&path, v, catalogue, &mut out),
            "parameterMatrix" => parameters = check_parameters(&path, v, action, &mut out),
            "executionContext" => context = check_context(&path, v, &mut out),
            "correlationId" => correlation_id = check_correlation_id(&path, v, &mut out),
            "maxRetries" => max_retries = check_max_retries(&path, v, &mut out),
            _ => out.push(
                &path,
                ViolationCode::Unknown,
                format!(
                    "unknown key {}; a trigger has exactly the keys {}",
                    quote(key),
                    TOP_LEVEL_KEYS.join(", ")
                ),
            ),
        }
    }
    for key in &TOP_LEVEL_KEYS[..4] {
        if !top.contains_key(*key) {
            let accepted = match *key {
                "actionType" => format!("one of {}", catalogue.action_list()),
                "parameterMatrix" => "an object of the action's parameters".to_owned(),
                "executionContext" => {
                    "an object with agentId, sessionId and interactionType".to_owned()
                }
                _ => "a UUID version 4".to_owned(),
            };
            out.push(
                &Path::Root.key(key),
                ViolationCode::Required,
                format!("{key} is missing; expected {accepted}"),
            );
        }
    }

    match (
        out.0.is_empty(),
        action_type,
        parameters,
        context,
        correlation_id,
        max_retries,
    ) {
        (
            true,
            Some(action_type),
            Some(parameter_matrix),
            Some(execution_context),
            Some(correlation_id),
            Some(max_retries),
        ) => Ok(ActionTriggerPayload {
            action_type,
            parameter_matrix,
            execution_context,
            correlation_id,
            max_retries,
        }),
        _ => Err(out.0),
    }
}

/// Validates one trigger from raw bytes: a message over 64 KiB is one `size` violation at
/// `""`; bytes that are not JSON are one `type` violation at `""`.
pub fn validate_trigger_bytes(
    bytes: &[u8],
    catalogue: &Catalogue,
) -> Result<ActionTriggerPayload, Vec<Violation>> {
    if bytes.len() > MAX_MESSAGE_BYTES {
        return Err(vec![Violation {
            path: String::new(),
            code: ViolationCode::Size,
            message: format!(
                "message is {} bytes; at most {MAX_MESSAGE_BYTES} bytes (64 KiB) are accepted",
                bytes.len()
            ),
        }]);
    }
    match serde_json::from_slice::<Value>(bytes) {
        Ok(value) => validate_trigger(&value, catalogue),
        Err(e) => Err(vec![Violation {
            path: String::new(),
            code: ViolationCode::Type,
            message: format!("not JSON ({e}); expected a JSON object (an ActionTriggerPayload)"),
        }]),
    }
}

/// Escapes one reference token of a JSON Pointer (RFC 6901: `~` as `~0`, `/` as `~1`).
pub fn escape_pointer_token(token: &str) -> String {
    token.replace('~', "~0").replace('/', "~1")
}

/// Where a value sits, as a JSON Pointer built only when a violation names it: checking a
/// valid trigger formats no paths.
#[derive(Clone, Copy)]
enum Path<'a> {
    Root,
    Key(&'a Path<'a>, &'a str),
    Index(&'a Path<'a>, usize),
}

impl<'a> Path<'a> {
    fn key(&'a self, key: &'a str) -> Path<'a> {
        Path::Key(self, key)
    }

    fn render(&self) -> String {
        match self {
            Path::Root => String::new(),
            Path::Key(parent, key) => format!("{}/{}", parent.render(), escape_pointer_token(key)),
            Path::Index(parent, i) => format!("{}/{i}", parent.render()),
        }
    }
}

/// Whether `s` is a BCP 47 tag as section 3.5 defines it:
/// `^[A-Za-z]{2,3}(-[A-Za-z0-9]{2,8})*$`.
pub fn is_bcp47(s: &str) -> bool {
    let mut parts = s.split('-');
    let Some(first) = parts.next() else {
        return false;
    };
    (2..=3).contains(&first.len())
        && first.bytes().all(|b| b.is_ascii_alphabetic())
        && parts.all(|p| (2..=8).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_alphanumeric()))
}

/// A hyphenated UUID (8-4-4-4-12 hex digits, either case), any version.
pub fn parse_hyphenated_uuid(s: &str) -> Option<Uuid> {
    // At 36 characters `Uuid::try_parse` accepts only the hyphenated form.
    if s.len() != 36 {
        return None;
    }
    Uuid::try_parse(s).ok()
}

/// A hyphenated UUID of version 4 (RFC 9562 variant), either case.
pub fn parse_uuid_v4(s: &str) -> Option<Uuid> {
    parse_hyphenated_uuid(s)
        .filter(|u| u.get_version_num() == 4 && u.get_variant() == uuid::Variant::RFC4122)
}

#[derive(Default)]
struct Violations(Vec<Violation>);

impl Violations {
    fn push(&mut self, path: &Path<'_>, code: ViolationCode, message: String) {
        self.0.push(Violation {
            path: path.render(),
            code,
            message,
        });
    }
}

/// Longest string quoted in full in a message; longer ones are cut.
const QUOTE_CHARS: usize = 40;

fn quote(s: &str) -> String {
    if s.chars().count() <= QUOTE_CHARS {
        format!("{s:?}")
    } else {
        let head: String = s.chars().take(QUOTE_CHARS).collect();
        format!("{:?}… ({} characters)", head, s.chars().count())
    }
}

/// What a value is, for "found ..." in messages.
fn describe(v: &Value) -> String {
    match v {
        Value::Null => "null".into(),
        Value::Bool(b) => format!("boolean {b}"),
        Value::Number(n) => format!("number {n}"),
        Value::String(s) => format!("string {}", quote(s)),
        Value::Array(a) => format!("an array of {} items", a.len()),
        Value::Object(o) => format!("an object of {} keys", o.len()),
    }
}

/// `1 to 1024`, `at least 1`, `at most 50`, or `any`.
fn bounds<T: std::fmt::Display>(min: Option<T>, max: Option<T>) -> String {
    match (min, max) {
        (Some(lo), Some(hi)) => format!("{lo} to {hi}"),
        (Some(lo), None) => format!("at least {lo}"),
        (None, Some(hi)) => format!("at most {hi}"),
        (None, None) => "any".into(),
    }
}

fn within(n: usize, min: Option<usize>, max: Option<usize>) -> bool {
    min.is_none_or(|lo| n >= lo) && max.is_none_or(|hi| n <= hi)
}

/// Reports `null` or `type` unless `v` is a string; returns it when it is.
///
/// `what` (what was expected, for the message) is only built when there is one to write;
/// so with every `what` below.
fn expect_str<'v>(
    path: &Path<'_>,
    v: &'v Value,
    what: impl FnOnce() -> String,
    out: &mut Violations,
) -> Option<&'v str> {
    match v {
        Value::String(s) => Some(s),
        other => {
            wrong_type(path, other, what, out);
            None
        }
    }
}

/// Reports `v`, which is not of the expected type: `null` or `type`.
fn wrong_type(path: &Path<'_>, v: &Value, what: impl FnOnce() -> String, out: &mut Violations) {
    let what = what();
    match v {
        Value::Null => out.push(
            path,
            ViolationCode::Null,
            format!("null is not allowed; expected {what}"),
        ),
        other => out.push(
            path,
            ViolationCode::Type,
            format!("expected {what}, found {}", describe(other)),
        ),
    }
}

/// Reports `null` or `type` unless `v` is an object; returns it when it is.
fn expect_object<'v>(
    path: &Path<'_>,
    v: &'v Value,
    what: &str,
    out: &mut Violations,
) -> Option<&'v Map<String, Value>> {
    match v {
        Value::Object(o) => Some(o),
        other => {
            wrong_type(path, other, || what.to_owned(), out);
            None
        }
    }
}

/// An integer is a JSON number with no fraction and no exponent.
enum IntegerValue {
    Fits(i64),
    /// Written as an integer but beyond 64-bit range.
    Huge,
}

fn expect_integer(
    path: &Path<'_>,
    v: &Value,
    what: impl FnOnce() -> String,
    out: &mut Violations,
) -> Option<IntegerValue> {
    match v {
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                Some(IntegerValue::Fits(i))
            } else if n.is_u64() {
                Some(IntegerValue::Huge)
            } else {
                // serde_json reads any number with a fraction or an exponent (and any
                // integer beyond 64 bits) as a float: none of them is an integer here.
                out.push(
                    path,
                    ViolationCode::Type,
                    format!(
                        "expected {} (a number without fraction or exponent), found number {n}",
                        what()
                    ),
                );
                None
            }
        }
        other => {
            wrong_type(path, other, what, out);
            None
        }
    }
}

fn check_action_type(
    path: &Path<'_>,
    v: &Value,
    catalogue: &Catalogue,
    out: &mut Violations,
) -> Option<String> {
    let what = || format!("one of {}", catalogue.action_list());
    let name = expect_str(path, v, || format!("a string, {}", what()), out)?;
    if catalogue.action(name).is_some() {
        Some(name.to_owned())
    } else {
        out.push(
            path,
            ViolationCode::Enum,
            format!(
                "unknown action type {}; expected {} (catalogue {})",
                quote(name),
                what(),
                catalogue.version()
            ),
        );
        None
    }
}

fn check_parameters(
    path: &Path<'_>,
    v: &Value,
    action: Option<&ActionSpec>,
    out: &mut Violations,
) -> Option<Map<String, Value>> {
    let matrix = expect_object(path, v, "an object of the action's parameters", out)?;
    let before = out.0.len();
    for (key, value) in matrix {
        let p = path.key(key);
        let spec = action.and_then(|a| a.parameter(key));
        match (action, spec) {
            (Some(a), None) => out.push(
                &p,
                ViolationCode::Unknown,
                format!(
                    "unknown parameter {} for {}; its parameters are {}",
                    quote(key),
                    a.name,
                    a.parameter_names()
                ),
            ),
            (_, Some(spec)) => check_parameter(&p, value, spec, out),
            // Without a known action only the action-independent rule applies.
            (None, None) => {
                if value.is_null() {
                    out.push(
                        &p,
                        ViolationCode::Null,
                        "null is not allowed in parameterMatrix; omit an optional parameter instead"
                            .into(),
                    );
                }
            }
        }
    }
    if let Some(action) = action {
        for spec in action.parameters.iter().filter(|s| s.required) {
            if !matrix.contains_key(&spec.name) {
                out.push(
                    &path.key(&spec.name),
                    ViolationCode::Required,
                    format!(
                        "{} is required for {}; expected {}",
                        spec.name,
                        action.name,
                        describe_kind(&spec.kind)
                    ),
                );
            }
        }
        for group in &action.one_of {
            // A null member was already reported as `null`; it does not count as given.
            let given: Vec<&str> = group
                .iter()
                .filter(|n| matrix.get(n.as_str()).is_some_and(|v| !v.is_null()))
                .map(String::as_str)
                .collect();
            if given.len() != 1 {
                let found = if given.is_empty() {
                    "none was given".to_owned()
                } else {
                    format!("{} were given", given.join(" and "))
                };
                out.push(
                    path,
                    ViolationCode::OneOf,
                    format!(
                        "{} needs exactly one of {}; {found}",
                        action.name,
                        group.join(", ")
                    ),
                );
            }
        }
    }
    (out.0.len() == before).then(|| matrix.clone())
}

/// `a string of 1 to 1024 characters in BCP 47 form`, for messages.
fn describe_kind(kind: &ParamKind) -> String {
    match kind {
        ParamKind::String(rule) => describe_string_rule("a string", rule),
        ParamKind::Integer { min, max } => match (min, max) {
            (None, None) => "an integer".into(),
            _ => format!("an integer, {}", bounds(*min, *max)),
        },
        ParamKind::StringArray {
            min_items,
            max_items,
            item,
        } => {
            let count = match (min_items, max_items) {
                (None, None) => String::new(),
                _ => format!(" of {} items", bounds(*min_items, *max_items)),
            };
            format!(
                "an array{count}, each {}",
                describe_string_rule("a string", item)
            )
        }
    }
}

fn describe_string_rule(noun: &str, rule: &StringRule) -> String {
    let mut s = noun.to_owned();
    if rule.min_length.is_some() || rule.max_length.is_some() {
        s.push_str(&format!(
            " of {} characters",
            bounds(rule.min_length, rule.max_length)
        ));
    }
    if let Some(StringFormat::Bcp47) = rule.format {
        s.push_str(" that is a BCP 47 language tag (e.g. en-US)");
    }
    s
}

fn check_parameter(path: &Path<'_>, v: &Value, spec: &ParamSpec, out: &mut Violations) {
    let what = || describe_kind(&spec.kind);
    match &spec.kind {
        ParamKind::String(rule) => {
            if let Some(s) = expect_str(path, v, what, out) {
                check_string(path, s, rule, out);
            }
        }
        ParamKind::Integer { min, max } => match expect_integer(path, v, what, out) {
            Some(IntegerValue::Fits(i))
                if min.is_some_and(|lo| i < lo) || max.is_some_and(|hi| i > hi) =>
            {
                out.push(
                    path,
                    ViolationCode::Range,
                    format!(
                        "value {i} is out of bounds; expected {}",
                        bounds(*min, *max)
                    ),
                );
            }
            Some(IntegerValue::Huge) if max.is_some() => {
                out.push(
                    path,
                    ViolationCode::Range,
                    format!(
                        "value {v} is out of bounds; expected {}",
                        bounds(*min, *max)
                    ),
                );
            }
            _ => {}
        },
        ParamKind::StringArray {
            min_items,
            max_items,
            item,
        } => {
            let items = match v {
                Value::Array(items) => items,
                other => {
                    wrong_type(path, other, what, out);
                    return;
                }
            };
            if !within(items.len(), *min_items, *max_items) {
                out.push(
                    path,
                    ViolationCode::Range,
                    format!(
                        "{} items is out of bounds; expected {} items",
                        items.len(),
                        bounds(*min_items, *max_items)
                    ),
                );
            }
            for (i, element) in items.iter().enumerate() {
                let p = Path::Index(path, i);
                let item_what = || describe_string_rule("a string", item);
                if let Some(s) = expect_str(&p, element, item_what, out) {
                    check_string(&p, s, item, out);
                }
            }
        }
    }
}

fn check_string(path: &Path<'_>, s: &str, rule: &StringRule, out: &mut Violations) {
    let len = s.chars().count();
    if !within(len, rule.min_length, rule.max_length) {
        out.push(
            path,
            ViolationCode::Range,
            format!(
                "length {len} is out of bounds; expected {} characters",
                bounds(rule.min_length, rule.max_length)
            ),
        );
    }
    if rule.format == Some(StringFormat::Bcp47) && !is_bcp47(s) {
        out.push(
            path,
            ViolationCode::Format,
            format!(
                "{} is not a BCP 47 language tag; expected e.g. en, en-US, zh-Hant-TW (letters, then hyphen-separated parts of 2 to 8 letters or digits)",
                quote(s)
            ),
        );
    }
}

fn check_context(
    path: &Path<'_>,
    v: &Value,
    out: &mut Violations,
) -> Option<BTreeMap<String, String>> {
    let ctx = expect_object(
        path,
        v,
        "an object of strings with agentId, sessionId and interactionType",
        out,
    )?;
    let before = out.0.len();
    let mut kept = BTreeMap::new();
    for (key, value) in ctx {
        let p = path.key(key);
        let what = match key.as_str() {
            "agentId" => "a UUID string",
            "sessionId" => "a string of 1 to 128 characters",
            "interactionType" => "a string, one of voice, chat, email, message, callback, video",
            _ => "a string (executionContext holds strings only)",
        };
        let Some(s) = expect_str(&p, value, || what.to_owned(), out) else {
            continue;
        };
        match key.as_str() {
            "agentId" if parse_hyphenated_uuid(s).is_none() => {
                out.push(
                    &p,
                    ViolationCode::Format,
                    format!(
                        "{} is not a UUID; expected 8-4-4-4-12 hex digits, e.g. a1b2c3d4-e5f6-7890-abcd-ef1234567890",
                        quote(s)
                    ),
                );
            }
            "sessionId" => {
                let len = s.chars().count();
                let (lo, hi) = SESSION_ID_LENGTH;
                if !(lo..=hi).contains(&len) {
                    out.push(
                        &p,
                        ViolationCode::Range,
                        format!(
                            "length {len} is out of bounds; expected {} characters",
                            bounds(Some(lo), Some(hi))
                        ),
                    );
                }
            }
            "interactionType" if !INTERACTION_TYPES.contains(&s) => {
                out.push(
                    &p,
                    ViolationCode::Enum,
                    format!(
                        "unknown interaction type {}; expected one of {}",
                        quote(s),
                        INTERACTION_TYPES.join(", ")
                    ),
                );
            }
            _ => {}
        }
        kept.insert(key.clone(), s.to_owned());
    }
    for (key, what) in [
        ("agentId", "the agent's UUID"),
        ("sessionId", "a string of 1 to 128 characters"),
        (
            "interactionType",
            "one of voice, chat, email, message, callback, video",
        ),
    ] {
        if !ctx.contains_key(key) {
            out.push(
                &path.key(key),
                ViolationCode::Required,
                format!("executionContext.{key} is missing; expected {what}"),
            );
        }
    }
    (out.0.len() == before).then_some(kept)
}

fn check_correlation_id(path: &Path<'_>, v: &Value, out: &mut Violations) -> Option<Uuid> {
    let s = expect_str(path, v, || "a UUID version 4 string".to_owned(), out)?;
    let id = parse_uuid_v4(s);
    if id.is_none() {
        let found = if parse_hyphenated_uuid(s).is_some() {
            format!("{} is a UUID but not version 4", quote(s))
        } else {
            format!("{} is not a UUID", quote(s))
        };
        out.push(
            path,
            ViolationCode::Format,
            format!(
                "{found}; expected a UUID version 4 (xxxxxxxx-xxxx-4xxx-[89ab]xxx-xxxxxxxxxxxx, either case)"
            ),
        );
    }
    id
}

fn check_max_retries(path: &Path<'_>, v: &Value, out: &mut Violations) -> Option<u8> {
    let what = || format!("an integer from 0 to {MAX_RETRIES}");
    let n = expect_integer(path, v, what, out)?;
    let fits = match n {
        IntegerValue::Fits(i) => u8::try_from(i).ok().filter(|r| *r <= MAX_RETRIES),
        IntegerValue::Huge => None,
    };
    if fits.is_none() {
        out.push(
            path,
            ViolationCode::Range,
            format!("value {v} is out of bounds; expected {}", what()),
        );
    }
    fits
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pointer_tokens_are_escaped() {
        let a = Path::Root.key("a");
        assert_eq!(a.key("b/c~d").render(), "/a/b~1c~0d");
        assert_eq!(Path::Index(&a, 2).render(), "/a/2");
        assert_eq!(escape_pointer_token("~1"), "~01");
    }

    #[test]
    fn bcp47_shape() {
        for ok in ["en", "en-US", "zh-Hant-TW", "deu", "sr-Latn-RS", "es-419"] {
            assert!(is_bcp47(ok), "{ok}");
        }
        for bad in [
            "",
            "e",
            "engl",
            "en-",
            "en_US",
            "en-U",
            "en-abcdefghi",
            "-en",
            "en--US",
            "1n",
            "en-US\n",
        ] {
            assert!(!is_bcp47(bad), "{bad:?}");
        }
    }

    #[test]
    fn uuid_forms() {
        assert!(parse_hyphenated_uuid("A1B2C3D4-E5F6-7890-ABCD-EF1234567890").is_some());
        assert!(parse_hyphenated_uuid("a1b2c3d4e5f67890abcdef1234567890").is_none());
        assert!(parse_hyphenated_uuid("{a1b2c3d4-e5f6-7890-abcd-ef1234567890}").is_none());
        assert!(parse_uuid_v4("550E8400-E29B-41D4-A716-446655440000").is_some());
        assert!(parse_uuid_v4("550e8400-e29b-11d4-a716-446655440000").is_none());
        assert!(parse_uuid_v4("550e8400-e29b-41d4-c716-446655440000").is_none());
    }
}
