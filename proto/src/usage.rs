//! Token usage as OpenAI reports it, read from completions and stream
//! chunks, and what it costs at a deployment's price. Prompt tokens read
//! from or written to a provider's prompt cache are counted apart, because
//! providers bill them apart: a read is a tenth of fresh input at
//! Anthropic and half at OpenAI, a write a quarter more at Anthropic.

use serde::{Deserialize, Serialize};

/// Tokens one call used. Upstreams disagree on the details, so reading is
/// tolerant: `total_tokens` may be missing (it is the sum anyway). It
/// serialises as OpenAI's `usage` without the cache details, which
/// [`Usage::openai_details`] writes where a format has room for them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    pub prompt_tokens: u64,
    /// Absent from embeddings' usage: they produce none.
    #[serde(default)]
    pub completion_tokens: u64,
    #[serde(default)]
    pub total_tokens: u64,
    /// Of `prompt_tokens`, those read from the provider's prompt cache
    /// (OpenAI's `prompt_tokens_details.cached_tokens`, Anthropic's
    /// `cache_read_input_tokens`).
    #[serde(skip)]
    pub cache_read_tokens: u64,
    /// Of `prompt_tokens`, those written to the provider's prompt cache
    /// (Anthropic's `cache_creation_input_tokens`; OpenAI writes for free
    /// and reports none).
    #[serde(skip)]
    pub cache_write_tokens: u64,
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
            cache_read_tokens: 0,
            cache_write_tokens: 0,
            estimated: false,
        }
    }

    /// The same usage with `read` and `written` of its prompt tokens counted
    /// as cache reads and writes (capped at the prompt: an upstream that
    /// reports more cached than prompt tokens is not believed past it).
    pub fn with_cache(self, read: u64, written: u64) -> Self {
        let read = read.min(self.prompt_tokens);
        Usage {
            cache_read_tokens: read,
            cache_write_tokens: written.min(self.prompt_tokens - read),
            ..self
        }
    }

    /// Prompt tokens neither read from nor written to a prompt cache.
    pub fn fresh_prompt_tokens(&self) -> u64 {
        self.prompt_tokens
            .saturating_sub(self.cache_read_tokens)
            .saturating_sub(self.cache_write_tokens)
    }

    /// OpenAI's `usage` object with the cache details: reads as
    /// `prompt_tokens_details.cached_tokens`, writes as
    /// `cache_creation_input_tokens` (the convention other gateways use,
    /// since OpenAI has no field for them), each only when there are any.
    pub fn openai_details(&self) -> serde_json::Value {
        let mut usage = serde_json::json!({
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.total_tokens,
        });
        if self.cache_read_tokens > 0 {
            usage["prompt_tokens_details"] =
                serde_json::json!({"cached_tokens": self.cache_read_tokens});
        }
        if self.cache_write_tokens > 0 {
            usage["cache_creation_input_tokens"] = self.cache_write_tokens.into();
        }
        usage
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
            Some(usage) => {
                let read =
                    Usage::deserialize(usage).map_err(|e| format!("unreadable `usage`: {e}"))?;
                let count = |pointer: &str| {
                    usage
                        .pointer(pointer)
                        .and_then(serde_json::Value::as_u64)
                        .unwrap_or(0)
                };
                Ok(Some(
                    Usage::new(read.prompt_tokens, read.completion_tokens).with_cache(
                        count("/prompt_tokens_details/cached_tokens"),
                        count("/cache_creation_input_tokens"),
                    ),
                ))
            }
        }
    }
}

/// A deployment's price in integer micro-dollars per million tokens, so
/// costs add up exactly: USD 0.15 per million tokens is `150_000`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Price {
    /// Fresh prompt tokens.
    pub input_micros_per_mtok: u64,
    pub output_micros_per_mtok: u64,
    /// Prompt tokens read from the provider's prompt cache.
    pub cache_read_micros_per_mtok: u64,
    /// Prompt tokens written to the provider's prompt cache.
    pub cache_write_micros_per_mtok: u64,
}

