//! The model table: which deployments serve each alias a client may ask
//! for, and how the alias chooses among them.

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
}

impl Default for RouteOptions {
    fn default() -> Self {
        RouteOptions {
            strategy: DEFAULT_STRATEGY,
            balancer: BalancerOptions::default(),
            retry: RetryPolicy::default(),
            timeouts: Timeouts::default(),
            default_max_tokens: DEFAULT_MAX_TOKENS,
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

    pub fn aliases(&self) -> impl Iterator<Item = &str> {
        self.alias_order.iter().map(String::as_str)
    }

    pub fn deployments(&self) -> &[DeploymentHandle] {
        &self.deployments
    }
}
