//! The model table: which deployments serve each alias a client may ask for.

use std::collections::HashMap;
use std::sync::Arc;

use chorus_proto::Price;

use crate::balance::{Balancer, RoundRobin};
use crate::deployment::DeploymentHandle;

/// Output tokens reserved for a request without `max_tokens`, unless the
/// alias says otherwise: enough for most replies.
pub const DEFAULT_MAX_TOKENS: u64 = 4096;

/// One alias and the deployments behind it.
#[derive(Debug)]
pub struct AliasRoute {
    pub alias: String,
    pub deployments: Vec<DeploymentHandle>,
    /// Output tokens reserved against limits for a request that sets no
    /// `max_tokens`.
    pub default_max_tokens: u64,
    balancer: Box<dyn Balancer>,
}

impl AliasRoute {
    pub fn new(alias: String, deployments: Vec<DeploymentHandle>) -> Self {
        AliasRoute {
            alias,
            deployments,
            default_max_tokens: DEFAULT_MAX_TOKENS,
            balancer: Box::new(RoundRobin::default()),
        }
    }

    pub fn with_default_max_tokens(self, default_max_tokens: u64) -> Self {
        AliasRoute {
            default_max_tokens,
            ..self
        }
    }

    /// The highest prompt and completion prices among the deployments: what
    /// a request is reserved at before it is known which one serves it.
    pub fn highest_price(&self) -> Price {
        self.deployments
            .iter()
            .map(|deployment| deployment.spec().price)
            .fold(Price::default(), |highest, price| Price {
                input_micros_per_mtok: highest
                    .input_micros_per_mtok
                    .max(price.input_micros_per_mtok),
                output_micros_per_mtok: highest
                    .output_micros_per_mtok
                    .max(price.output_micros_per_mtok),
            })
    }

    pub fn choose(&self) -> Option<&DeploymentHandle> {
        self.balancer.choose(&self.deployments)
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
