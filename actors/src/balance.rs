//! Choosing a deployment for a request. One trait, one small file per
//! strategy; each reads the deployments' published stats, never an actor.

mod round_robin;

pub use round_robin::RoundRobin;

use crate::deployment::DeploymentHandle;

pub trait Balancer: Send + Sync + std::fmt::Debug {
    /// Picks one of `candidates`, or `None` when there are none.
    fn choose<'a>(&self, candidates: &'a [DeploymentHandle]) -> Option<&'a DeploymentHandle>;
}
