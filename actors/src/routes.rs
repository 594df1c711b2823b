//! The model table: which deployments serve each alias a client may ask
//! for, and how the alias chooses among them. An alias may be a pattern
//! with one `*` (`claude-*`, `anthropic/*`): it serves every model name it
//! matches that no exact alias names, and a `*` in its deployments' models
//! stands for what the name's `*` matched, so agents' dated model names
//! route without an alias each.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chorus_proto::{ChatRequest, Price};

use crate::deployment::DeploymentHandle;
use crate::limits;
use crate::provider::Fit;
use crate::routing::balance::{self, Balancer, BalancerOptions, DEFAULT_STRATEGY};
use crate::routing::{FallbackNames, Need, RetryPolicy, Target};

/// Output tokens reserved for a request without `max_tokens`, unless the
/// alias says otherwise: enough for most replies.
pub const DEFAULT_MAX_TOKENS: u64 = 4096;

/// One alias: the deployments behind it, how it balances between them and
/// how it retries.
#[derive(Debug)]
pub struct AliasRoute {
    pub alias: String,
    pub targets: Vec<Target>,
    /// Output tokens reserved against limits for a request that sets no
    /// `max_tokens`.
    pub default_max_tokens: u64,
    pub retry: RetryPolicy,
    /// Where a request goes when this alias cannot answer it.
    pub fallbacks: FallbackNames,
    pub timeouts: Timeouts,
    /// Whether requests of one prompt-cache identity all go to one
    /// deployment (see `routing/affinity.rs`).
    pub cache_affinity: bool,
    balancer: Box<dyn Balancer>,
    /// Whether routing reads each request's token estimate: for the
    /// balancer, or for a deployment's tokens-per-minute quota.
    reads_tokens: bool,
}

/// How long an alias's calls may take; unset, the provider's `timeout_ms`
/// holds for the first and each later event, and a request has no
/// deadline beyond its calls'.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Timeouts {
    /// From a streaming call's start to its first content.
    pub ttft: Option<Duration>,
    /// Between a stream's events once content flows.
    pub idle: Option<Duration>,
    /// From the request's arrival to its last byte, retries and
    /// fallbacks included.
    pub total: Option<Duration>,
}

/// How an alias routes, as configured.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RouteOptions {
    pub strategy: &'static str,
    pub balancer: BalancerOptions,
    pub retry: RetryPolicy,
    pub timeouts: Timeouts,
    pub default_max_tokens: u64,
    pub cache_affinity: bool,
}

impl Default for RouteOptions {
    fn default() -> Self {
        RouteOptions {
            strategy: DEFAULT_STRATEGY,
            balancer: BalancerOptions::default(),
            retry: RetryPolicy::default(),
            timeouts: Timeouts::default(),
            default_max_tokens: DEFAULT_MAX_TOKENS,
            cache_affinity: false,
        }
    }
}

impl AliasRoute {
    /// `None` when `options` names no known strategy.
    pub fn new(alias: String, targets: Vec<Target>, options: RouteOptions) -> Option<Self> {
        let balancer = balance::named(options.strategy, &options.balancer)?;
        Some(Self::with_balancer(alias, targets, options, balancer))
    }

    /// An alias over `deployments`, each of weight 1, routed the default way.
    pub fn with_defaults(alias: String, deployments: Vec<DeploymentHandle>) -> Self {
        let targets = deployments.into_iter().map(Target::from).collect();
        let options = RouteOptions::default();
        Self::with_balancer(alias, targets, options, balance::default_balancer())
    }

    fn with_balancer(
        alias: String,
        targets: Vec<Target>,
        options: RouteOptions,
        balancer: Box<dyn Balancer>,
    ) -> Self {
        let reads_tokens = balancer.reads_tokens()
            || targets
                .iter()
                .any(|target| target.deployment.spec().quota.tpm.is_some());
        AliasRoute {
            alias,
            targets,
            default_max_tokens: options.default_max_tokens,
            retry: options.retry,
            fallbacks: FallbackNames::default(),
            timeouts: options.timeouts,
            cache_affinity: options.cache_affinity,
            balancer,
            reads_tokens,
        }
    }

    /// The highest prompt and completion prices among the deployments: what
    /// a request is reserved at before it is known which one serves it.
    /// A prompt token is priced at the most it may cost, which is a cache
    /// write where those cost more than fresh input.
    pub fn highest_price(&self) -> Price {
        self.targets
            .iter()
            .map(|target| target.deployment.spec().price)
            .fold(Price::default(), |highest, price| Price {
                input_micros_per_mtok: highest
                    .input_micros_per_mtok
                    .max(price.input_micros_per_mtok)
                    .max(price.cache_read_micros_per_mtok)
                    .max(price.cache_write_micros_per_mtok),
                output_micros_per_mtok: highest
                    .output_micros_per_mtok
                    .max(price.output_micros_per_mtok),
                ..Price::default()
            })
    }

