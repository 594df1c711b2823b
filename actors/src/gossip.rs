//! `GossipActor`: every gossip interval it reads what changed in the
//! cluster's gossip state since the last round, merges it — counter
//! tallies into the ledger, deployment reports into each deployment's
//! cluster-wide view — and publishes what changed in this node's own:
//! its reports, its tallies, and the tallies it republishes for runs gossip
//! has forgotten. The gossip layer itself (chitchat, in `node`) is reached
//! through [`GossipBus`], so this actor is tested without sockets.

mod bus;
mod counters;
mod deployments;

use std::sync::Arc;
use std::time::Duration;

use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};

pub use bus::{Change, GossipBus, GossipRead, Liveness, Observed, RunStatus, Section};
use counters::CounterSection;
use deployments::DeploymentSection;

use crate::clock::unix_millis;
use crate::deployment::DeploymentHandle;
use crate::ledger::Ledger;

#[derive(Clone)]
pub struct GossipArgs {
    pub bus: Arc<dyn GossipBus>,
    pub deployments: Vec<DeploymentHandle>,
    pub ledger: Ledger,
    pub interval: Duration,
    /// How long after start a run the ledger knows but gossip has not
    /// mentioned may still be a live peer not heard from yet.
    pub settle: Duration,
}

#[derive(Debug)]
pub enum GossipMsg {
    /// Merge what changed, publish ours.
    Exchange,
    /// One more exchange, answered once published: the node is leaving.
    FinalExchange(RpcReplyPort<()>),
}

pub struct GossipActor;

pub struct GossipState {
    args: GossipArgs,
    counters: CounterSection,
    deployments: DeploymentSection,
}

impl Actor for GossipActor {
    type Msg = GossipMsg;
    type State = GossipState;
    type Arguments = GossipArgs;

    /// A restarted actor publishes every own tally again, so it knows
    /// which keys it has set.
    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        args: GossipArgs,
    ) -> Result<Self::State, ActorProcessingErr> {
        myself.send_interval(args.interval, || GossipMsg::Exchange);
        args.ledger.mark_all_unpublished();
        Ok(GossipState {
            counters: CounterSection::new(args.settle),
            deployments: DeploymentSection::default(),
            args,
        })
    }

    async fn handle(
        &self,
        _myself: ActorRef<Self::Msg>,
        message: GossipMsg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        exchange(state).await;
        if let GossipMsg::FinalExchange(reply) = message {
            let _ = reply.send(());
        }
        Ok(())
    }
}

async fn exchange(state: &mut GossipState) {
    let GossipState {
        args,
        counters,
        deployments,
    } = state;
    let read = args.bus.read().await;
    for observed in &read.changes {
        match observed.section {
            Section::Counters => counters.observe(&args.ledger, observed),
            Section::Deployments => deployments.observe(observed),
        }
    }
    deployments.update_views(args.ledger.node_id(), &args.deployments, &read.runs);
    let mut changes = deployments.changes(&args.deployments);
    changes.extend(counters.changes(&args.ledger, &read.runs, unix_millis()));
    if !changes.is_empty() {
        args.bus.publish(changes).await;
    }
}

#[cfg(test)]
mod tests;
