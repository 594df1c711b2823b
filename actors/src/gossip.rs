//! `GossipActor`: every gossip interval it reads what changed in the
//! cluster's gossip state since the last round, merges it — counter
//! tallies into the ledger, deployment reports into each deployment's
//! cluster-wide view, keys and teams into the admin registry — and
//! publishes what changed in this node's own: its reports, its tallies,
//! the tallies it republishes for runs gossip has forgotten, and the admin
//! registers it is responsible for. An admin change, made here or arriving
//! from a peer, does not wait for the interval: it triggers an exchange at
//! once, so a key created on one node works on every node within a gossip
//! round. The gossip layer itself (chitchat, in `node`) is reached through
//! [`GossipBus`], so this actor is tested without sockets.

mod admin;
mod bus;
mod counters;
mod deployments;
mod load;

use std::sync::Arc;

use std::time::{Duration, Instant};

use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};

use admin::AdminSection;
pub use bus::{Change, GossipBus, GossipRead, Liveness, Observed, RunStatus, Section};
use counters::CounterSection;
use deployments::DeploymentSection;
use load::LoadSection;

use crate::admin::AdminRegistry;
use crate::clock::unix_millis;
use crate::deployment::DeploymentHandle;
use crate::ledger::{Ledger, RunId};
use crate::limits::Limiter;

#[derive(Clone)]
pub struct GossipArgs {
    pub bus: Arc<dyn GossipBus>,
    pub deployments: Vec<DeploymentHandle>,
    pub ledger: Ledger,
    pub admin: AdminRegistry,
    pub limiter: Limiter,
    pub interval: Duration,
    /// How long after start a run the ledger knows but gossip has not
    /// mentioned may still be a live peer not heard from yet.
    pub settle: Duration,
}

#[derive(Debug)]
pub enum GossipMsg {
    /// A gossip interval has passed: merge what changed, publish ours.
    Exchange,
    /// News (an admin change) waits: merge and publish it now.
    News,
    /// One more exchange, answered once published with how much longer
    /// than usual peers need to take it all: the node is leaving.
    FinalExchange(RpcReplyPort<Duration>),
}

/// Why an exchange happens, which sets how many of its own counts a node
/// may publish in it (see the `counters` module).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Occasion {
    /// A new interval: a new allowance.
    Round,
    /// Within an interval: what is left of its allowance.
    News,
    /// The node is leaving: everything, so no count stays behind.
    Leaving,
}

pub struct GossipActor;

pub struct GossipState {
    args: GossipArgs,
    counters: CounterSection,
    deployments: DeploymentSection,
    admin: AdminSection,
    load: LoadSection,
    /// Turns news into immediate exchanges; ends with the actor.
    news_watch: Option<tokio::task::JoinHandle<()>>,
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
            admin: AdminSection::new(Instant::now() + args.settle),
            load: LoadSection::default(),
            news_watch: Some(watch_news(&args, myself)),
            args,
        })
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<Self::Msg>,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        if let Some(watch) = state.news_watch.take() {
            watch.abort();
        }
        Ok(())
    }

    async fn handle(
        &self,
        _myself: ActorRef<Self::Msg>,
        message: GossipMsg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            GossipMsg::Exchange => {
                let started = Instant::now();
                let timings = exchange(state, Occasion::Round).await;
                let took = started.elapsed();
                if took > state.args.interval {
                    tracing::warn!(
                        took_ms = took.as_millis() as u64,
                        ?timings,
                        "a gossip exchange took longer than the gossip interval"
                    );
                }
            }
            GossipMsg::News => {
                exchange(state, Occasion::News).await;
            }
            GossipMsg::FinalExchange(reply) => {
                let published = exchange(state, Occasion::Leaving).await.published_bytes;
                // Each round a peer takes up to one exchange's worth.
                let rounds = published.div_ceil(EXCHANGE_CARRIES) as u32;
                let _ = reply.send(state.args.interval * rounds.saturating_sub(1));
            }
        }
        Ok(())
    }
}

/// Asks for an exchange whenever an admin change waits: made here, or
/// arrived from a peer. Exchanges that find nothing new cost little.
fn watch_news(args: &GossipArgs, myself: ActorRef<GossipMsg>) -> tokio::task::JoinHandle<()> {
    let bus = args.bus.clone();
    let admin = args.admin.clone();
    tokio::spawn(async move {
        loop {
            tokio::select! {
                () = bus.news() => {}
                () = admin.changed_here() => {}
            }
            if myself.cast(GossipMsg::News).is_err() {
                return;
            }
        }
    })
}

/// About what one exchange carries to a peer: chitchat's UDP payload.
const EXCHANGE_CARRIES: usize = 60_000;

/// Where an exchange spent its time, for the warning when it took longer
/// than the gossip interval (a node that falls behind its own rounds
/// delays every admin change it takes), and how much it published.
#[derive(Debug, Default)]
struct Timings {
    read: Duration,
    merge: Duration,
    counters: Duration,
    admin: Duration,
    publish: Duration,
    published_bytes: usize,
}

async fn exchange(state: &mut GossipState, occasion: Occasion) -> Timings {
    let GossipState {
        args,
        counters,
        deployments,
        admin,
        load,
        ..
    } = state;
    let mut timings = Timings::default();
    let mut lap = Instant::now();
    let mut split = |slot: &mut Duration| {
        *slot = lap.elapsed();
        lap = Instant::now();
    };
    let read = args.bus.read().await;
    split(&mut timings.read);
    for observed in &read.changes {
        match observed.section {
            Section::Counters => counters.observe(&args.ledger, observed),
            Section::Deployments => deployments.observe(observed),
            Section::Admin => admin.observe(&args.admin, observed),
            Section::Load => load.observe(&args.limiter, observed, unix_millis()),
        }
    }
    let live: Vec<RunId> = read
        .runs
        .iter()
        .filter(|status| status.liveness == Liveness::Alive)
        .map(|status| status.run.clone())
        .collect();
    // Every live run but this node's own: what limits and quotas share with.
    args.ledger
        .set_live_peers(live.len().saturating_sub(1) as u64);
    args.ledger.set_alive_runs(live);
    deployments.update_views(args.ledger.node_id(), &args.deployments, &read.runs);
    let mut changes = deployments.changes(&args.deployments);
    split(&mut timings.merge);
    changes.extend(counters.changes(&args.ledger, &read.runs, occasion, unix_millis()));
    split(&mut timings.counters);
    changes.extend(admin.changes(&args.admin, &read.runs, args.ledger.node_id()));
    changes.extend(load.changes(&args.limiter, &read.runs, unix_millis()));
    split(&mut timings.admin);
    timings.published_bytes = changes
        .iter()
        .map(|change| match change {
            Change::Set { key, value, .. } => key.len() + value.len(),
            Change::Delete { key, .. } => key.len(),
        })
        .sum();
    if !changes.is_empty() {
        args.bus.publish(changes).await;
    }
    split(&mut timings.publish);
    timings
}

#[cfg(test)]
mod tests;
