//! Token counts estimated with a real tokenizer (OpenAI's `o200k_base`,
//! through `tiktoken-rs`) for calls whose upstream reported no usage: a
//! stream the client cancelled, one that broke, or a provider that does
//! not report it. Budgets need a figure for every call; one marked as
//! estimated beats none.

use chorus_proto::chat::content_text;
use chorus_proto::{ChatRequest, Endpoint, Usage};
use serde_json::Value;
use tiktoken_rs::o200k_base_singleton;

/// Tokens every message costs beyond its text, and the tokens that prime
/// the reply, as OpenAI counts chat prompts.
const TOKENS_PER_MESSAGE: u64 = 3;
const REPLY_PRIMING_TOKENS: u64 = 3;

/// Loads the tokenizer's tables (a fraction of a second), so the first
/// estimate does not pay for it.
pub fn warm_up() {
    let _ = o200k_base_singleton();
}

pub fn tokens(text: &str) -> u64 {
    if text.is_empty() {
        return 0;
    }
    o200k_base_singleton().encode_ordinary(text).len() as u64
}

/// The prompt tokens of a chat request's `messages`.
pub fn prompt_tokens(messages: &[Value]) -> u64 {
    let mut text = String::new();
    for message in messages {
        for field in ["role", "name"] {
            if let Some(value) = message.get(field).and_then(Value::as_str) {
                text.push_str(value);
                text.push('\n');
            }
        }
        content_text(message.get("content"), &mut text);
        text.push('\n');
    }
    tokens(&text) + TOKENS_PER_MESSAGE * messages.len() as u64 + REPLY_PRIMING_TOKENS
}

/// The prompt tokens of any request: a chat's messages, or a text
/// completion's prompt or an embedding's input (token ids count one each).
pub fn request_prompt_tokens(request: &ChatRequest) -> u64 {
    match request.endpoint {
        Endpoint::ChatCompletions => prompt_tokens(request.messages()),
        Endpoint::Completions | Endpoint::Embeddings => {
            let mut text = String::new();
            let ids = request.input_text(&mut text);
            tokens(&text) + ids
        }
    }
}

/// Usage for a call the upstream did not report on: the prompt, and the
/// text it produced.
pub fn usage(request: &ChatRequest, completion_text: &str) -> Usage {
    Usage::estimated(request_prompt_tokens(request), tokens(completion_text))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn counts_like_openai_for_a_simple_prompt() {
        assert_eq!(tokens("hello world"), 2);
        assert_eq!(tokens(""), 0);
        let messages = [json!({"role": "user", "content": "hello world"})];
        // "user\nhello world\n" is 5 tokens, +3 for the message, +3 priming.
        assert_eq!(prompt_tokens(&messages), 5 + 3 + 3);
        let parts = [json!({"role": "user", "content": [{"type": "text", "text": "hello world"}]})];
        assert_eq!(prompt_tokens(&parts), prompt_tokens(&messages));
    }

    #[test]
    fn an_estimate_says_so() {
        let body = json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]});
        let request = ChatRequest::parse(body.to_string().as_bytes()).unwrap();
        let usage = usage(&request, "The answer is 42");
        assert!(usage.estimated);
        assert_eq!(usage.completion_tokens, tokens("The answer is 42"));
        assert_eq!(usage.prompt_tokens, prompt_tokens(request.messages()));
    }

    #[test]
    fn a_prompt_or_input_counts_its_text_and_its_token_ids() {
        let parse = |endpoint, body: serde_json::Value| {
            ChatRequest::parse_at(endpoint, body.to_string().as_bytes()).unwrap()
        };
        let text = parse(
            Endpoint::Completions,
            json!({"model": "m", "prompt": "hello world"}),
        );
        assert_eq!(request_prompt_tokens(&text), tokens("hello world\n"));
        let ids = parse(
            Endpoint::Embeddings,
            json!({"model": "m", "input": [[1, 2], [3]]}),
        );
        assert_eq!(request_prompt_tokens(&ids), 3);
    }
}
