//! `GossipActor`: every gossip interval it reads what every node publishes,
//! merges their counter contributions into the ledger and their deployment
//! reports into each deployment's cluster view, then publishes this node's
//! own figures — and the counter contributions of processes whose gossip
//! state is gone, so a node that joins later still learns them. The gossip layer itself
//! (chitchat, in `node`) is reached through [`GossipBus`], so this actor is
//! tested without sockets.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use chorus_proto::gossip::DeploymentReport;
use futures::future::BoxFuture;
use ractor::{Actor, ActorProcessingErr, ActorRef};

use crate::cluster_view::{merge, NodeReport};
use crate::deployment::DeploymentHandle;
use crate::ledger::{Contribution, ContributorId, Ledger};

/// Everything read from gossip in one exchange, one set per node id (a
/// restarted node counts once, as its newest generation).
#[derive(Debug, Default)]
pub struct GossipRead {
    /// The contributor ids (`node#generation`) of every process whose own
    /// gossip state the cluster still holds, alive or dead.
    pub publishers: Vec<ContributorId>,
    pub deployments: Vec<NodeReport>,
    /// Every contribution any node publishes, its own or one it holds.
    pub counters: Vec<Contribution>,
}

/// What the actors need from the gossip layer.
pub trait GossipBus: Send + Sync + 'static {
    /// Sets this node's published reports and counter contributions.
    fn publish(
        &self,
        deployments: Vec<(String, DeploymentReport)>,
        counters: Vec<Contribution>,
    ) -> BoxFuture<'_, ()>;
    fn read(&self) -> BoxFuture<'_, GossipRead>;
}

#[derive(Clone)]
pub struct GossipArgs {
    pub bus: Arc<dyn GossipBus>,
    pub deployments: Vec<DeploymentHandle>,
    pub ledger: Ledger,
    pub interval: Duration,
}

#[derive(Debug)]
pub enum GossipMsg {
    /// Merge everyone's, publish ours.
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

    /// A last exchange on the way out, so counts made since the previous
    /// one reach the peers before the node leaves.
    async fn post_stop(
        &self,
        _myself: ActorRef<Self::Msg>,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        exchange(state).await;
        Ok(())
    }
}

async fn exchange(state: &GossipArgs) {
    let read = state.bus.read().await;
    for (name, node, total) in &read.counters {
        state.ledger.observe(name, node, *total);
    }
    let mut by_deployment: HashMap<&str, Vec<NodeReport>> = HashMap::new();
    for report in &read.deployments {
        by_deployment
            .entry(report.deployment.as_str())
            .or_default()
            .push(report.clone());
    }
    for deployment in &state.deployments {
        let reports = by_deployment
            .get(deployment.name())
            .map(Vec::as_slice)
            .unwrap_or_default();
        deployment.set_cluster_stats(merge(reports));
    }

    // Our own counts, and those of processes whose gossip state is gone
    // (garbage-collected, or a whole cluster restarted from its stores):
    // while a process's state is still gossiped, it speaks for itself.
    let publishing: HashSet<&str> = read.publishers.iter().map(String::as_str).collect();
    let self_id = state.ledger.contributor();
    let counters = state
        .ledger
        .contributions()
        .into_iter()
        .filter(|(_, contributor, _)| {
            contributor == self_id || !publishing.contains(contributor.as_str())
        })
        .collect();
    let deployments = state
        .deployments
        .iter()
        .map(|deployment| (deployment.name().to_owned(), deployment.stats().report()))
        .collect();
    state.bus.publish(deployments, counters).await;
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;
    use crate::deployment::Health;

    type Published = (Vec<(String, DeploymentReport)>, Vec<Contribution>);

    /// This node's published state, plus what a fixed set of peers says.
    struct InMemoryBus {
        published: Mutex<Published>,
        peers: GossipRead,
    }

    impl GossipBus for InMemoryBus {
        fn publish(
            &self,
            deployments: Vec<(String, DeploymentReport)>,
            counters: Vec<Contribution>,
        ) -> BoxFuture<'_, ()> {
            *self.published.lock().unwrap() = (deployments, counters);
            Box::pin(async {})
        }

        fn read(&self) -> BoxFuture<'_, GossipRead> {
            let (ours, _) = self.published.lock().unwrap().clone();
            let mut deployments: Vec<NodeReport> = ours
                .into_iter()
                .map(|(deployment, report)| NodeReport {
                    node_id: "self".into(),
                    alive: true,
                    deployment,
                    report,
                })
                .collect();
            deployments.extend(self.peers.deployments.iter().cloned());
            let read = GossipRead {
                publishers: self.peers.publishers.clone(),
                deployments,
                counters: self.peers.counters.clone(),
            };
            Box::pin(async move { read })
        }
    }

    #[tokio::test]
    async fn merges_peers_and_republishes_dead_nodes_counts() {
        let ledger = Ledger::new("self", Vec::new());
        ledger.add("calls/p/m", 2);
        let deployment = crate::testing::deployment("p/m", ledger.clone());
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
        let peers = GossipRead {
            publishers: vec!["self".into(), "peer".into()],
            deployments: vec![peer],
            counters: vec![
                ("calls/p/m".into(), "peer".into(), 5),
                ("calls/p/m".into(), "gone".into(), 9),
            ],
        };
        let bus = Arc::new(InMemoryBus {
            published: Mutex::new(Default::default()),
            peers,
        });
        let args = GossipArgs {
            bus: bus.clone(),
            deployments: vec![deployment.clone()],
            ledger: ledger.clone(),
            interval: Duration::from_secs(60),
        };
        exchange(&args).await;
        exchange(&args).await;

        assert_eq!(ledger.total("calls/p/m"), 2 + 5 + 9);
        let (reports, counters) = bus.published.lock().unwrap().clone();
        assert_eq!(reports[0].1.in_flight, 1);
        assert_eq!(
            counters,
            [
                ("calls/p/m".to_owned(), "gone".to_owned(), 9),
                ("calls/p/m".to_owned(), "self".to_owned(), 2)
            ],
            "our own count and the dead node's, not the live peer's"
        );
        let view = deployment.cluster_stats().unwrap();
        assert_eq!((view.nodes, view.in_flight, view.finished), (2, 5, 7));
        assert_eq!(view.health, Health::Failing);
    }
}
