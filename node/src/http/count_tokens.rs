//! `POST /v1/messages/count_tokens`: Anthropic's token count of a request
//! before sending it, which Anthropic clients (Claude Code among them) ask
//! for. Chorus answers for any provider with its own estimate (the
//! `o200k_base` tokenizer): close, not Anthropic's exact figure.

use axum::body::Body;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
use chorus_actors::estimate;
use chorus_proto::ErrorType;
use http::{HeaderMap, StatusCode};
use serde_json::{json, Value};

use super::body::read_body;
use super::dialect::Dialect;
use super::{ApiError, AppState};

pub async fn count_tokens(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    match count(&state, &headers, body).await {
        Ok(tokens) => Json(json!({"input_tokens": tokens})).into_response(),
        Err(error) => Dialect::Anthropic.error(error),
    }
}

async fn count(state: &AppState, headers: &HeaderMap, body: Body) -> Result<u64, ApiError> {
    let caller = state.authenticate(headers)?;
    let bytes = read_body(body, headers, state.max_body_bytes).await?;
    let request = Dialect::Anthropic.parse(bytes, headers)?;
    let alias = state
        .routes
        .resolve(&request.model)
        .map(|(route, _)| &route.alias);
    if !alias.is_some_and(|alias| caller.allows_model(alias)) {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            ErrorType::InvalidRequest,
            "model_not_found",
            format!("the model `{}` does not exist", request.model),
        ));
    }
    Ok(prompt_tokens(request.messages(), request.field("tools")))
}

/// A prompt's tokens as this endpoint counts them: its messages, then its
/// tools' definitions.
pub(super) fn prompt_tokens(messages: &[Value], tools: Option<&Value>) -> u64 {
    let tools = tools.map_or(0, |tools| estimate::tokens(&tools.to_string()));
    estimate::prompt_tokens(messages) + tools
}
