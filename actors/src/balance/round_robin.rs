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
    use crate::deployment::DeploymentSpec;
    use crate::provider::{Provider, ProviderError, UpstreamCall, UpstreamReply};
    use futures::future::BoxFuture;
    use std::sync::Arc;
    use std::time::Duration;

    struct Unused;
    impl Provider for Unused {
        fn send(
            &self,
            _: UpstreamCall,
        ) -> BoxFuture<'static, Result<UpstreamReply, ProviderError>> {
            Box::pin(async { Err(ProviderError::Unreachable("unused".into())) })
        }
    }

    fn deployment(name: &str) -> DeploymentHandle {
        let spec = DeploymentSpec {
            name: name.into(),
            provider: "p".into(),
            upstream_model: name.into(),
            input_per_mtok: 0.0,
            output_per_mtok: 0.0,
            timeout: Duration::from_secs(1),
        };
        DeploymentHandle::new(
            spec,
            Arc::new(Unused),
            crate::ledger::Ledger::new("test", Vec::new()),
        )
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
