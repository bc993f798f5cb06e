//! The schemas of a trigger as the action catalogue defines it (PROTOCOL.md 3.4, 3.5):
//! `TriggerPayload` is a `oneOf` discriminated by `actionType`, one object per action with
//! its parameters' types, bounds, formats, required ones and one-of groups; around it the
//! rules every trigger shares (`ExecutionContext`, `CorrelationId`) and `TriggerRequest`
//! (one trigger, or an array of 1 to `serve.max_batch`). They come from the same
//! catalogue and constants the validator reads, so a request the schema admits is one
//! the validator accepts, and the other way round.
//!
//! Two rules of the protocol have no JSON Schema keyword, so the descriptions state them:
//! an integer is written without fraction or exponent (`2.0` is refused, where JSON
//! Schema counts it an integer), and an item is at most 64 KiB as compact JSON.

use gcx_protocol::assist::{INTERACTION_TYPES, MAX_MESSAGE_BYTES};
use gcx_protocol::catalogue::{ActionSpec, ParamKind, ParamSpec, StringFormat, StringRule};
use gcx_protocol::validate::{MAX_RETRIES, SESSION_ID_LENGTH};
use gcx_protocol::{Catalogue, validate};
use serde_json::{Map, Value, json};

/// A UUID as 8-4-4-4-12 hex digits, either case, any version.
pub const UUID_PATTERN: &str =
    "^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$";
/// A UUID of version 4 (RFC 9562 variant), either case.
pub const UUID_V4_PATTERN: &str =
    "^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-4[0-9a-fA-F]{3}-[89abAB][0-9a-fA-F]{3}-[0-9a-fA-F]{12}$";
/// A BCP 47 tag as section 3.5 defines it ([`validate::is_bcp47`]).
pub const BCP47_PATTERN: &str = "^[A-Za-z]{2,3}(-[A-Za-z0-9]{2,8})*$";

/// What an integer is on the wire, for descriptions.
const INTEGER_SPELLING: &str = "Written without fraction or exponent (`2.0` is refused).";

/// Every component these rules define, by name, for `components.schemas`.
pub fn components(catalogue: &Catalogue, max_batch: usize) -> Vec<(String, Value)> {
    let mut out = Vec::new();
    let mut mapping = Map::new();
    let mut branches = Vec::new();
    for action in catalogue.actions() {
        let base = component_base(&action.name, &out);
        let trigger = format!("{base}Trigger");
        let parameters = format!("{base}Parameters");
        mapping.insert(action.name.clone(), json!(reference(&trigger)));
        branches.push(json!({"$ref": reference(&trigger)}));
        out.push((trigger, action_trigger(action, &parameters)));
        out.push((parameters, parameter_matrix(action)));
    }
    out.push((
        "TriggerPayload".into(),
        json!({
            "description": format!(
                "An ActionTriggerPayload (PROTOCOL.md 3.4), its parameters as `actionType`'s action in catalogue {} defines them (3.5). At most {MAX_MESSAGE_BYTES} bytes as compact JSON.",
                catalogue.version()
            ),
            "oneOf": branches,
            "discriminator": {"propertyName": "actionType", "mapping": mapping},
        }),
    ));
    out.push((
        "TriggerRequest".into(),
        json!({
            "description": "One trigger, or an array of them (at most serve.max_batch).",
            "oneOf": [
                {"$ref": reference("TriggerPayload")},
                {
                    "type": "array",
                    "items": {"$ref": reference("TriggerPayload")},
                    "minItems": 1,
                    "maxItems": max_batch,
                },
            ],
        }),
    ));
    out.push(("ExecutionContext".into(), execution_context()));
    out.push((
        "InteractionType".into(),
        json!({"type": "string", "enum": INTERACTION_TYPES}),
    ));
    out.push((
        "CorrelationId".into(),
        json!({
            "type": "string",
            "format": "uuid",
            "pattern": UUID_V4_PATTERN,
            "description": "UUID version 4, either case; the trigger's idempotency key.",
            "example": "550e8400-e29b-41d4-a716-446655440000",
        }),
    ));
    out
}

fn reference(name: &str) -> String {
    format!("#/components/schemas/{name}")
}

