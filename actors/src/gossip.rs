//! `GossipActor`: every gossip interval it publishes this node's figures
//! for each deployment and merges every node's into the cluster view that
//! each `DeploymentHandle` carries for the balancers. The gossip layer
//! itself (chitchat, in `node`) is reached through [`GossipBus`], so this
//! actor is tested without sockets.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chorus_proto::gossip::DeploymentReport;
use futures::future::BoxFuture;
use ractor::{Actor, ActorProcessingErr, ActorRef};

use crate::cluster_view::{merge, NodeReport};
use crate::deployment::DeploymentHandle;

/// What the actors need from the gossip layer.
pub trait GossipBus: Send + Sync + 'static {
    /// Replaces this node's published reports.
    fn publish_deployments(&self, reports: Vec<(String, DeploymentReport)>) -> BoxFuture<'_, ()>;
    /// Every known node's reports (this node's included), one set per node
    /// id: a restarted node counts once, as its newest generation.
    fn deployment_reports(&self) -> BoxFuture<'_, Vec<NodeReport>>;
}

#[derive(Clone)]
pub struct GossipArgs {
    pub bus: Arc<dyn GossipBus>,
    pub deployments: Vec<DeploymentHandle>,
    pub interval: Duration,
}

#[derive(Debug)]
pub enum GossipMsg {
    /// Publish ours, merge everyone's.
    Exchange,
}

pub struct GossipActor;

impl Actor for GossipActor {
    type Msg = GossipMsg;
    type State = GossipArgs;
    type Arguments = GossipArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        args: GossipArgs,
    ) -> Result<Self::State, ActorProcessingErr> {
        myself.send_interval(args.interval, || GossipMsg::Exchange);
        Ok(args)
    }

    async fn handle(
        &self,
        _myself: ActorRef<Self::Msg>,
        GossipMsg::Exchange: GossipMsg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        exchange(state).await;
        Ok(())
    }
}

async fn exchange(state: &GossipArgs) {
    let ours = state
        .deployments
        .iter()
        .map(|deployment| (deployment.name().to_owned(), deployment.stats().report()))
        .collect();
    state.bus.publish_deployments(ours).await;
    let mut by_deployment: HashMap<String, Vec<NodeReport>> = HashMap::new();
    for report in state.bus.deployment_reports().await {
        by_deployment
            .entry(report.deployment.clone())
            .or_default()
            .push(report);
    }
    for deployment in &state.deployments {
        let reports = by_deployment
            .get(deployment.name())
            .map(Vec::as_slice)
            .unwrap_or_default();
        deployment.set_cluster_stats(merge(reports));
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;
    use crate::deployment::DeploymentSpec;
    use crate::provider::{Provider, ProviderError, UpstreamCall, UpstreamReply};

    /// Two "nodes" in memory: what we publish plus a fixed peer report.
    struct InMemoryBus {
        ours: Mutex<Vec<(String, DeploymentReport)>>,
        peer: NodeReport,
    }

    impl GossipBus for InMemoryBus {
        fn publish_deployments(
            &self,
            reports: Vec<(String, DeploymentReport)>,
        ) -> BoxFuture<'_, ()> {
            if let Ok(mut ours) = self.ours.lock() {
                *ours = reports;
            }
            Box::pin(async {})
        }

        fn deployment_reports(&self) -> BoxFuture<'_, Vec<NodeReport>> {
            let mut all: Vec<NodeReport> = self
                .ours
                .lock()
                .map(|ours| {
                    ours.iter()
                        .map(|(deployment, report)| NodeReport {
                            node_id: "self".into(),
                            alive: true,
                            deployment: deployment.clone(),
                            report: *report,
                        })
                        .collect()
                })
                .unwrap_or_default();
            all.push(self.peer.clone());
            Box::pin(async move { all })
        }
    }

    struct Unused;
    impl Provider for Unused {
        fn send(
            &self,
            _: UpstreamCall,
        ) -> BoxFuture<'static, Result<UpstreamReply, ProviderError>> {
            Box::pin(async { Err(ProviderError::Unreachable("unused".into())) })
        }
    }

    #[tokio::test]
    async fn publishes_local_figures_and_merges_the_peers() {
        let spec = DeploymentSpec {
            name: "p/m".into(),
            provider: "p".into(),
            upstream_model: "m".into(),
            input_per_mtok: 0.0,
            output_per_mtok: 0.0,
            timeout: Duration::from_secs(1),
        };
        let deployment = DeploymentHandle::new(spec, Arc::new(Unused));
        let _call = deployment.start_call();
        let peer = NodeReport {
            node_id: "peer".into(),
            alive: true,
            deployment: "p/m".into(),
            report: DeploymentReport {
                in_flight: 4,
                finished: 7,
                consecutive_failures: 3,
                ..DeploymentReport::default()
            },
        };
        let bus = Arc::new(InMemoryBus {
            ours: Mutex::new(Vec::new()),
            peer,
        });
        let args = GossipArgs {
            bus: bus.clone(),
            deployments: vec![deployment.clone()],
            interval: Duration::from_secs(60),
        };
        exchange(&args).await;
        assert_eq!(bus.ours.lock().unwrap()[0].1.in_flight, 1);
        let view = deployment.cluster_stats().unwrap();
        assert_eq!((view.nodes, view.in_flight, view.finished), (2, 5, 7));
        assert_eq!(view.health, crate::deployment::Health::Failing);
    }
}
