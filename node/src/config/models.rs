//! `[[models]]`: the aliases clients ask for, each served by one or more
//! deployments (provider + upstream model + price).

use std::collections::{HashMap, HashSet};

use std::time::Duration;

use chorus_actors::routes::{is_pattern, Timeouts};
use chorus_actors::routing::balance::{BalancerOptions, DEFAULT_STRATEGY, STRATEGIES};
use chorus_actors::routing::{FallbackNames, RetryPolicy};
use chorus_actors::{Quota, RouteOptions};
use chorus_proto::{CacheRates, Price};
use serde::Deserialize;

use super::cache::{self, CachePolicy};
use super::checker::Checker;

/// The highest price accepted, in USD per million tokens: far above any
/// model's, and low enough that costs stay exact in integers.
const MAX_PRICE_PER_MTOK: f64 = 1_000_000.0;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawModel {
    /// The model name clients send.
    pub alias: String,
    pub deployments: Vec<RawDeployment>,
    /// Output tokens reserved against a key's tpm and budgets for a request
    /// that sets no `max_tokens` (nothing is sent upstream). Default 4096.
    pub default_max_tokens: Option<u64>,
    /// How a request picks a deployment: `weighted` (the default),
    /// `round-robin`, `least-busy`, `latency-based`, `cost-based`,
    /// `usage-based`.
    pub strategy: Option<String>,
    /// `latency-based`: deployments this fraction slower than the fastest
    /// still share its traffic. Default 0.1.
    pub latency_buffer: Option<f64>,
    /// Attempts after the first, for 429, 5xx, timeouts and broken
    /// connections. Default 2.
    pub max_retries: Option<u32>,
    /// The first backoff before retrying the same deployment, doubled for
    /// each further retry. Default 100.
    pub retry_backoff_ms: Option<u64>,
    /// The longest wait before a retry; an upstream `retry-after` beyond
    /// it is not waited for. Default 5000.
    pub max_retry_wait_ms: Option<u64>,
    /// A stream's first content within this of its call's start, or the
    /// call fails (and is retried, unseen). Default: the provider's
    /// `timeout_ms`.
    pub ttft_timeout_ms: Option<u64>,
    /// A stream's next event within this of the one before. Default: the
    /// provider's `timeout_ms`.
    pub idle_timeout_ms: Option<u64>,
    /// The whole request, retries and fallbacks included, within this of
    /// its arrival. Default: none.
    pub total_timeout_ms: Option<u64>,
    /// Aliases tried in order once retries are used up, or when none of
    /// this alias's deployments is usable.
    #[serde(default)]
    pub fallbacks: Vec<String>,
    /// Aliases tried in order when the prompt is too long for the model.
    #[serde(default)]
    pub context_window_fallbacks: Vec<String>,
    /// Aliases tried in order when the provider's content filter refused.
    #[serde(default)]
    pub content_policy_fallbacks: Vec<String>,
    /// Which answers the response cache keeps: `deterministic` (the
    /// default: temperature 0, a `seed`, embeddings, or a request that
    /// opts in), `always`, or `off`.
    pub cache: Option<String>,
    /// Requests that would share a provider's prompt cache (one
    /// `prompt_cache_key`, user, conversation or leading prefix) all go to
    /// one deployment, the same on every node; the strategy picks only
    /// when that one is unusable. Default false.
    #[serde(default)]
    pub cache_affinity: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDeployment {
    /// Name of a `[[providers]]` entry.
    pub provider: String,
    /// The model name the upstream knows.
    pub model: String,
    /// USD per million prompt tokens, kept to the micro-dollar. Default 0.
    #[serde(default)]
    pub input_per_mtok: f64,
    /// USD per million completion tokens, kept to the micro-dollar. Default 0.
    #[serde(default)]
    pub output_per_mtok: f64,
    /// USD per million prompt tokens read from the provider's prompt
    /// cache. Default: as the provider's format bills them, 0.1 ×
    /// `input_per_mtok` for `anthropic`, 0.5 × for the others.
    pub cache_read_per_mtok: Option<f64>,
    /// USD per million prompt tokens written to the provider's prompt
    /// cache. Default: 1.25 × `input_per_mtok` for `anthropic` (its
    /// 5-minute cache), 1 × for the others (OpenAI caches for free).
    pub cache_write_per_mtok: Option<f64>,
    /// Its share of this alias's traffic under `weighted`, and of ties
    /// under the other strategies. Default 1.
    pub weight: Option<u32>,
    /// The provider's requests-per-minute quota for it, kept cluster-wide.
    pub rpm: Option<u64>,
    /// The provider's tokens-per-minute quota for it, kept cluster-wide.
    pub tpm: Option<u64>,
}

#[derive(Debug, Clone)]
pub struct ModelConfig {
    pub alias: String,
    /// Each with its weight in this alias.
    pub deployments: Vec<(DeploymentConfig, u32)>,
    pub routing: RouteOptions,
    pub fallbacks: FallbackNames,
    pub cache: CachePolicy,
}

/// A deployment as every alias that lists it must describe it.
#[derive(Debug, Clone, PartialEq)]
pub struct DeploymentConfig {
    pub provider: String,
    pub model: String,
    pub price: Price,
    pub quota: Quota,
}

impl DeploymentConfig {
    /// `provider/model`: the deployment's identity in the node.
    pub fn name(&self) -> String {
        format!("{}/{}", self.provider, self.model)
    }
}

/// USD per million tokens as integer micro-dollars per million tokens.
fn micros(usd_per_mtok: f64) -> Option<u64> {
    (usd_per_mtok.is_finite() && (0.0..=MAX_PRICE_PER_MTOK).contains(&usd_per_mtok))
        .then(|| (usd_per_mtok * 1_000_000.0).round() as u64)
}

/// The models that check out, given the providers the file defines and
/// what each bills for cached tokens.
pub fn check(
    raw: &[RawModel],
    providers: &HashMap<&str, CacheRates>,
    checker: &mut Checker,
) -> Vec<ModelConfig> {
    if raw.is_empty() {
        checker.problem("models", "add at least one [[models]] entry with an alias");
    }
    let mut models = Vec::with_capacity(raw.len());
    let mut aliases = HashSet::new();
    let mut seen: HashMap<String, DeploymentConfig> = HashMap::new();
    for (index, model) in raw.iter().enumerate() {
        let at = |field: String| format!("models[{index}].{field}");
        let mut valid = true;
        if model.alias.trim().is_empty() {
            checker.problem(at("alias".into()), "must not be empty");
            valid = false;
        } else if !aliases.insert(model.alias.as_str()) {
            checker.problem(
                at("alias".into()),
                format!("alias `{}` is defined twice", model.alias),
            );
            valid = false;
        } else if model.alias.matches('*').count() > 1 {
            checker.problem(
                at("alias".into()),
                "a pattern alias holds one `*`, e.g. `claude-*`",
            );
            valid = false;
        }
        let pattern = is_pattern(&model.alias);
        for (position, deployment) in model.deployments.iter().enumerate() {
            if !pattern && deployment.model.contains('*') {
                checker.problem(
                    at(format!("deployments[{position}].model")),
                    "a `*` in a deployment's model stands for what a pattern alias matched: only a pattern alias (`claude-*`) may have one",
                );
                valid = false;
            }
        }
        if model.deployments.is_empty() {
            checker.problem(at("deployments".into()), "list at least one deployment");
            valid = false;
        }
        let mut deployments = Vec::with_capacity(model.deployments.len());
        for (position, deployment) in model.deployments.iter().enumerate() {
            let at = |field: &str| at(format!("deployments[{position}].{field}"));
            if deployment.weight == Some(0) {
                checker.problem(at("weight"), "must be at least 1");
                valid = false;
            }
            match check_deployment(deployment, &at, providers, &mut seen, checker) {
                Some(checked) => deployments.push((checked, deployment.weight.unwrap_or(1))),
                None => valid = false,
            }
        }
        let routing = check_routing(model, &at, checker);
        let cache = cache::policy(model.cache.as_deref(), at("cache".into()), checker);
        if let (true, Some(routing), Some(cache)) = (valid, routing, cache) {
            models.push(ModelConfig {
                alias: model.alias.clone(),
                deployments,
                routing,
                fallbacks: FallbackNames {
                    general: model.fallbacks.clone(),
                    context_window: model.context_window_fallbacks.clone(),
                    content_policy: model.content_policy_fallbacks.clone(),
                },
                cache,
            });
        }
    }
    check_fallbacks(raw, &aliases, checker);
    models
}

/// Every fallback names another alias that is defined.
fn check_fallbacks(raw: &[RawModel], aliases: &HashSet<&str>, checker: &mut Checker) {
    for (index, model) in raw.iter().enumerate() {
        let chains = [
            ("fallbacks", &model.fallbacks),
            ("context_window_fallbacks", &model.context_window_fallbacks),
            ("content_policy_fallbacks", &model.content_policy_fallbacks),
        ];
        for (field, chain) in chains {
            for (position, alias) in chain.iter().enumerate() {
                let at = format!("models[{index}].{field}[{position}]");
                if *alias == model.alias {
                    checker.problem(at, "an alias cannot fall back to itself");
                } else if is_pattern(alias) {
                    checker.problem(
                        at,
                        format!(
                            "`{alias}` is a pattern: fall back to an alias that names one model"
                        ),
                    );
                } else if !aliases.contains(alias.as_str()) {
                    checker.problem(
                        at,
                        format!("unknown alias `{alias}`: define it under [[models]]"),
                    );
                }
            }
        }
    }
}

/// The alias's strategy, retries and reservation default.
fn check_routing(
    model: &RawModel,
    at: &dyn Fn(String) -> String,
    checker: &mut Checker,
) -> Option<RouteOptions> {
    let mut valid = true;
    let strategy = match model.strategy.as_deref() {
        None => DEFAULT_STRATEGY,
        Some(name) => match STRATEGIES.iter().find(|(known, _)| *known == name) {
            Some((known, _)) => known,
            None => {
                let names: Vec<&str> = STRATEGIES.iter().map(|(known, _)| *known).collect();
                checker.problem(
                    at("strategy".into()),
                    format!("unknown strategy `{name}`: use one of {}", names.join(", ")),
                );
                valid = false;
                DEFAULT_STRATEGY
            }
        },
    };
    let defaults = RouteOptions::default();
    let latency_buffer = model
        .latency_buffer
        .unwrap_or(defaults.balancer.latency_buffer);
    if !(latency_buffer.is_finite() && (0.0..=10.0).contains(&latency_buffer)) {
        checker.problem(
            at("latency_buffer".into()),
            format!("must be a fraction from 0 to 10, got {latency_buffer}"),
        );
        valid = false;
    }
    let mut at_least_one = |field: &str, value: Option<u64>| {
        if value == Some(0) {
            checker.problem(at(field.into()), "must be at least 1");
            valid = false;
        }
        value
    };
    let default_max_tokens = at_least_one("default_max_tokens", model.default_max_tokens)
        .unwrap_or(defaults.default_max_tokens);
    let max_wait = at_least_one("max_retry_wait_ms", model.max_retry_wait_ms)
        .map_or(defaults.retry.max_wait, Duration::from_millis);
    let backoff = model
        .retry_backoff_ms
        .map_or(defaults.retry.backoff, Duration::from_millis);
    let mut timeout =
        |field: &str, value: Option<u64>| at_least_one(field, value).map(Duration::from_millis);
    let timeouts = Timeouts {
        ttft: timeout("ttft_timeout_ms", model.ttft_timeout_ms),
        idle: timeout("idle_timeout_ms", model.idle_timeout_ms),
        total: timeout("total_timeout_ms", model.total_timeout_ms),
    };
    if backoff > max_wait {
        checker.problem(
            at("retry_backoff_ms".into()),
            "must not be above max_retry_wait_ms",
        );
        valid = false;
    }
    valid.then_some(RouteOptions {
        strategy,
        balancer: BalancerOptions { latency_buffer },
        retry: RetryPolicy {
            max_retries: model.max_retries.unwrap_or(defaults.retry.max_retries),
            backoff,
            max_wait,
        },
        timeouts,
        default_max_tokens,
        cache_affinity: model.cache_affinity,
    })
}

fn check_deployment(
    deployment: &RawDeployment,
    at: &dyn Fn(&str) -> String,
    providers: &HashMap<&str, CacheRates>,
    seen: &mut HashMap<String, DeploymentConfig>,
    checker: &mut Checker,
) -> Option<DeploymentConfig> {
    let mut valid = true;
    let rates = providers.get(deployment.provider.as_str()).copied();
    if rates.is_none() {
        checker.problem(
            at("provider"),
            format!(
                "unknown provider `{}`: define it under [[providers]]",
                deployment.provider
            ),
        );
        valid = false;
    }
    if deployment.model.trim().is_empty() {
        checker.problem(at("model"), "must not be empty");
        valid = false;
    }
    let mut price = |field: &str, usd: f64| {
        let micros = micros(usd);
        if micros.is_none() {
            checker.problem(
                at(field),
                format!("price must be a number from 0 to {MAX_PRICE_PER_MTOK}, got {usd}"),
            );
        }
        micros
    };
    let input = price("input_per_mtok", deployment.input_per_mtok);
    let output = price("output_per_mtok", deployment.output_per_mtok);
    let cache_read = deployment
        .cache_read_per_mtok
        .map(|usd| price("cache_read_per_mtok", usd));
    let cache_write = deployment
        .cache_write_per_mtok
        .map(|usd| price("cache_write_per_mtok", usd));
    for (field, quota) in [("rpm", deployment.rpm), ("tpm", deployment.tpm)] {
        if quota == Some(0) {
            checker.problem(at(field), "must be at least 1");
            valid = false;
        }
    }
    let checked = DeploymentConfig {
        provider: deployment.provider.clone(),
        model: deployment.model.clone(),
        price: {
            let defaults = Price::with_default_cache(input?, output?, rates?);
            Price {
                cache_read_micros_per_mtok: cache_read
                    .unwrap_or(Some(defaults.cache_read_micros_per_mtok))?,
                cache_write_micros_per_mtok: cache_write
                    .unwrap_or(Some(defaults.cache_write_micros_per_mtok))?,
                ..defaults
            }
        },
        quota: Quota {
            rpm: deployment.rpm,
            tpm: deployment.tpm,
        },
    };
    if let Some(earlier) = seen.get(&checked.name()) {
        if *earlier != checked {
            checker.problem(
                at("model"),
                format!(
                    "deployment `{}` is listed again with other prices or quotas",
                    checked.name()
                ),
            );
            return None;
        }
    }
    seen.insert(checked.name(), checked.clone());
    valid.then_some(checked)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prices_become_exact_micro_dollars() {
        assert_eq!(micros(0.15), Some(150_000));
        assert_eq!(micros(2.5), Some(2_500_000));
        assert_eq!(micros(0.0), Some(0));
        assert_eq!(micros(-1.0), None);
        assert_eq!(micros(f64::NAN), None);
        assert_eq!(micros(1e30), None);
    }
}
