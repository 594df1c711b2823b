//! The actors of the limits: a `KeyActor` per key or team in use, spawned
//! when a request first uses it and stopped once it has been idle for
//! long enough, and the `LimitsActor` that supervises them.
//!
//! A `KeyActor` decides how long its subject's state stays in memory; the
//! state itself ([`Subject`]) is shared with the request path, which
//! admits, reserves and settles under the subject's lock without waiting
//! on any mailbox, and its counts live in the ledger (gossiped, merged
//! with what peers publish, stored). So a stopped or failed `KeyActor`
//! loses nothing: the subject is let go, and the next request restores it
//! from the ledger, which was restored from the store.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use ractor::{Actor, ActorId, ActorProcessingErr, ActorRef, SupervisionEvent};

use super::{Limiter, Subject};
use crate::clock::unix_millis;

/// How long a subject stays after its last request, and how often its
/// actor looks.
#[derive(Debug, Clone, Copy)]
pub struct Idleness {
    pub after: Duration,
    pub check_every: Duration,
}

impl Default for Idleness {
    fn default() -> Self {
        Idleness {
            after: Duration::from_secs(120),
            check_every: Duration::from_secs(10),
        }
    }
}

#[derive(Clone)]
pub struct LimitsArgs {
    pub limiter: Limiter,
    pub idleness: Idleness,
}

/// Supervises the `KeyActor`s: spawns one for each subject the limiter
/// starts holding, and lets a subject go when its actor fails.
pub struct LimitsActor;

#[derive(Debug)]
pub enum LimitsMsg {
    /// A request started using this subject: it needs a keeper.
    Hold(Arc<Subject>),
}

pub struct LimitsState {
    args: LimitsArgs,
    keepers: HashMap<ActorId, Arc<Subject>>,
}

impl Actor for LimitsActor {
    type Msg = LimitsMsg;
    type State = LimitsState;
    type Arguments = LimitsArgs;

    /// Takes over the subjects held already: a restarted `LimitsActor`'s
    /// keepers went with its predecessor.
    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        args: LimitsArgs,
    ) -> Result<Self::State, ActorProcessingErr> {
        args.limiter.attach(myself.clone());
        for subject in args.limiter.held() {
            myself.send_message(LimitsMsg::Hold(subject))?;
        }
        Ok(LimitsState {
            args,
            keepers: HashMap::new(),
        })
    }

    /// Its keepers go with it: a successor starts its own.
    async fn post_stop(
        &self,
        myself: ActorRef<Self::Msg>,
        _state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        myself.stop_children(None);
        Ok(())
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        LimitsMsg::Hold(subject): LimitsMsg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        let args = KeyArgs {
            limiter: state.args.limiter.clone(),
            subject: subject.clone(),
            idleness: state.args.idleness,
        };
        match Actor::spawn_linked(None, KeyActor, args, myself.get_cell()).await {
            Ok((keeper, _)) => {
                state.keepers.insert(keeper.get_id(), subject);
            }
            Err(error) => {
                // Without a keeper it would stay for ever: let it go now.
                tracing::warn!(%error, subject = %subject.id, "cannot start a key actor");
                state.args.limiter.release(&subject);
            }
        }
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        _myself: ActorRef<Self::Msg>,
        event: SupervisionEvent,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match event {
            SupervisionEvent::ActorFailed(keeper, reason) => {
                if let Some(subject) = state.keepers.remove(&keeper.get_id()) {
                    tracing::warn!(subject = %subject.id, %reason,
                        "a key actor failed; the key is restored from the ledger on next use");
                    state.args.limiter.release(&subject);
                }
            }
            SupervisionEvent::ActorTerminated(keeper, _, _) => {
                state.keepers.remove(&keeper.get_id());
            }
            _ => {}
        }
        Ok(())
    }
}

/// Keeps one key's or team's state in memory while it is in use.
pub struct KeyActor;

pub struct KeyArgs {
    limiter: Limiter,
    subject: Arc<Subject>,
    idleness: Idleness,
}

#[derive(Debug)]
pub enum KeyMsg {
    /// Is the subject idle (or no longer the one held)? Then stop.
    Check,
}

impl Actor for KeyActor {
    type Msg = KeyMsg;
    type State = KeyArgs;
    type Arguments = KeyArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        args: KeyArgs,
    ) -> Result<Self::State, ActorProcessingErr> {
        myself.send_interval(args.idleness.check_every, || KeyMsg::Check);
        Ok(args)
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        KeyMsg::Check: KeyMsg,
        args: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        let KeyArgs {
            limiter,
            subject,
            idleness,
        } = args;
        let idle_after_ms = u64::try_from(idleness.after.as_millis()).unwrap_or(u64::MAX);
        if limiter.release_if_idle(subject, idle_after_ms, unix_millis()) || !limiter.holds(subject)
        {
            tracing::debug!(subject = %subject.id, "idle key or team let go");
            myself.stop(None);
        }
        Ok(())
    }
}
