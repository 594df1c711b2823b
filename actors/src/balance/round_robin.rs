//! Round robin: each deployment in turn, whatever its load.

use std::sync::atomic::{AtomicUsize, Ordering};

use super::Balancer;
use crate::deployment::DeploymentHandle;

#[derive(Debug, Default)]
pub struct RoundRobin {
    next: AtomicUsize,
}

impl Balancer for RoundRobin {
    fn choose<'a>(&self, candidates: &'a [DeploymentHandle]) -> Option<&'a DeploymentHandle> {
        if candidates.is_empty() {
            return None;
        }
        let turn = self.next.fetch_add(1, Ordering::Relaxed);
        candidates.get(turn % candidates.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{deployment as canned, ledger};

    fn deployment(name: &str) -> DeploymentHandle {
        canned(name, &ledger("test"))
    }

    #[test]
    fn takes_turns_and_handles_empty_lists() {
        let balancer = RoundRobin::default();
        let deployments = [deployment("a"), deployment("b"), deployment("c")];
        let picks: Vec<&str> = (0..6)
            .filter_map(|_| balancer.choose(&deployments).map(DeploymentHandle::name))
            .collect();
        assert_eq!(picks, ["a", "b", "c", "a", "b", "c"]);
        assert!(balancer.choose(&[]).is_none());
    }
}
