//! What admission reserves for a request before anyone knows what it
//! will use: its prompt's tokens plus the most its reply may take
//! (`max_tokens`, or the alias's default), at the highest price among the
//! alias's deployments. Settling replaces it with the real figures, so
//! the estimate only has to be quick and rarely low.

use chorus_proto::chat::content_text;
use chorus_proto::{ChatRequest, Endpoint, Usage};
use serde_json::Value;

use super::Reservation;
use crate::routes::AliasRoute;

/// Bytes of prompt text per token, rounded low so the estimate runs high:
/// English averages about four, code and most other scripts more tokens
/// per byte.
const BYTES_PER_TOKEN: u64 = 3;
/// Tokens each message costs beyond its text, and the reply's priming, as
/// OpenAI counts chat prompts.
const TOKENS_PER_MESSAGE: u64 = 3;
const REPLY_PRIMING_TOKENS: u64 = 3;

/// The reservation for `request` on `route`.
pub fn reservation(request: &ChatRequest, route: &AliasRoute) -> Reservation {
    let (prompt, output) = request_tokens(request, route);
    let cost_micros = route
        .highest_price()
        .cost_micros(&Usage::new(prompt, output));
    Reservation {
        tokens: prompt.saturating_add(output),
        cost_micros,
    }
}

/// The prompt's estimated tokens and the most the reply may take.
pub fn request_tokens(request: &ChatRequest, route: &AliasRoute) -> (u64, u64) {
    let prompt = match request.endpoint {
        Endpoint::ChatCompletions => prompt_tokens(request.messages()),
        Endpoint::Completions | Endpoint::Embeddings => {
            let mut text = String::new();
            let ids = request.input_text(&mut text);
            (text.len() as u64).div_ceil(BYTES_PER_TOKEN) + ids
        }
    };
    let output = request
        .max_output_tokens()
        .unwrap_or(route.default_max_tokens);
    (prompt, output)
}

/// Prompt tokens from the text's length: no tokenizer on the request path.
fn prompt_tokens(messages: &[Value]) -> u64 {
    let mut text = String::new();
    for message in messages {
        content_text(message.get("content"), &mut text);
    }
    let messages = messages.len() as u64;
    (text.len() as u64).div_ceil(BYTES_PER_TOKEN)
        + TOKENS_PER_MESSAGE * messages
        + REPLY_PRIMING_TOKENS
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_estimate_runs_at_or_above_the_tokenizer() {
        let body = serde_json::json!({
            "model": "m",
            "messages": [{"role": "user", "content": "Write a haiku about the sea and the wind, please."}],
            "max_tokens": 50,
        });
        let request = ChatRequest::parse(body.to_string().as_bytes()).unwrap();
        let mut route = AliasRoute::with_defaults("m".into(), Vec::new());
        let reserved = reservation(&request, &route);
        let counted = crate::estimate::prompt_tokens(request.messages());
        assert!(reserved.tokens >= counted + 50, "{reserved:?} vs {counted}");
        assert!(
            reserved.tokens <= 2 * counted + 50,
            "{reserved:?} vs {counted}"
        );
        assert_eq!(reserved.cost_micros, 0, "no price, no cost");

        let no_max =
            serde_json::json!({"model": "m", "messages": [{"role": "user", "content": ""}]});
        let request = ChatRequest::parse(no_max.to_string().as_bytes()).unwrap();
        route.default_max_tokens = 100;
        assert_eq!(
            reservation(&request, &route).tokens,
            100 + TOKENS_PER_MESSAGE + REPLY_PRIMING_TOKENS
        );
    }
}
