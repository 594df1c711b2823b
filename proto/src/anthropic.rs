//! Anthropic's Messages API in OpenAI terms, both ways: requests, replies,
//! stream events and errors. An Anthropic client's request to an
//! `anthropic` upstream passes through untranslated ([`passthrough`]);
//! otherwise an `anthropic` upstream is called with a translated OpenAI
//! request and its answers come back as OpenAI completions and chunks,
//! and `POST /v1/messages` to any other upstream does the reverse.
//!
//! What has no counterpart and changes the answer is refused with a 400
//! naming the parameter ([`RequestError::Untranslatable`]): `n` > 1, JSON
//! mode, log probabilities, a temperature above 1, audio and files towards
//! Anthropic; documents, server tools and non-text tool results away from
//! it (such a request still passes through to Anthropic upstreams). What
//! only tunes one side is left out of the other when translating: `top_k`,
//! `seed`, penalties, `cache_control` towards OpenAI (which caches by
//! itself), and the thinking blocks of past turns towards OpenAI. What has
//! a counterpart is mapped: extended thinking and `reasoning_effort` both
//! ways ([`thinking`]), `cache_control` on OpenAI content parts and tools
//! towards Anthropic.
//!
//! [`RequestError::Untranslatable`]: crate::chat::RequestError::Untranslatable

pub mod error;
pub mod passthrough;
pub mod reply;
pub mod request;
pub mod stream;
pub mod thinking;

/// The `anthropic-version` header Chorus sends unless configured otherwise.
pub const DEFAULT_VERSION: &str = "2023-06-01";

/// Why an Anthropic answer stopped, as OpenAI's `finish_reason`.
pub fn finish_reason(stop_reason: &str) -> &'static str {
    match stop_reason {
        "max_tokens" | "model_context_window_exceeded" => "length",
        "tool_use" => "tool_calls",
        "refusal" => "content_filter",
        // end_turn, stop_sequence, pause_turn and anything newer.
        _ => "stop",
    }
}

/// Why an OpenAI answer stopped, as Anthropic's `stop_reason`.
pub fn stop_reason(finish_reason: &str) -> &'static str {
    match finish_reason {
        "length" => "max_tokens",
        "tool_calls" | "function_call" => "tool_use",
        "content_filter" => "refusal",
        _ => "end_turn",
    }
}

/// Anthropic's `usage` (input tokens apart from cache reads and writes) as
/// one prompt figure that holds them all, with the cache reads and writes
/// among it told apart, and one completion figure. Missing fields count 0.
pub fn usage(usage: Option<&serde_json::Value>) -> crate::Usage {
    let field = |name: &str| {
        usage
            .and_then(|usage| usage.get(name))
            .and_then(serde_json::Value::as_u64)
            .unwrap_or(0)
    };
    let (read, written) = (
        field("cache_read_input_tokens"),
        field("cache_creation_input_tokens"),
    );
    let prompt = field("input_tokens")
        .saturating_add(written)
        .saturating_add(read);
    crate::Usage::new(prompt, field("output_tokens")).with_cache(read, written)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stop_reasons_map_both_ways() {
        for (anthropic, openai) in [
            ("end_turn", "stop"),
            ("max_tokens", "length"),
            ("tool_use", "tool_calls"),
            ("refusal", "content_filter"),
        ] {
            assert_eq!(finish_reason(anthropic), openai);
            assert_eq!(stop_reason(openai), anthropic);
        }
        assert_eq!(finish_reason("stop_sequence"), "stop");
    }

    #[test]
    fn usage_counts_cached_input_as_prompt() {
        let reported = serde_json::json!({"input_tokens": 10, "cache_read_input_tokens": 5,
            "cache_creation_input_tokens": 2, "output_tokens": 7});
        assert_eq!(
            usage(Some(&reported)),
            crate::Usage::new(17, 7).with_cache(5, 2)
        );
        assert_eq!(usage(None), crate::Usage::new(0, 0));
    }
}
