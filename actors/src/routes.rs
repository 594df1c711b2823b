//! The model table: which deployments serve each alias a client may ask for.

use std::collections::HashMap;
use std::sync::Arc;

use crate::balance::{Balancer, RoundRobin};
use crate::deployment::DeploymentHandle;

/// One alias and the deployments behind it.
#[derive(Debug)]
pub struct AliasRoute {
    pub alias: String,
    pub deployments: Vec<DeploymentHandle>,
    balancer: Box<dyn Balancer>,
}

impl AliasRoute {
    pub fn new(alias: String, deployments: Vec<DeploymentHandle>) -> Self {
        AliasRoute {
            alias,
            deployments,
            balancer: Box::new(RoundRobin::default()),
        }
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
