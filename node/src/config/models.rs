//! `[[models]]`: the aliases clients ask for, each served by one or more
//! deployments (provider + upstream model + price).

use std::collections::{HashMap, HashSet};

use chorus_proto::Price;
use serde::Deserialize;

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
}

#[derive(Debug, Clone)]
pub struct ModelConfig {
    pub alias: String,
    pub deployments: Vec<DeploymentConfig>,
    pub default_max_tokens: u64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct DeploymentConfig {
    pub provider: String,
    pub model: String,
    pub price: Price,
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

/// The models that check out, given the providers that did.
pub fn check(
    raw: &[RawModel],
    providers: &HashSet<&str>,
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
        }
        if model.deployments.is_empty() {
            checker.problem(at("deployments".into()), "list at least one deployment");
            valid = false;
        }
        let mut deployments = Vec::with_capacity(model.deployments.len());
        for (position, deployment) in model.deployments.iter().enumerate() {
            let at = |field: &str| at(format!("deployments[{position}].{field}"));
            match check_deployment(deployment, &at, providers, &mut seen, checker) {
                Some(deployment) => deployments.push(deployment),
                None => valid = false,
            }
        }
        if model.default_max_tokens == Some(0) {
            checker.problem(at("default_max_tokens".into()), "must be at least 1");
            valid = false;
        }
        if valid {
            models.push(ModelConfig {
                alias: model.alias.clone(),
                deployments,
                default_max_tokens: model
                    .default_max_tokens
                    .unwrap_or(chorus_actors::routes::DEFAULT_MAX_TOKENS),
            });
        }
    }
    models
}

fn check_deployment(
    deployment: &RawDeployment,
    at: &dyn Fn(&str) -> String,
    providers: &HashSet<&str>,
    seen: &mut HashMap<String, DeploymentConfig>,
    checker: &mut Checker,
) -> Option<DeploymentConfig> {
    let mut valid = true;
    if !providers.contains(deployment.provider.as_str()) {
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
    let checked = DeploymentConfig {
        provider: deployment.provider.clone(),
        model: deployment.model.clone(),
        price: Price {
            input_micros_per_mtok: input?,
            output_micros_per_mtok: output?,
        },
    };
    if let Some(earlier) = seen.get(&checked.name()) {
        if *earlier != checked {
            checker.problem(
                at("model"),
                format!(
                    "deployment `{}` is listed again with other prices",
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
