//! `GET /api/v2/presence/definitions`: the system presences, each with a stable id, so
//! injected presence events can name one and the user state can say which it is.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use uuid::Uuid;

use crate::AppState;
use crate::http_error::ApiError;

/// The system presences: name and the sandbox's fixed id. The ids are the sandbox's own
/// (stable across runs); a real org's ids come from its own `GET` of this path.
pub const SYSTEM_PRESENCES: [(&str, Uuid); 10] = [
    (
        "Available",
        Uuid::from_u128(0x6a3af858_942f_489d_9700_5f9bcdcd0001),
    ),
    (
        "Away",
        Uuid::from_u128(0x6a3af858_942f_489d_9700_5f9bcdcd0002),
    ),
    (
        "Busy",
        Uuid::from_u128(0x6a3af858_942f_489d_9700_5f9bcdcd0003),
    ),
    (
        "Offline",
        Uuid::from_u128(0x6a3af858_942f_489d_9700_5f9bcdcd0004),
    ),
    (
        "Idle",
        Uuid::from_u128(0x6a3af858_942f_489d_9700_5f9bcdcd0005),
    ),
    (
        "OnQueue",
        Uuid::from_u128(0x6a3af858_942f_489d_9700_5f9bcdcd0006),
    ),
    (
        "Meal",
        Uuid::from_u128(0x6a3af858_942f_489d_9700_5f9bcdcd0007),
    ),
    (
        "Training",
        Uuid::from_u128(0x6a3af858_942f_489d_9700_5f9bcdcd0008),
    ),
    (
        "Meeting",
        Uuid::from_u128(0x6a3af858_942f_489d_9700_5f9bcdcd0009),
    ),
    (
        "Break",
        Uuid::from_u128(0x6a3af858_942f_489d_9700_5f9bcdcd000a),
    ),
];

/// The system presence a definition id names, if it is one.
pub fn system_presence(id: Uuid) -> Option<&'static str> {
    SYSTEM_PRESENCES
        .iter()
        .find(|(_, p)| *p == id)
        .map(|(name, _)| *name)
}

/// `GET /api/v2/presence/definitions`: one page with every system presence.
pub(crate) async fn get_definitions(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
) -> Response {
    if state.tokens.check_bearer(&headers).is_none() {
        return ApiError::new(
            StatusCode::UNAUTHORIZED,
            "a valid bearer token is required: Authorization: Bearer <token from POST /oauth/token>",
        )
        .into_response();
    }
    let entities: Vec<_> = SYSTEM_PRESENCES
        .iter()
        .map(|(name, id)| {
            json!({
                "id": id,
                "languageLabels": {"en_US": name},
                "systemPresence": name,
                "deactivated": false,
                "primary": true,
                "selfUri": format!("/api/v2/presence/definitions/{id}"),
            })
        })
        .collect();
    let total = entities.len();
    axum::Json(json!({
        "entities": entities, "pageSize": total, "pageNumber": 1, "total": total, "pageCount": 1,
    }))
    .into_response()
}
