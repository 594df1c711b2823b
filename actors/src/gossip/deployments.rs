//! The deployments section: each node publishes its live report on every
//! deployment (`deployment name` → report) whenever it changes, and merges
//! the reports of every node's newest run into each deployment's
//! cluster-wide view. A breaker a live peer opened is opened here too.

use std::collections::HashMap;

use chorus_proto::gossip::DeploymentReport;

use super::bus::{Change, Liveness, Observed, RunStatus, Section};
use crate::clock::unix_millis;
use crate::cluster_view::{merge, NodeReport};
use crate::deployment::DeploymentHandle;
use crate::ledger::NodeId;

#[derive(Default)]
pub(super) struct DeploymentSection {
    /// Every other node's reports, from its newest run.
    peers: HashMap<NodeId, PeerReports>,
    /// What this node last published, by deployment.
    published: HashMap<String, DeploymentReport>,
}

struct PeerReports {
    generation: u64,
    by_deployment: HashMap<String, DeploymentReport>,
}

impl DeploymentSection {
    pub fn observe(&mut self, observed: &Observed) {
        let Some(report) = DeploymentReport::decode(&observed.value) else {
            tracing::debug!(publisher = %observed.publisher.node_id, deployment = %observed.key,
                "ignored an unreadable deployment report");
            return;
        };
        let generation = observed.publisher.generation;
        let peer = self
            .peers
            .entry(observed.publisher.node_id.clone())
            .or_insert_with(|| PeerReports {
                generation,
                by_deployment: HashMap::new(),
            });
        if generation < peer.generation {
            return;
        }
        if generation > peer.generation {
            *peer = PeerReports {
                generation,
                by_deployment: HashMap::new(),
            };
        }
        peer.by_deployment.insert(observed.key.clone(), report);
    }

    /// Merges this node's live figures and every peer's last report into
    /// each deployment's cluster-wide view. Peers gossip has forgotten are
    /// forgotten here too.
    pub fn update_views(
        &mut self,
        own_node_id: &str,
        deployments: &[DeploymentHandle],
        runs: &[RunStatus],
    ) {
        let by_run: HashMap<(&str, u64), Liveness> = runs
            .iter()
            .map(|status| {
                (
                    (status.run.node_id.as_str(), status.run.generation),
                    status.liveness,
                )
            })
            .collect();
        let liveness = |node_id: &str, generation: u64| by_run.get(&(node_id, generation)).copied();
        let now_ms = unix_millis();
        self.peers.retain(|node_id, peer| {
            liveness(node_id, peer.generation)
                .is_some_and(|liveness| liveness != Liveness::Departed)
        });
        for deployment in deployments {
            let own = NodeReport {
                node_id: own_node_id.to_owned(),
                alive: true,
                deployment: deployment.name().to_owned(),
                report: deployment.stats().report(),
            };
            let peers = self.peers.iter().filter_map(|(node_id, peer)| {
                let report = peer.by_deployment.get(deployment.name())?;
                Some(NodeReport {
                    node_id: node_id.clone(),
                    alive: liveness(node_id, peer.generation) == Some(Liveness::Alive),
                    deployment: deployment.name().to_owned(),
                    report: *report,
                })
            });
            let reports: Vec<NodeReport> = std::iter::once(own).chain(peers).collect();
            let mut merged = merge(&reports);
            merged.peers_in_flight = reports[1..]
                .iter()
                .filter(|peer| peer.alive)
                .fold(0u64, |sum, peer| sum.saturating_add(peer.report.in_flight));
            for peer in reports[1..].iter().filter(|peer| peer.alive) {
                if let Some(until) = peer.report.breaker_open_until_ms {
                    deployment.breaker().open_until(until, now_ms);
                }
            }
            deployment.set_cluster_stats(merged);
        }
    }

    /// This node's reports that changed since they were last published.
    pub fn changes(&mut self, deployments: &[DeploymentHandle]) -> Vec<Change> {
        let mut changes = Vec::new();
        let now_ms = unix_millis();
        for deployment in deployments {
            let mut report = deployment.stats().report();
            report.breaker_open_until_ms = deployment.breaker().opened_here_until_ms(now_ms);
            if self.published.get(deployment.name()) != Some(&report) {
                self.published.insert(deployment.name().to_owned(), report);
                changes.push(Change::Set {
                    section: Section::Deployments,
                    key: deployment.name().to_owned(),
                    value: report.encode(),
                });
            }
        }
        changes
    }
}
