//! The control API (PROTOCOL.md section 7): `/sandbox/stats`, its reset, `/sandbox/faults`.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};

use crate::AppState;
use crate::faults::Faults;

pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/sandbox/stats", get(stats))
        .route("/sandbox/stats/reset", post(reset))
        .route("/sandbox/faults", get(get_faults).put(put_faults))
}

async fn stats(State(state): State<Arc<AppState>>) -> axum::Json<Value> {
    axum::Json(state.stats.to_json())
}

async fn reset(State(state): State<Arc<AppState>>) -> axum::Json<Value> {
    state.stats.reset();
    axum::Json(state.stats.to_json())
}

async fn get_faults(State(state): State<Arc<AppState>>) -> axum::Json<Faults> {
    axum::Json(state.faults.read().clone())
}

/// Takes any subset of the settings: merged over the current ones, checked whole, applied
/// at once (live connections included) or refused with every reason (unknown keys, values
/// of the wrong type, values out of range), in which case nothing changes.
async fn put_faults(State(state): State<Arc<AppState>>, body: axum::body::Bytes) -> Response {
    let current = state.faults.read().clone();
    match merged_faults(&current, &body) {
        Ok(faults) => {
            state.set_faults(faults.clone());
            axum::Json(faults).into_response()
        }
        Err(errors) => (
            StatusCode::BAD_REQUEST,
            axum::Json(json!({"errors": errors})),
        )
            .into_response(),
    }
}

/// `patch` (a JSON object of settings) over `current`, or every reason it cannot apply.
fn merged_faults(current: &Faults, patch: &[u8]) -> Result<Faults, Vec<String>> {
    let patch = match serde_json::from_slice::<Value>(patch) {
        Ok(Value::Object(map)) => map,
        Ok(_) => {
            return Err(vec![
                "the body must be a JSON object of fault settings".into(),
            ]);
        }
        Err(e) => return Err(vec![format!("the body is not JSON: {e}")]),
    };
    let Value::Object(base) = serde_json::to_value(current)
        .map_err(|e| vec![format!("cannot read the current settings: {e}")])?
    else {
        return Err(vec!["the current settings are not an object".into()]);
    };
    let mut errors = Vec::new();
    let mut merged = base.clone();
    for (key, value) in patch {
        if !base.contains_key(&key) {
            let known: Vec<&str> = base.keys().map(String::as_str).collect();
            errors.push(format!(
                "{key}: not a fault setting (known: {})",
                known.join(", ")
            ));
            continue;
        }
        // Each key on its own over the current settings, so a type error names its key
        // and one bad key does not hide another.
        let mut alone = base.clone();
        alone.insert(key.clone(), value.clone());
        if let Err(e) = serde_json::from_value::<Faults>(Value::Object(alone)) {
            errors.push(format!("{key}: {e}"));
            continue;
        }
        merged.insert(key, value);
    }
    // The keys that parsed are range-checked too, so one answer lists every reason.
    match serde_json::from_value::<Faults>(Value::Object(merged)) {
        Ok(faults) => {
            if let Err(range) = faults.check() {
                errors.extend(range);
            }
            if errors.is_empty() {
                return Ok(faults);
            }
        }
        Err(e) => errors.push(e.to_string()),
    }
    Err(errors)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_subset_is_merged_over_the_current_settings() {
        let f = merged_faults(&Faults::default(), br#"{"events_429_rate":0.5,"seed":7}"#).unwrap();
        assert_eq!(f.events_429_rate, 0.5);
        assert_eq!(f.seed, 7);
        assert_eq!(f.token_lifetime_secs, 86_400);
    }

    #[test]
    fn every_bad_key_is_named() {
        let errors = merged_faults(
            &Faults::default(),
            br#"{"nope":1,"seed":"x","engine_latency_ms":{"median":"a"},"events_5xx_rate":0.1}"#,
        )
        .unwrap_err();
        assert_eq!(errors.len(), 3, "{errors:?}");
        let mixed =
            merged_faults(&Faults::default(), br#"{"seed":"x","send_429_rate":2}"#).unwrap_err();
        assert_eq!(mixed.len(), 2, "{mixed:?}");
        assert!(errors[0].starts_with("nope:"));
        let range = merged_faults(
            &Faults::default(),
            br#"{"send_429_rate":2,"events_5xx_rate":-1}"#,
        )
        .unwrap_err();
        assert_eq!(range.len(), 2, "{range:?}");
        assert!(merged_faults(&Faults::default(), b"[]").is_err());
        assert!(merged_faults(&Faults::default(), b"{").is_err());
    }
}
