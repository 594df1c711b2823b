//! `LimitsActor`: lets go of idle subjects, so memory follows the keys in
//! use rather than every key ever used. Nothing on the request path waits
//! on it: admission works on the subjects directly.

use std::time::Duration;

use ractor::{Actor, ActorProcessingErr, ActorRef};

use super::Limiter;
use crate::clock::unix_millis;

/// How often idle subjects are looked for.
pub const SWEEP_INTERVAL: Duration = Duration::from_secs(10);

pub struct LimitsActor;

#[derive(Debug)]
pub enum LimitsMsg {
    /// Let go of subjects idle for long enough.
    Sweep,
}

impl Actor for LimitsActor {
    type Msg = LimitsMsg;
    type State = Limiter;
    type Arguments = Limiter;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        limiter: Limiter,
    ) -> Result<Self::State, ActorProcessingErr> {
        myself.send_interval(SWEEP_INTERVAL, || LimitsMsg::Sweep);
        Ok(limiter)
    }

    async fn handle(
        &self,
        _myself: ActorRef<Self::Msg>,
        LimitsMsg::Sweep: LimitsMsg,
        limiter: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        let released = limiter.sweep(unix_millis());
        if released > 0 {
            tracing::debug!(
                released,
                held = limiter.len(),
                "idle keys and teams released"
            );
        }
        Ok(())
    }
}
