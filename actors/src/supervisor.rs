//! `NodeSupervisor`: the root of a node's supervision tree. It starts one
//! `DeploymentActor` per deployment and restarts any that fails, pointing the
//! deployment's handle at the new actor so reports keep flowing. ractor has
//! no restart strategy of its own and by default stops a supervisor whose
//! child fails, hence `handle_supervisor_evt` below.

use std::collections::HashMap;

use ractor::{Actor, ActorCell, ActorId, ActorProcessingErr, ActorRef, SupervisionEvent};

use crate::deployment::{DeploymentActor, DeploymentHandle};

pub struct NodeSupervisor;

/// A running supervision tree; stop it to stop every deployment actor.
pub struct SupervisorHandle {
    actor: ActorRef<()>,
    done: tokio::task::JoinHandle<()>,
}

impl NodeSupervisor {
    pub async fn start(
        deployments: Vec<DeploymentHandle>,
    ) -> Result<SupervisorHandle, ractor::SpawnErr> {
        let (actor, done) = Actor::spawn(None, NodeSupervisor, deployments).await?;
        Ok(SupervisorHandle { actor, done })
    }
}

impl SupervisorHandle {
    pub async fn stop(self) {
        self.actor.stop(None);
        let _ = self.done.await;
    }
}

pub struct SupervisorState {
    /// Which deployment each running child serves.
    children: HashMap<ActorId, DeploymentHandle>,
}

async fn start_deployment(
    handle: DeploymentHandle,
    supervisor: ActorCell,
) -> Result<ActorId, ActorProcessingErr> {
    let (actor, _) = Actor::spawn_linked(None, DeploymentActor, handle, supervisor).await?;
    Ok(actor.get_id())
}

impl Actor for NodeSupervisor {
    type Msg = ();
    type State = SupervisorState;
    type Arguments = Vec<DeploymentHandle>;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        deployments: Vec<DeploymentHandle>,
    ) -> Result<Self::State, ActorProcessingErr> {
        let mut children = HashMap::with_capacity(deployments.len());
        for handle in deployments {
            let id = start_deployment(handle.clone(), myself.get_cell()).await?;
            children.insert(id, handle);
        }
        Ok(SupervisorState { children })
    }

    async fn handle(
        &self,
        _myself: ActorRef<Self::Msg>,
        _message: (),
        _state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        myself: ActorRef<Self::Msg>,
        event: SupervisionEvent,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match event {
            SupervisionEvent::ActorFailed(child, reason) => {
                let Some(handle) = state.children.remove(&child.get_id()) else {
                    return Ok(());
                };
                handle.detach();
                handle.count_restart();
                tracing::error!(deployment = %handle.name(), %reason, restarts = handle.restarts(), "deployment actor failed, restarting");
                let id = start_deployment(handle.clone(), myself.get_cell()).await?;
                state.children.insert(id, handle);
            }
            SupervisionEvent::ActorTerminated(child, _, _) => {
                if let Some(handle) = state.children.remove(&child.get_id()) {
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
    use futures::future::BoxFuture;
    use tokio::sync::oneshot;

    use super::*;
    use crate::deployment::{DeploymentMsg, DeploymentSpec};
    use crate::provider::{Provider, ProviderError, UpstreamCall, UpstreamReply};
    use crate::request::{ReplyBody, RequestActor, RequestArgs};
    use crate::routes::AliasRoute;

    /// Answers every call at once with a fixed completion.
    struct Canned;
    impl Provider for Canned {
        fn send(
            &self,
            _: UpstreamCall,
        ) -> BoxFuture<'static, Result<UpstreamReply, ProviderError>> {
            let body = br#"{"model":"upstream","usage":{"prompt_tokens":1,"completion_tokens":2,"total_tokens":3}}"#;
            Box::pin(async { Ok(UpstreamReply::Complete(Bytes::from_static(body))) })
        }
    }

    fn deployment() -> DeploymentHandle {
        let spec = DeploymentSpec {
            name: "canned/upstream".into(),
            provider: "canned".into(),
            upstream_model: "upstream".into(),
            input_per_mtok: 0.0,
            output_per_mtok: 0.0,
            timeout: Duration::from_secs(5),
        };
        DeploymentHandle::new(spec, Arc::new(Canned))
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
        let (supervisor, _) = Actor::spawn(None, NodeSupervisor, vec![handle.clone()])
            .await
            .unwrap();

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
