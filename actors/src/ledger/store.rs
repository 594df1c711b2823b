//! Keeping the ledger between runs: the [`LedgerStore`] seam (RocksDB in
//! `node`) and the `LedgerActor` that writes what changed to it in one
//! batch, every flush interval and whenever requests wait for their counts
//! to be written (see the `commit` module).

use std::sync::Arc;
use std::time::Duration;

use chorus_proto::counter::CounterKey;
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};

use super::{Contribution, Ledger, NodeId};

/// One change to the stored ledger.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreChange {
    /// Replaces the stored tally of (key, node, tally's generation).
    Put(Contribution),
    /// A tally that no longer counts: folded into a later run's, or expired
    /// with its window.
    Remove {
        key: CounterKey,
        node_id: NodeId,
        generation: u64,
    },
}

/// A store operation that failed; the ledger keeps the change and retries.
#[derive(Debug, thiserror::Error)]
#[error("cannot {action} the store: {source}")]
pub struct StoreError {
    pub action: &'static str,
    #[source]
    pub source: Box<dyn std::error::Error + Send + Sync>,
}

/// Where the ledger is kept between runs.
pub trait LedgerStore: Send + Sync + 'static {
    /// Applies `changes` at once, or none of them.
    fn save(&self, changes: &[StoreChange]) -> Result<(), StoreError>;
}

pub struct LedgerActor;

#[derive(Clone)]
pub struct LedgerArgs {
    pub ledger: Ledger,
    pub store: Arc<dyn LedgerStore>,
    pub flush_interval: Duration,
}

#[derive(Debug)]
pub enum LedgerMsg {
    /// Write what changed since the last flush.
    Flush,
    /// Write what changed, then answer: the last step of a shutdown.
    FlushNow(RpcReplyPort<()>),
}

impl Actor for LedgerActor {
    type Msg = LedgerMsg;
    type State = LedgerArgs;
    type Arguments = LedgerArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        args: LedgerArgs,
    ) -> Result<Self::State, ActorProcessingErr> {
        myself.send_interval(args.flush_interval, || LedgerMsg::Flush);
        args.ledger.0.commits.attach(Arc::clone(&args.store));
        Ok(args)
    }

    async fn handle(
        &self,
        _myself: ActorRef<Self::Msg>,
        message: LedgerMsg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        flush(state);
        if let LedgerMsg::FlushNow(reply) = message {
            let _ = reply.send(());
        }
        Ok(())
    }

    /// A last flush on the way out, so a stop loses nothing.
    async fn post_stop(
        &self,
        _myself: ActorRef<Self::Msg>,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        state.ledger.0.commits.detach();
        flush(state);
        Ok(())
    }
}

/// Writes what changed since the last write.
pub(crate) fn flush(state: &LedgerArgs) {
    state
        .ledger
        .0
        .commits
        .flush(&state.ledger, state.store.as_ref());
}
