//! The demo's batch of triggers: realistic payloads of all three catalogue actions, drawn
//! from a seed (same seed, same batch, same correlationIds), with a few deliberately
//! invalid ones at seeded places.
//!
//! Every trigger goes through the protocol validator exactly as a file would: the invalid
//! ones come back with every violation, the valid ones as typed payloads.

use gcx_protocol::{ActionTriggerPayload, Catalogue, Violation};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};
use uuid::Uuid;

/// Every valid trigger gets this re-send budget: the demo's faults (a 429 now and then,
/// one dropped connection) must never exhaust it, so every valid trigger can complete.
const MAX_RETRIES: u8 = 3;

/// One generated trigger that failed validation.
#[derive(Debug, Clone)]
pub struct InvalidTrigger {
    /// 1-based position in the batch (like a line number of a trigger file).
    pub position: usize,
    /// What was wrong with it on purpose, for the summary.
    pub defect: &'static str,
    pub violations: Vec<Violation>,
}

/// A generated batch, validated.
#[derive(Debug, Clone, Default)]
pub struct Batch {
    pub valid: Vec<ActionTriggerPayload>,
    pub invalid: Vec<InvalidTrigger>,
}

impl Batch {
    /// Valid triggers per action type, in catalogue order.
    pub fn by_action(&self) -> Vec<(String, u64)> {
        let mut counts: Vec<(String, u64)> = Vec::new();
        for t in &self.valid {
            match counts.iter_mut().find(|(a, _)| *a == t.action_type) {
                Some((_, n)) => *n += 1,
                None => counts.push((t.action_type.clone(), 1)),
            }
        }
        counts.sort();
        counts
    }
}

/// How many of `total` triggers are invalid on purpose: a few, at most one per kind.
pub fn invalid_count(total: usize) -> usize {
    match total {
        0..=20 => 0,
        21..=999 => 3,
        _ => INVALID_KINDS.len(),
    }
}

/// `total` triggers (a few of them invalid, see [`invalid_count`]) drawn from `seed`,
/// validated against `catalogue`.
pub fn generate(total: usize, seed: u64, catalogue: &Catalogue) -> Batch {
    generate_with_invalid(total, invalid_count(total), seed, catalogue)
}

/// `total` valid triggers drawn from `seed` (benchmarks).
pub fn generate_valid(total: usize, seed: u64, catalogue: &Catalogue) -> Vec<ActionTriggerPayload> {
    generate_with_invalid(total, 0, seed, catalogue).valid
}

fn generate_with_invalid(total: usize, invalid: usize, seed: u64, catalogue: &Catalogue) -> Batch {
    let mut rng = StdRng::seed_from_u64(seed);
    let agents: Vec<Uuid> = (0..40).map(|_| uuid_v4(&mut rng)).collect();
    let mut positions: Vec<usize> = (0..total).collect();
    positions.shuffle(&mut rng);
    let mut invalid_at: Vec<usize> = positions.into_iter().take(invalid).collect();
    invalid_at.sort_unstable();

    let mut batch = Batch::default();
    let mut next_invalid = 0;
    for i in 0..total {
        let agent = agents[rng.gen_range(0..agents.len())];
        let mut value = valid_value(&mut rng, agent, i);
        let defect = if invalid_at.get(next_invalid) == Some(&i) {
            let kind = &INVALID_KINDS[next_invalid % INVALID_KINDS.len()];
            next_invalid += 1;
            (kind.spoil)(&mut value);
            Some(kind.defect)
        } else {
            None
        };
        match gcx_protocol::validate::validate_trigger(&value, catalogue) {
            Ok(payload) => batch.valid.push(payload),
            Err(violations) => batch.invalid.push(InvalidTrigger {
                position: i + 1,
                defect: defect.unwrap_or("generated as valid, refused by the validator"),
                violations,
            }),
        }
    }
    batch
}