/// `knowledge_search` -> `KnowledgeSearch`: the action's name in PascalCase, from its
/// letters and digits only (component names allow no more), made unique among `taken`.
fn component_base(action: &str, taken: &[(String, Value)]) -> String {
    let mut base: String = action
        .split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|part| !part.is_empty())
        .map(|part| {
            let mut chars = part.chars();
            chars
                .next()
                .map(|first| first.to_ascii_uppercase().to_string() + chars.as_str())
                .unwrap_or_default()
        })
        .collect();
    if base.is_empty() {
        base = "Action".into();
    }
    let free = |b: &str| !taken.iter().any(|(n, _)| *n == format!("{b}Trigger"));
    if free(&base) {
        return base;
    }
    (2..)
        .map(|n| format!("{base}{n}"))
        .find(|b| free(b))
        .unwrap_or(base)
}

fn action_trigger(action: &ActionSpec, parameters: &str) -> Value {
    let mut description = format!("A `{}` trigger", action.name);
    if let Some(what) = &action.description {
        description.push_str(": ");
        description.push_str(what);
    }
    description.push('.');
    json!({
        "type": "object",
        "description": description,
        "required": &validate::TOP_LEVEL_KEYS[..4],
        "properties": {
            "actionType": {"type": "string", "const": action.name},
            "parameterMatrix": {"$ref": reference(parameters)},
            "executionContext": {"$ref": reference("ExecutionContext")},
            "correlationId": {"$ref": reference("CorrelationId")},
            "maxRetries": {
                "type": "integer",
                "minimum": 0,
                "maximum": MAX_RETRIES,
                "description": format!("Re-sends after a retryable refusal (absent means 0). {INTEGER_SPELLING}"),
            },
        },
        "additionalProperties": false,
    })
}

/// The action's `parameterMatrix`: its parameters and no other key, no nulls, the
/// required ones, and exactly one parameter of each one-of group.
fn parameter_matrix(action: &ActionSpec) -> Value {
    let properties: Map<String, Value> = action
        .parameters
        .iter()
        .map(|p| (p.name.clone(), parameter(p)))
        .collect();
    let required: Vec<&str> = action
        .parameters
        .iter()
        .filter(|p| p.required)
        .map(|p| p.name.as_str())
        .collect();
    let mut schema = json!({
        "type": "object",
        "description": format!("The parameters of `{}`: {}.", action.name, action.parameter_names()),
        "properties": properties,
        "additionalProperties": false,
    });
    if !required.is_empty() {
        schema["required"] = json!(required);
    }
    let groups: Vec<Value> = action
        .one_of
        .iter()
        .map(|group| {
            let one_each: Vec<Value> = group.iter().map(|n| json!({"required": [n]})).collect();
            json!({"oneOf": one_each})
        })
        .collect();
    match groups.len() {
        0 => {}
        1 => schema["oneOf"] = groups[0]["oneOf"].clone(),
        _ => schema["allOf"] = json!(groups),
    }
    schema
}

fn parameter(spec: &ParamSpec) -> Value {
    let mut schema = match &spec.kind {
        ParamKind::String(rule) => string(rule),
        ParamKind::Integer { min, max } => {
            // Beyond these the number is no 64-bit integer, and the validator refuses it.
            let minimum = min.unwrap_or(i64::MIN);
            let maximum = max.map_or(json!(u64::MAX), |m| json!(m));
            json!({"type": "integer", "minimum": minimum, "maximum": maximum})
        }
        ParamKind::StringArray {
            min_items,
            max_items,
            item,
        } => {
            let mut schema = json!({"type": "array", "items": string(item)});
            if let Some(n) = min_items {
                schema["minItems"] = json!(n);
            }
            if let Some(n) = max_items {
                schema["maxItems"] = json!(n);
            }
            schema
        }
    };
    let mut description = spec.description.clone().unwrap_or_default();
    if matches!(spec.kind, ParamKind::Integer { .. }) {
        if !description.is_empty() {
            description.push(' ');
        }
        description.push_str(INTEGER_SPELLING);
    }
    if !description.is_empty() {
        schema["description"] = json!(description);
    }
    schema
}

/// A string rule; lengths count Unicode scalar values, as JSON Schema's do.
fn string(rule: &StringRule) -> Value {
    let mut schema = json!({"type": "string"});
    if let Some(n) = rule.min_length {
        schema["minLength"] = json!(n);
    }
    if let Some(n) = rule.max_length {
        schema["maxLength"] = json!(n);
    }
    match rule.format {
        Some(StringFormat::Bcp47) => schema["pattern"] = json!(BCP47_PATTERN),
        None => {}
    }
    schema
}

