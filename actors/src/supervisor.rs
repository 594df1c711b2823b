//! `NodeSupervisor`: the root of a node's supervision tree. It starts one
//! `DeploymentActor` per deployment, the `LedgerActor` when counts are
//! stored, and the `GossipActor` in a cluster,
//! and restarts any that fails — a deployment's handle is pointed at its new
//! actor so reports keep flowing. ractor has no restart strategy of its own
//! and by default stops a supervisor whose child fails, hence
//! `handle_supervisor_evt` below.

use std::collections::HashMap;

use ractor::{Actor, ActorCell, ActorId, ActorProcessingErr, ActorRef, SupervisionEvent};

use crate::deployment::{DeploymentActor, DeploymentHandle};
use crate::gossip::{GossipActor, GossipArgs};
use crate::ledger::{LedgerActor, LedgerArgs};

pub struct NodeSupervisor;

/// What the supervisor starts.
pub struct SupervisorArgs {
    pub deployments: Vec<DeploymentHandle>,
    /// `None` on a node without a cluster.
    pub gossip: Option<GossipArgs>,
    /// `None` on a node without storage: counts live in memory only.
    pub ledger: Option<LedgerArgs>,
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
    /// Stops the children first and waits for them, so the ledger's last
    /// flush happens before the node exits.
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
}

impl Child {
    async fn start(&self, supervisor: ActorCell) -> Result<ActorId, ActorProcessingErr> {
        let id = match self {
            Child::Deployment(handle) => {
                Actor::spawn_linked(None, DeploymentActor, handle.clone(), supervisor)
                    .await?
                    .0
                    .get_id()
            }
            Child::Gossip(args) => Actor::spawn_linked(None, GossipActor, args.clone(), supervisor)
                .await?
                .0
                .get_id(),
            Child::Ledger(args) => Actor::spawn_linked(None, LedgerActor, args.clone(), supervisor)
                .await?
                .0
                .get_id(),
        };
        Ok(id)
    }

    fn name(&self) -> &str {
        match self {
            Child::Deployment(handle) => handle.name(),
            Child::Gossip(_) => "gossip",
            Child::Ledger(_) => "ledger",
        }
    }
}

/// Messages the supervisor sends itself.
pub enum SupervisorMsg {
    /// Try again to start a child whose restart failed.
    Restart(Child),
}

/// A failed restart must not take the supervisor down with it (ractor
/// would then stop every other child): it is retried after a pause.
const RESTART_RETRY: std::time::Duration = std::time::Duration::from_secs(1);

async fn restart(myself: &ActorRef<SupervisorMsg>, state: &mut SupervisorState, child: Child) {
    match child.start(myself.get_cell()).await {
        Ok(id) => {
            state.children.insert(id, child);
        }
        Err(error) => {
            tracing::error!(child = %child.name(), %error, retry_s = RESTART_RETRY.as_secs(), "cannot restart actor");
            myself.send_after(RESTART_RETRY, move || SupervisorMsg::Restart(child));
        }
    }
}

pub struct SupervisorState {
    children: HashMap<ActorId, Child>,
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
            .chain(args.ledger.map(Child::Ledger));
        for child in all {
            children.insert(child.start(myself.get_cell()).await?, child);
        }
        Ok(SupervisorState { children })
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        SupervisorMsg::Restart(child): SupervisorMsg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        restart(&myself, state, child).await;
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
                let Some(child) = state.children.remove(&failed.get_id()) else {
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
                if let Some(Child::Deployment(handle)) = state.children.remove(&stopped.get_id()) {
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
        crate::testing::deployment(
            "canned/upstream",
            crate::ledger::Ledger::new("test", Vec::new()),
        )
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
        let route = Arc::new(AliasRoute::new("alias".into(), vec![handle.clone()]));
        let args = SupervisorArgs {
            deployments: vec![handle.clone()],
            gossip: None,
            ledger: None,
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
