//! `NodeSupervisor`: the root of a node's supervision tree. It starts one
//! `DeploymentActor` per deployment, the `LedgerActor` when counts are
//! stored, the `GossipActor` in a cluster and the `LimitsActor`, and
//! restarts any that fails —
//! a deployment's handle is pointed at its new actor so samples keep
//! flowing. ractor has no restart strategy of its own and by default stops
//! a supervisor whose child fails, hence `handle_supervisor_evt` below.
//!
//! On shutdown it drains in order: one last gossip exchange, a pause for
//! peers to take it, then the last store flush.

use std::collections::HashMap;
use std::time::Duration;

use ractor::{
    Actor, ActorCell, ActorId, ActorProcessingErr, ActorRef, RpcReplyPort, SupervisionEvent,
};

use crate::deployment::{DeploymentActor, DeploymentHandle};
use crate::gossip::{GossipActor, GossipArgs, GossipMsg};
use crate::ledger::{LedgerActor, LedgerArgs, LedgerMsg};
use crate::limits::{Idleness, Limiter, LimitsActor, LimitsArgs};

/// How long each drain step may take before shutdown goes on without it.
const DRAIN_STEP_LIMIT: Duration = Duration::from_secs(5);

pub struct NodeSupervisor;

/// What the supervisor starts.
pub struct SupervisorArgs {
    pub deployments: Vec<DeploymentHandle>,
    /// `None` on a node without a cluster.
    pub gossip: Option<GossipArgs>,
    /// `None` on a node without storage: counts live in memory only.
    pub ledger: Option<LedgerArgs>,
    /// The keys' and teams' limits: a `KeyActor` keeps each key or team
    /// in use.
    pub limiter: Limiter,
}

/// A running supervision tree; stop it to stop every child.
pub struct SupervisorHandle {
    actor: ActorRef<SupervisorMsg>,
    done: tokio::task::JoinHandle<()>,
}

impl NodeSupervisor {
    pub async fn start(args: SupervisorArgs) -> Result<SupervisorHandle, ractor::SpawnErr> {
        let (actor, done) = Actor::spawn(None, NodeSupervisor, args).await?;
        Ok(SupervisorHandle { actor, done })
    }
}

impl SupervisorHandle {
    /// Publishes the last counts to peers, waits `for_peers` for them to
    /// take them, then writes the last counts to the store. Call it once no
    /// request is under way any more.
    pub async fn drain(&self, for_peers: Duration) {
        let drained = self
            .actor
            .call(
                |reply| SupervisorMsg::Drain { for_peers, reply },
                Some(for_peers + DRAIN_STEP_LIMIT * 3),
            )
            .await;
        if !matches!(drained, Ok(ractor::rpc::CallResult::Success(()))) {
            tracing::warn!("the final gossip exchange or store flush did not finish in time");
        }
    }

    /// Stops the children first and waits for them, then the supervisor.
    pub async fn stop(self) {
        self.actor
            .stop_children_and_wait(None, Some(std::time::Duration::from_secs(5)))
            .await;
        self.actor.stop(None);
        let _ = self.done.await;
    }
}

/// A supervised child, with what it takes to start it again.
#[derive(Clone)]
pub enum Child {
    Deployment(DeploymentHandle),
    Gossip(GossipArgs),
    Ledger(LedgerArgs),
    Limits(LimitsArgs),
}

impl Child {
    async fn start(&self, supervisor: ActorCell) -> Result<ActorCell, ActorProcessingErr> {
        let cell = match self {
            Child::Deployment(handle) => {
                Actor::spawn_linked(None, DeploymentActor, handle.clone(), supervisor)
                    .await?
                    .0
                    .get_cell()
            }
            Child::Gossip(args) => Actor::spawn_linked(None, GossipActor, args.clone(), supervisor)
                .await?
                .0
                .get_cell(),
            Child::Ledger(args) => Actor::spawn_linked(None, LedgerActor, args.clone(), supervisor)
                .await?
                .0
                .get_cell(),
            Child::Limits(args) => Actor::spawn_linked(None, LimitsActor, args.clone(), supervisor)
                .await?
                .0
                .get_cell(),
        };
        Ok(cell)
    }