    /// Whether any of its deployments can take a request that asks `fit`.
    pub fn serves(&self, fit: Fit) -> bool {
        self.targets
            .iter()
            .any(|target| fit.met_by(target.deployment.provider().as_ref()))
    }

    /// What routing needs to know of `request`; the token estimate only
    /// when something reads it.
    pub fn need(&self, request: &ChatRequest) -> Need {
        let (prompt_tokens, max_output_tokens) = if self.reads_tokens {
            limits::estimate::request_tokens(request, self)
        } else {
            (0, 0)
        };
        Need {
            stream: request.stream,
            prompt_tokens,
            max_output_tokens,
        }
    }

    pub(crate) fn balancer(&self) -> &dyn Balancer {
        self.balancer.as_ref()
    }
}

/// Whether `alias` is a pattern: it holds a `*`.
pub fn is_pattern(alias: &str) -> bool {
    alias.contains('*')
}

/// What the `*` of `pattern` stands for in `name`, when `pattern` (one
/// `*`, matching one or more characters) matches it.
pub fn pattern_match<'a>(pattern: &str, name: &'a str) -> Option<&'a str> {
    let (prefix, suffix) = pattern.split_once('*')?;
    let middle = name.strip_prefix(prefix)?.strip_suffix(suffix)?;
    (!middle.is_empty()).then_some(middle)
}

/// Every alias of the node, and every distinct deployment once.
#[derive(Debug, Default)]
pub struct Routes {
    aliases: HashMap<String, Arc<AliasRoute>>,
    /// In configuration order, for listings.
    alias_order: Vec<String>,
    deployments: Vec<DeploymentHandle>,
}

impl Routes {
    /// `deployments` is the distinct set the aliases refer to: one actor each.
    pub fn new(routes: Vec<AliasRoute>, deployments: Vec<DeploymentHandle>) -> Self {
        let alias_order = routes.iter().map(|route| route.alias.clone()).collect();
        let aliases = routes
            .into_iter()
            .map(|route| (route.alias.clone(), Arc::new(route)))
            .collect();
        Routes {
            aliases,
            alias_order,
            deployments,
        }
    }

    pub fn get(&self, alias: &str) -> Option<&Arc<AliasRoute>> {
        self.aliases.get(alias)
    }

    /// The route a client's model name takes: the exact alias, else the
    /// first pattern, in configuration order, that matches it, with what
    /// its `*` matched.
    pub fn resolve<'a>(&self, model: &'a str) -> Option<(&Arc<AliasRoute>, Option<&'a str>)> {
        if let Some(route) = self.aliases.get(model) {
            return Some((route, None));
        }
        self.alias_order.iter().find_map(|alias| {
            let matched = pattern_match(alias, model)?;
            Some((self.aliases.get(alias)?, Some(matched)))
        })
    }

    pub fn aliases(&self) -> impl Iterator<Item = &str> {
        self.alias_order.iter().map(String::as_str)
    }

    pub fn deployments(&self) -> &[DeploymentHandle] {
        &self.deployments
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{deployment, ledger};

    #[test]
    fn a_pattern_matches_what_no_exact_alias_names() {
        assert_eq!(
            pattern_match("claude-*", "claude-sonnet-4-5-20250929"),
            Some("sonnet-4-5-20250929")
        );
        assert_eq!(
            pattern_match("anthropic/*", "anthropic/claude-opus-4-1"),
            Some("claude-opus-4-1")
        );
        assert_eq!(pattern_match("*-latest", "gpt-latest"), Some("gpt"));
        assert_eq!(
            pattern_match("claude-*", "claude-"),
            None,
            "the star matches something"
        );
        assert_eq!(pattern_match("claude-*", "gpt-4o"), None);
        let ledger = ledger("test");
        let route =
            |alias: &str| AliasRoute::with_defaults(alias.into(), vec![deployment(alias, &ledger)]);
        let routes = Routes::new(
            vec![route("claude-*"), route("claude-haiku"), route("*")],
            Vec::new(),
        );
        let resolved = |name| {
            routes
                .resolve(name)
                .map(|(route, matched)| (route.alias.as_str(), matched))
        };
        assert_eq!(
            resolved("claude-haiku"),
            Some(("claude-haiku", None)),
            "exact wins"
        );
        assert_eq!(
            resolved("claude-opus-4-1"),
            Some(("claude-*", Some("opus-4-1")))
        );
        assert_eq!(
            resolved("gpt-4o"),
            Some(("*", Some("gpt-4o"))),
            "in configuration order"
        );
    }
}
