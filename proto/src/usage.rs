//! Token usage as OpenAI reports it, read from completions and stream
//! chunks, and what it costs at a deployment's price.

use serde::{Deserialize, Serialize};

/// Tokens one call used. Upstreams disagree on the details, so reading is
/// tolerant: `total_tokens` may be missing (it is the sum anyway).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    pub prompt_tokens: u64,
    /// Absent from embeddings' usage: they produce none.
    #[serde(default)]
    pub completion_tokens: u64,
    #[serde(default)]
    pub total_tokens: u64,
    /// Counted by Chorus with a tokenizer because the upstream reported no
    /// usage (a cancelled or broken stream, or a provider without it).
    #[serde(skip)]
    pub estimated: bool,
}

impl Usage {
    pub fn new(prompt_tokens: u64, completion_tokens: u64) -> Self {
        Usage {
            prompt_tokens,
            completion_tokens,
            total_tokens: prompt_tokens.saturating_add(completion_tokens),
            estimated: false,
        }
    }

    /// An estimate made by Chorus rather than a figure from the upstream.
    pub fn estimated(prompt_tokens: u64, completion_tokens: u64) -> Self {
        Usage {
            estimated: true,
            ..Usage::new(prompt_tokens, completion_tokens)
        }
    }

    /// Reads a `usage` object. `Ok(None)` when there is none (absent or
    /// `null`, as in every chunk but the last of a stream); an error names
    /// what is wrong with one that is there.
    pub fn from_json(value: Option<&serde_json::Value>) -> Result<Option<Usage>, String> {
        match value {
            None | Some(serde_json::Value::Null) => Ok(None),
            Some(usage) => Usage::deserialize(usage)
                .map(|usage| Some(Usage::new(usage.prompt_tokens, usage.completion_tokens)))
                .map_err(|e| format!("unreadable `usage`: {e}")),
        }
    }
}

/// A deployment's price in integer micro-dollars per million tokens, so
/// costs add up exactly: USD 0.15 per million tokens is `150_000`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Price {
    pub input_micros_per_mtok: u64,
    pub output_micros_per_mtok: u64,
}

impl Price {
    /// What `usage` costs, in micro-dollars, rounded up: a call is never
    /// counted as cheaper than it was.
    pub fn cost_micros(&self, usage: &Usage) -> u64 {
        let pico = u128::from(usage.prompt_tokens) * u128::from(self.input_micros_per_mtok)
            + u128::from(usage.completion_tokens) * u128::from(self.output_micros_per_mtok);
        u64::try_from(pico.div_ceil(1_000_000)).unwrap_or(u64::MAX)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn reads_usage_tolerantly_and_says_what_is_wrong() {
        let full = json!({"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7});
        assert_eq!(Usage::from_json(Some(&full)), Ok(Some(Usage::new(3, 4))));
        let no_total = json!({"prompt_tokens": 3, "completion_tokens": 4, "extra": {"cached": 1}});
        assert_eq!(
            Usage::from_json(Some(&no_total)),
            Ok(Some(Usage::new(3, 4)))
        );
        assert_eq!(Usage::from_json(Some(&json!(null))), Ok(None));
        assert_eq!(Usage::from_json(None), Ok(None));
        let broken = Usage::from_json(Some(&json!({"prompt_tokens": "three"}))).unwrap_err();
        assert!(broken.contains("unreadable `usage`"), "{broken}");
    }

    #[test]
    fn cost_is_exact_and_rounds_up() {
        // gpt-4o-mini: USD 0.15 in, 0.60 out per million tokens.
        let price = Price {
            input_micros_per_mtok: 150_000,
            output_micros_per_mtok: 600_000,
        };
        assert_eq!(price.cost_micros(&Usage::new(1_000_000, 0)), 150_000);
        assert_eq!(price.cost_micros(&Usage::new(1_000, 1_000)), 750);
        assert_eq!(
            price.cost_micros(&Usage::new(1, 0)),
            1,
            "0.15 µ$ rounds up to 1"
        );
        assert_eq!(Price::default().cost_micros(&Usage::new(5, 5)), 0);
    }
}