impl Price {
    /// Input and output prices, with cache reads and writes billed as the
    /// provider's format bills them by default: see [`CacheRates`].
    pub fn with_default_cache(input: u64, output: u64, rates: CacheRates) -> Self {
        let of_input = |per_mille: u64| {
            u64::try_from(u128::from(input) * u128::from(per_mille) / 1000).unwrap_or(u64::MAX)
        };
        Price {
            input_micros_per_mtok: input,
            output_micros_per_mtok: output,
            cache_read_micros_per_mtok: of_input(rates.read_per_mille),
            cache_write_micros_per_mtok: of_input(rates.write_per_mille),
        }
    }

    /// What `usage` costs, in micro-dollars, rounded up: a call is never
    /// counted as cheaper than it was. Cached prompt tokens are billed at
    /// the cache prices, the rest of the prompt at the input price.
    pub fn cost_micros(&self, usage: &Usage) -> u64 {
        let part = |tokens: u64, price: u64| u128::from(tokens) * u128::from(price);
        let pico = part(usage.fresh_prompt_tokens(), self.input_micros_per_mtok)
            + part(usage.cache_read_tokens, self.cache_read_micros_per_mtok)
            + part(usage.cache_write_tokens, self.cache_write_micros_per_mtok)
            + part(usage.completion_tokens, self.output_micros_per_mtok);
        u64::try_from(pico.div_ceil(1_000_000)).unwrap_or(u64::MAX)
    }
}

/// What a provider bills for cached prompt tokens, in thousandths of its
/// input price: the default when a deployment sets no cache prices.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheRates {
    pub read_per_mille: u64,
    pub write_per_mille: u64,
}

impl CacheRates {
    /// Anthropic: reads at 0.1× input, 5-minute cache writes at 1.25×.
    pub const ANTHROPIC: CacheRates = CacheRates {
        read_per_mille: 100,
        write_per_mille: 1250,
    };
    /// OpenAI: `cached_tokens` at 0.5× input; caching itself is free.
    pub const OPENAI: CacheRates = CacheRates {
        read_per_mille: 500,
        write_per_mille: 1000,
    };
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
            ..Price::default()
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

    #[test]
    fn reads_cached_prompt_tokens_from_openai_usage() {
        let reported = json!({"prompt_tokens": 100, "completion_tokens": 4,
            "prompt_tokens_details": {"cached_tokens": 80}, "cache_creation_input_tokens": 10});
        let usage = Usage::from_json(Some(&reported)).unwrap().unwrap();
        assert_eq!(
            (usage.cache_read_tokens, usage.cache_write_tokens),
            (80, 10)
        );
        assert_eq!(usage.fresh_prompt_tokens(), 10);
        assert_eq!(
            usage.openai_details(),
            reported
                .as_object()
                .map(|o| {
                    let mut o = o.clone();
                    o.insert("total_tokens".into(), 104.into());
                    serde_json::Value::Object(o)
                })
                .unwrap()
        );
        // More cached than prompt tokens is not believed.
        let odd = json!({"prompt_tokens": 5, "prompt_tokens_details": {"cached_tokens": 9}});
        let usage = Usage::from_json(Some(&odd)).unwrap().unwrap();
        assert_eq!(
            (usage.cache_read_tokens, usage.fresh_prompt_tokens()),
            (5, 0)
        );
    }

    #[test]
    fn cached_tokens_cost_what_the_provider_bills_for_them() {
        // Claude Sonnet: USD 3 in, 15 out; reads 0.30, 5-minute writes 3.75.
        let price = Price::with_default_cache(3_000_000, 15_000_000, CacheRates::ANTHROPIC);
        assert_eq!(price.cache_read_micros_per_mtok, 300_000);
        assert_eq!(price.cache_write_micros_per_mtok, 3_750_000);
        // 100k tokens read from the cache, 2k fresh, 1k written, 500 out.
        let usage = Usage::new(103_000, 500).with_cache(100_000, 1_000);
        let cost = price.cost_micros(&usage);
        assert_eq!(cost, 30_000 + 6_000 + 3_750 + 7_500);
        assert!(
            cost < price.cost_micros(&Usage::new(103_000, 500)) / 4,
            "not as fresh input"
        );
        assert!(cost > 0, "not as free");
        let openai = Price::with_default_cache(2_500_000, 10_000_000, CacheRates::OPENAI);
        assert_eq!(openai.cache_read_micros_per_mtok, 1_250_000);
        assert_eq!(
            openai.cost_micros(&Usage::new(1_000_000, 0).with_cache(1_000_000, 0)),
            1_250_000
        );
    }
}