/// A UUID v4 from the seeded stream (so correlationIds repeat with the seed, and with
/// them the sandbox's seeded fault draws).
fn uuid_v4(rng: &mut StdRng) -> Uuid {
    uuid::Builder::from_random_bytes(rng.r#gen()).into_uuid()
}

const QUERIES: [&str; 8] = [
    "refund policy for enterprise accounts",
    "how to reset a customer's two-factor authentication",
    "shipping times to Canada",
    "cancel subscription without penalty",
    "warranty terms for refurbished devices",
    "upgrade path from basic to premium plan",
    "data retention policy for call recordings",
    "escalation procedure for billing disputes",
];
const LANGUAGES: [&str; 5] = ["en-US", "en-GB", "de-DE", "fr-FR", "es-ES"];
const FIELDS: [&str; 6] = [
    "invoiceNumber",
    "totalAmount",
    "dueDate",
    "customerName",
    "accountId",
    "currency",
];
const SNIPPETS: [&str; 6] = [
    "I have been waiting for three weeks and nobody has called me back.",
    "Thanks, that fixed it right away, you have been very helpful.",
    "Can you tell me when the technician is coming?",
    "This is the third time I am calling about the same invoice.",
    "Great, the new plan works fine for our team.",
    "I would like to know what my options are.",
];

fn valid_value(rng: &mut StdRng, agent: Uuid, i: usize) -> Value {
    let language = LANGUAGES[rng.gen_range(0..LANGUAGES.len())];
    let (action, parameters) = match rng.gen_range(0..10) {
        // Knowledge search is the common case.
        0..=4 => (
            "knowledge_search",
            json!({
                "query": QUERIES[rng.gen_range(0..QUERIES.len())],
                "languageCode": language,
                "maxResults": rng.gen_range(1..=10),
            }),
        ),
        5..=6 => {
            let mut fields: Vec<&str> = FIELDS.to_vec();
            fields.shuffle(rng);
            fields.truncate(rng.gen_range(1..=4));
            (
                "document_extraction",
                json!({
                    "documentId": format!("doc-{:06}", rng.gen_range(0..1_000_000)),
                    "fields": fields,
                    "languageCode": language,
                }),
            )
        }
        _ => {
            // Exactly one of text and transcriptId (the catalogue's one_of rule).
            let parameters = if rng.gen_bool(0.5) {
                json!({"text": SNIPPETS[rng.gen_range(0..SNIPPETS.len())], "languageCode": language})
            } else {
                json!({"transcriptId": format!("transcript-{:08x}", rng.r#gen::<u32>())})
            };
            ("sentiment_analysis", parameters)
        }
    };
    let interaction = gcx_protocol::assist::INTERACTION_TYPES
        [rng.gen_range(0..gcx_protocol::assist::INTERACTION_TYPES.len())];
    json!({
        "actionType": action,
        "parameterMatrix": parameters,
        "executionContext": {
            "agentId": agent.to_string(),
            "sessionId": format!("session-{:06}", i / 3),
            "interactionType": interaction,
        },
        "correlationId": uuid_v4(rng).to_string(),
        "maxRetries": MAX_RETRIES,
    })
}

/// A way to spoil a valid trigger, and what it is in words.
struct InvalidKind {
    defect: &'static str,
    spoil: fn(&mut Value),
}

/// The defects a newcomer recognises: each breaks different rules of PROTOCOL.md 3.5.
const INVALID_KINDS: [InvalidKind; 6] = [
    InvalidKind {
        defect: "unknown action type",
        spoil: |v| v["actionType"] = json!("translate_text"),
    },
    InvalidKind {
        defect: "correlationId not a UUID, maxRetries too high",
        spoil: |v| {
            v["correlationId"] = json!("order-12345");
            v["maxRetries"] = json!(7);
        },
    },
    InvalidKind {
        defect: "empty query, language not BCP 47",
        spoil: |v| {
            v["actionType"] = json!("knowledge_search");
            v["parameterMatrix"] = json!({"query": "", "languageCode": "english"});
        },
    },
    InvalidKind {
        defect: "sentiment with both text and transcriptId",
        spoil: |v| {
            v["actionType"] = json!("sentiment_analysis");
            v["parameterMatrix"] = json!({"text": "Thanks!", "transcriptId": "transcript-1"});
        },
    },
    InvalidKind {
        defect: "no agentId, unknown interaction type",
        spoil: |v| {
            v["executionContext"] = json!({"sessionId": "session-x", "interactionType": "fax"});
        },
    },
    InvalidKind {
        defect: "unknown parameter, null value",
        spoil: |v| {
            v["actionType"] = json!("document_extraction");
            v["parameterMatrix"] = json!({"documentId": null, "pages": 3});
        },
    },
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_batch() {
        let c = Catalogue::builtin();
        let a = generate(500, 7, &c);
        let b = generate(500, 7, &c);
        assert_eq!(a.valid, b.valid);
        assert_ne!(a.valid, generate(500, 8, &c).valid);
    }

    #[test]
    fn a_few_invalid_each_with_violations_and_all_actions_present() {
        let c = Catalogue::builtin();
        for total in [21, 300, 5000] {
            let batch = generate(total, 1, &c);
            assert_eq!(batch.invalid.len(), invalid_count(total), "{total}");
            assert_eq!(batch.valid.len() + batch.invalid.len(), total);
            for t in &batch.invalid {
                assert!(!t.violations.is_empty());
                assert!(!t.defect.starts_with("generated as valid"), "{t:?}");
            }
            let actions: Vec<String> = batch.by_action().into_iter().map(|(a, _)| a).collect();
            assert_eq!(
                actions,
                [
                    "document_extraction",
                    "knowledge_search",
                    "sentiment_analysis"
                ]
            );
            assert!(batch.valid.iter().all(|t| t.max_retries == MAX_RETRIES));
        }
    }

    #[test]
    fn every_invalid_kind_breaks_more_than_one_rule_or_a_clear_one() {
        let c = Catalogue::builtin();
        let batch = generate(5000, 3, &c);
        let codes: Vec<Vec<&str>> = batch
            .invalid
            .iter()
            .map(|t| t.violations.iter().map(|v| v.code.as_str()).collect())
            .collect();
        assert_eq!(codes.len(), 6);
        assert!(codes.iter().flatten().any(|c| *c == "one_of"), "{codes:?}");
        assert!(codes.iter().flatten().any(|c| *c == "enum"), "{codes:?}");
        assert!(codes.iter().flatten().any(|c| *c == "format"), "{codes:?}");
    }
}
