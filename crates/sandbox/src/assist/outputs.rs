//! Plausible, deterministic outputs of a completed action (PROTOCOL.md section 3.3): the
//! same parameters always give the same output, so tests and demos can compare runs.

use serde_json::{Map, Value, json};

use crate::faults::draw;

/// The `output` of a completed `result` for `action_type` run with `params`.
pub(crate) fn output(action_type: &str, params: &Map<String, Value>) -> Value {
    match action_type {
        "knowledge_search" => knowledge_search(params),
        "document_extraction" => document_extraction(params),
        "sentiment_analysis" => sentiment_analysis(params),
        // An action an operator added to the catalogue: the engine has no model for it,
        // so it answers with what it was asked, which is still useful for a demo.
        _ => json!({ "parameters": params }),
    }
}

fn str_param<'a>(params: &'a Map<String, Value>, name: &str) -> &'a str {
    params.get(name).and_then(Value::as_str).unwrap_or("")
}

/// A repeatable 64-bit number from a salt and an input.
fn hash(salt: &str, input: &str) -> u64 {
    (draw(0, salt, input) * (1u64 << 53) as f64) as u64
}

const TITLE_FORMS: [&str; 6] = [
    "{}",
    "{}: frequently asked questions",
    "Troubleshooting {}",
    "{}: policy details",
    "How agents handle {}",
    "{}: step-by-step guide",
];

fn knowledge_search(params: &Map<String, Value>) -> Value {
    let query = str_param(params, "query").trim();
    let count = params
        .get("maxResults")
        .and_then(Value::as_u64)
        .unwrap_or(3)
        .clamp(1, 50) as usize;
    // Titles quote at most 60 characters of the query, cut on a character boundary.
    let topic: String = query.chars().take(60).collect();
    let topic = if topic.is_empty() {
        "general enquiries".to_owned()
    } else {
        topic
    };
    let mut score = 0.97 - (hash("kb_score", query) % 8) as f64 / 100.0;
    let articles: Vec<Value> = (0..count)
        .map(|i| {
            let form = TITLE_FORMS[i % TITLE_FORMS.len()];
            let mut title = form.replacen("{}", &topic, 1);
            if i >= TITLE_FORMS.len() {
                title.push_str(&format!(" (part {})", i / TITLE_FORMS.len() + 1));
            }
            if let Some(first) = title.chars().next() {
                title = first.to_uppercase().chain(title.chars().skip(1)).collect();
            }
            let id = format!(
                "KB-{:06}",
                hash("kb_id", &format!("{query}\u{0}{i}")) % 1_000_000
            );
            let this = (score * 100.0).round() / 100.0;
            score = (score - 0.03 - (hash("kb_step", &id) % 5) as f64 / 100.0).max(0.01);
            json!({"id": id, "title": title, "score": this})
        })
        .collect();
    json!({ "articles": articles })
}

const DEFAULT_FIELDS: [&str; 3] = ["documentType", "date", "total"];
const NAMES: [&str; 6] = [
    "Alex Morgan",
    "Sam Patel",
    "Jordan Lee",
    "Maria Garcia",
    "Chen Wei",
    "Fatima Okafor",
];
const DOCUMENT_TYPES: [&str; 4] = ["invoice", "contract", "receipt", "claim form"];

fn document_extraction(params: &Map<String, Value>) -> Value {
    let document = str_param(params, "documentId");
    let requested: Vec<&str> = match params.get("fields").and_then(Value::as_array) {
        Some(list) => list.iter().filter_map(Value::as_str).collect(),
        None => DEFAULT_FIELDS.to_vec(),
    };
    let mut fields = Map::new();
    for name in requested {
        let h = hash("doc_field", &format!("{document}\u{0}{name}"));
        fields.insert(
            name.to_owned(),
            Value::String(field_value(name, document, h)),
        );
    }
    json!({ "fields": fields })
}

/// A value that looks like what a field of this name usually holds.
fn field_value(name: &str, document: &str, h: u64) -> String {
    let n = name.to_ascii_lowercase();
    let has = |words: &[&str]| words.iter().any(|w| n.contains(w));
    if has(&["date", "time"]) {
        format!("2026-{:02}-{:02}", h % 12 + 1, (h / 12) % 28 + 1)
    } else if has(&["amount", "total", "price", "balance", "sum"]) {
        format!("{}.{:02}", 10 + h % 9_990, (h / 10_000) % 100)
    } else if has(&["email"]) {
        let person = NAMES[(h % NAMES.len() as u64) as usize];
        format!(
            "{}@example.com",
            person.to_ascii_lowercase().replace(' ', ".")
        )
    } else if has(&["phone"]) {
        format!("+1-555-01{:02}", h % 100)
    } else if has(&["name", "customer", "party", "signer"]) {
        NAMES[(h % NAMES.len() as u64) as usize].to_owned()
    } else if has(&["type", "kind", "category"]) {
        DOCUMENT_TYPES[(h % DOCUMENT_TYPES.len() as u64) as usize].to_owned()
    } else if has(&["address"]) {
        format!("{} Market Street, Springfield", 1 + h % 400)
    } else if has(&["id", "number", "reference"]) {
        format!("REF-{:06}", h % 1_000_000)
    } else {
        format!("{name} of {document}")
    }
}