fn execution_context() -> Value {
    let (shortest, longest) = SESSION_ID_LENGTH;
    json!({
        "type": "object",
        "description": "Who triggered the action and in which interaction; other keys pass through as strings.",
        "required": ["agentId", "sessionId", "interactionType"],
        "properties": {
            "agentId": {
                "type": "string",
                "format": "uuid",
                "pattern": UUID_PATTERN,
                "description": "UUID of any version, either case.",
            },
            "sessionId": {"type": "string", "minLength": shortest, "maxLength": longest},
            "interactionType": {"$ref": reference("InteractionType")},
        },
        "additionalProperties": {"type": "string"},
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schema_of<'a>(components: &'a [(String, Value)], name: &str) -> &'a Value {
        &components
            .iter()
            .find(|(n, _)| n == name)
            .unwrap_or_else(|| panic!("no {name}"))
            .1
    }

    #[test]
    fn each_action_is_a_branch_chosen_by_action_type() {
        let c = components(&Catalogue::builtin(), 500);
        let payload = schema_of(&c, "TriggerPayload");
        assert_eq!(
            payload["discriminator"]["mapping"],
            json!({
                "knowledge_search": "#/components/schemas/KnowledgeSearchTrigger",
                "document_extraction": "#/components/schemas/DocumentExtractionTrigger",
                "sentiment_analysis": "#/components/schemas/SentimentAnalysisTrigger",
            })
        );
        assert_eq!(payload["oneOf"].as_array().map(Vec::len), Some(3));
        let search = schema_of(&c, "KnowledgeSearchParameters");
        assert_eq!(search["required"], json!(["query"]));
        assert_eq!(
            search["properties"]["query"],
            json!({"type": "string", "minLength": 1, "maxLength": 1024})
        );
        assert_eq!(
            search["properties"]["languageCode"]["pattern"],
            BCP47_PATTERN
        );
        assert_eq!(search["additionalProperties"], false);
        let sentiment = schema_of(&c, "SentimentAnalysisParameters");
        assert_eq!(
            sentiment["oneOf"],
            json!([{"required": ["text"]}, {"required": ["transcriptId"]}])
        );
        assert_eq!(sentiment.get("required"), None);
        assert_eq!(schema_of(&c, "TriggerRequest")["oneOf"][1]["maxItems"], 500);
    }

    #[test]
    fn the_patterns_agree_with_the_validator() {
        let cases = [
            ("en", true),
            ("zh-Hant-TW", true),
            ("es-419", true),
            ("e", false),
            ("en-", false),
            ("en_US", false),
            ("en-abcdefghi", false),
        ];
        let bcp47 = matcher(BCP47_PATTERN);
        for (tag, ok) in cases {
            assert_eq!(validate::is_bcp47(tag), ok, "{tag}");
            assert_eq!(bcp47(tag), ok, "{tag}");
        }
        let v4 = matcher(UUID_V4_PATTERN);
        let any = matcher(UUID_PATTERN);
        for (id, is_v4) in [
            ("550E8400-E29B-41D4-A716-446655440000", true),
            ("550e8400-e29b-11d4-a716-446655440000", false),
            ("550e8400-e29b-41d4-c716-446655440000", false),
        ] {
            assert_eq!(validate::parse_uuid_v4(id).is_some(), is_v4, "{id}");
            assert_eq!(v4(id), is_v4, "{id}");
            assert!(any(id) && validate::parse_hyphenated_uuid(id).is_some());
        }
        assert!(!any("550e8400e29b41d4a716446655440000"));
    }

    #[test]
    fn a_name_outside_the_component_alphabet_is_spelled_from_its_letters() {
        assert_eq!(component_base("knowledge_search", &[]), "KnowledgeSearch");
        assert_eq!(component_base("a.b-c", &[]), "ABC");
        assert_eq!(component_base("--", &[]), "Action");
        let taken = vec![("KnowledgeSearchTrigger".to_owned(), Value::Null)];
        assert_eq!(
            component_base("knowledge-search", &taken),
            "KnowledgeSearch2"
        );
    }

    fn matcher(pattern: &str) -> impl Fn(&str) -> bool {
        let re = regex::Regex::new(pattern).unwrap();
        move |s: &str| re.is_match(s)
    }
}