    fn name(&self) -> &str {
        match self {
            Child::Deployment(handle) => handle.name(),
            Child::Gossip(_) => "gossip",
            Child::Ledger(_) => "ledger",
            Child::Limits(_) => "limits",
        }
    }
}

pub enum SupervisorMsg {
    /// Try again to start a child whose restart failed (sent to itself).
    Restart(Child),
    /// Final gossip exchange, a pause for peers, final store flush.
    Drain {
        for_peers: Duration,
        reply: RpcReplyPort<()>,
    },
}

/// A failed restart must not take the supervisor down with it (ractor
/// would then stop every other child): it is retried after a pause.
const RESTART_RETRY: std::time::Duration = std::time::Duration::from_secs(1);

async fn restart(myself: &ActorRef<SupervisorMsg>, state: &mut SupervisorState, child: Child) {
    match child.start(myself.get_cell()).await {
        Ok(cell) => {
            state.children.insert(cell.get_id(), (child, cell));
        }
        Err(error) => {
            tracing::error!(child = %child.name(), %error, retry_s = RESTART_RETRY.as_secs(), "cannot restart actor");
            myself.send_after(RESTART_RETRY, move || SupervisorMsg::Restart(child));
        }
    }
}

pub struct SupervisorState {
    children: HashMap<ActorId, (Child, ActorCell)>,
}

impl SupervisorState {
    fn find(&self, pick: impl Fn(&Child) -> bool) -> Option<ActorCell> {
        self.children
            .values()
            .find(|(child, _)| pick(child))
            .map(|(_, cell)| cell.clone())
    }
}

async fn drain(state: &SupervisorState, for_peers: Duration) {
    if let Some(gossip) = state.find(|child| matches!(child, Child::Gossip(_))) {
        let gossip: ActorRef<GossipMsg> = gossip.into();
        let longer = match gossip
            .call(GossipMsg::FinalExchange, Some(DRAIN_STEP_LIMIT))
            .await
        {
            Ok(ractor::rpc::CallResult::Success(longer)) => longer,
            Ok(_) => Duration::ZERO,
            Err(error) => {
                tracing::warn!(%error, "the final gossip exchange failed");
                Duration::ZERO
            }
        };
        // Counts that waited their turn all went out at once: peers get
        // the rounds they need to take them, within reason.
        tokio::time::sleep(for_peers + longer.min(DRAIN_STEP_LIMIT)).await;
    }
    if let Some(ledger) = state.find(|child| matches!(child, Child::Ledger(_))) {
        let ledger: ActorRef<LedgerMsg> = ledger.into();
        if let Err(error) = ledger
            .call(LedgerMsg::FlushNow, Some(DRAIN_STEP_LIMIT))
            .await
        {
            tracing::warn!(%error, "the final store flush failed");
        }
    }
}