const POSITIVE: [&str; 22] = [
    "good",
    "great",
    "excellent",
    "happy",
    "thanks",
    "thank",
    "love",
    "perfect",
    "helpful",
    "resolved",
    "satisfied",
    "awesome",
    "amazing",
    "pleased",
    "wonderful",
    "fantastic",
    "appreciate",
    "glad",
    "nice",
    "easy",
    "quick",
    "solved",
];
const NEGATIVE: [&str; 22] = [
    "bad",
    "terrible",
    "awful",
    "angry",
    "upset",
    "hate",
    "broken",
    "cancel",
    "problem",
    "issue",
    "slow",
    "worst",
    "disappointed",
    "frustrated",
    "complaint",
    "poor",
    "useless",
    "wrong",
    "unacceptable",
    "annoyed",
    "refund",
    "failed",
];

fn sentiment_analysis(params: &Map<String, Value>) -> Value {
    let score = match params.get("text").and_then(Value::as_str) {
        Some(text) => {
            let (mut pos, mut neg) = (0i64, 0i64);
            for word in text
                .split(|c: char| !c.is_alphanumeric() && c != '\'')
                .filter(|w| !w.is_empty())
            {
                let w = word.to_lowercase();
                if POSITIVE.contains(&w.as_str()) {
                    pos += 1;
                } else if NEGATIVE.contains(&w.as_str()) {
                    neg += 1;
                }
            }
            if pos + neg == 0 {
                0.0
            } else {
                (pos - neg) as f64 / (pos + neg) as f64
            }
        }
        // A transcript the sandbox cannot read: a repeatable score from its id.
        None => draw(0, "sentiment", str_param(params, "transcriptId")) * 2.0 - 1.0,
    };
    let score = (score * 100.0).round() / 100.0;
    let sentiment = if score > 0.2 {
        "positive"
    } else if score < -0.2 {
        "negative"
    } else {
        "neutral"
    };
    json!({"sentiment": sentiment, "score": score})
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => Map::new(),
        }
    }

    #[test]
    fn knowledge_search_is_deterministic_ranked_and_sized() {
        let p = params(json!({"query": "refund policy for enterprise accounts", "maxResults": 8}));
        let out = output("knowledge_search", &p);
        assert_eq!(out, output("knowledge_search", &p));
        let articles = out["articles"].as_array().unwrap();
        assert_eq!(articles.len(), 8);
        let scores: Vec<f64> = articles
            .iter()
            .map(|a| a["score"].as_f64().unwrap())
            .collect();
        assert!(scores.windows(2).all(|w| w[0] >= w[1]), "{scores:?}");
        assert!(scores.iter().all(|s| (0.0..=1.0).contains(s)));
        assert!(
            articles[0]["title"]
                .as_str()
                .unwrap()
                .contains("efund policy")
        );
        assert!(articles[0]["id"].as_str().unwrap().starts_with("KB-"));
        let default = output("knowledge_search", &params(json!({"query": "x"})));
        assert_eq!(default["articles"].as_array().unwrap().len(), 3);
    }

    #[test]
    fn document_extraction_echoes_requested_fields() {
        let p = params(
            json!({"documentId": "doc-1", "fields": ["invoiceDate", "totalAmount", "customerName", "colour"]}),
        );
        let fields = &output("document_extraction", &p)["fields"];
        assert_eq!(fields.as_object().unwrap().len(), 4);
        assert!(fields["invoiceDate"].as_str().unwrap().starts_with("2026-"));
        assert!(fields["totalAmount"].as_str().unwrap().contains('.'));
        assert_eq!(fields["colour"], "colour of doc-1");
        let default = output("document_extraction", &params(json!({"documentId": "d"})));
        assert_eq!(default["fields"].as_object().unwrap().len(), 3);
    }

    #[test]
    fn sentiment_follows_the_word_lists() {
        let s = |text: &str| output("sentiment_analysis", &params(json!({"text": text})));
        assert_eq!(
            s("Thanks, that was great and helpful")["sentiment"],
            "positive"
        );
        assert_eq!(s("This is terrible, I am angry")["sentiment"], "negative");
        assert_eq!(s("I called about my account")["sentiment"], "neutral");
        assert_eq!(s("I called about my account")["score"], 0.0);
        let t = output(
            "sentiment_analysis",
            &params(json!({"transcriptId": "t-1"})),
        );
        let score = t["score"].as_f64().unwrap();
        assert!((-1.0..=1.0).contains(&score));
        assert_eq!(
            t,
            output(
                "sentiment_analysis",
                &params(json!({"transcriptId": "t-1"}))
            )
        );
    }

    #[test]
    fn unknown_actions_echo_their_parameters() {
        let p = params(json!({"a": 1}));
        assert_eq!(output("custom", &p), json!({"parameters": {"a": 1}}));
    }
}