impl Actor for NodeSupervisor {
    type Msg = SupervisorMsg;
    type State = SupervisorState;
    type Arguments = SupervisorArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        args: SupervisorArgs,
    ) -> Result<Self::State, ActorProcessingErr> {
        let mut children = HashMap::with_capacity(args.deployments.len() + 1);
        let all = args
            .deployments
            .into_iter()
            .map(Child::Deployment)
            .chain(args.gossip.map(Child::Gossip))
            .chain(args.ledger.map(Child::Ledger))
            .chain(std::iter::once(Child::Limits(LimitsArgs {
                limiter: args.limiter,
                idleness: Idleness::default(),
            })));
        for child in all {
            let cell = child.start(myself.get_cell()).await?;
            children.insert(cell.get_id(), (child, cell));
        }
        Ok(SupervisorState { children })
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        message: SupervisorMsg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            SupervisorMsg::Restart(child) => restart(&myself, state, child).await,
            SupervisorMsg::Drain { for_peers, reply } => {
                drain(state, for_peers).await;
                let _ = reply.send(());
            }
        }
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        myself: ActorRef<Self::Msg>,
        event: SupervisionEvent,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match event {
            SupervisionEvent::ActorFailed(failed, reason) => {
                let Some((child, _)) = state.children.remove(&failed.get_id()) else {
                    return Ok(());
                };
                if let Child::Deployment(handle) = &child {
                    handle.detach();
                    handle.count_restart();
                }
                tracing::error!(child = %child.name(), %reason, "actor failed, restarting");
                restart(&myself, state, child).await;
            }
            SupervisionEvent::ActorTerminated(stopped, _, _) => {
                if let Some((Child::Deployment(handle), _)) =
                    state.children.remove(&stopped.get_id())
                {
                    handle.detach();
                }
            }
            _ => {}
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    use bytes::Bytes;
    use chorus_proto::ChatRequest;
    use tokio::sync::oneshot;

    use super::*;
    use crate::deployment::DeploymentMsg;
    use crate::request::{ReplyBody, RequestActor, RequestArgs};
    use crate::routes::AliasRoute;

    fn deployment() -> DeploymentHandle {
        crate::testing::deployment("canned/upstream", &crate::testing::ledger("test"))
    }

    async fn complete(route: &Arc<AliasRoute>) -> Bytes {
        let (reply_tx, reply_rx) = oneshot::channel();
        let request =
            ChatRequest::parse(br#"{"model":"alias","messages":[{"role":"user","content":"x"}]}"#)
                .unwrap();
        let args = RequestArgs {
            request_id: "r".into(),
            request,
            route: route.clone(),
            received_at: Instant::now(),
            reply_tx,
            tracked: crate::tracker::RequestTracker::default().track(),
            admission: None,
            fallbacks: Default::default(),
            observer: Arc::new(crate::Unobserved),
            usage_chunk: crate::request::UsageChunk::Dropped,
        };
        Actor::spawn(None, RequestActor, args).await.unwrap();
        match reply_rx.await.unwrap().unwrap().body {
            ReplyBody::Complete(body) => body,
            ReplyBody::Stream(_) => panic!("expected a complete body"),
        }
    }

    async fn wait_until(condition: impl Fn() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(5);
        while !condition() {
            assert!(Instant::now() < deadline, "condition not met in time");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    #[tokio::test]
    async fn a_crashed_deployment_actor_is_restarted_and_keeps_its_figures() {
        let handle = deployment();
        let route = Arc::new(AliasRoute::with_defaults(
            "alias".into(),
            vec![handle.clone()],
        ));
        let args = SupervisorArgs {
            deployments: vec![handle.clone()],
            gossip: None,
            ledger: None,
            limiter: crate::limits::Limiter::new(crate::testing::ledger("test")),
        };
        let (supervisor, _) = Actor::spawn(None, NodeSupervisor, args).await.unwrap();

        let body = complete(&route).await;
        assert!(std::str::from_utf8(&body)
            .unwrap()
            .contains(r#""model":"alias""#));
        wait_until(|| handle.stats().finished == 1).await;

        let crashed = handle.actor().unwrap();
        crashed.cast(DeploymentMsg::Crash).unwrap();
        wait_until(|| {
            handle.restarts() == 1
                && handle
                    .actor()
                    .is_some_and(|a| a.get_id() != crashed.get_id())
        })
        .await;
        assert_eq!(supervisor.get_status(), ractor::ActorStatus::Running);

        complete(&route).await;
        wait_until(|| handle.stats().finished == 2).await;
        let stats = handle.stats();
        assert_eq!(stats.in_flight, 0);
        assert_eq!(stats.errors, 0);
        assert!(stats.latency_ms.is_some());
        supervisor.stop(None);
    }
}
