//! What the actors need from the gossip layer (chitchat, in `node`): each
//! node publishes key-values in named sections of its own state, and reads
//! what changed in everyone's since it last looked, plus who is in the
//! cluster. Sections let new kinds of state (keys, admin changes) join
//! without touching the callers of the existing ones.

use futures::future::BoxFuture;

use crate::ledger::RunId;

/// A part of a node's gossip state with a format of its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Section {
    /// A node's live report on each deployment: `deployment name` → report.
    Deployments,
    /// Counter tallies: `node:generation:subject` → the tally of each of
    /// the subject's counters. A node publishes its own run's, and
    /// republishes those of runs gone from gossip.
    Counters,
    /// Keys and teams: `key:<id>` or `team:<id>` → the register. Changes
    /// here are news: they are read as soon as they arrive.
    Admin,
    /// Requests in flight per key or team with limits: `key:<id>` → count.
    Load,
}

/// A change to this node's published state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    Set {
        section: Section,
        key: String,
        value: String,
    },
    Delete {
        section: Section,
        key: String,
    },
}

/// A key-value that changed in some run's published state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observed {
    /// The run whose state holds the entry.
    pub publisher: RunId,
    pub section: Section,
    pub key: String,
    pub value: String,
}

/// Whether a run is in the cluster, as the failure detector sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Liveness {
    Alive,
    /// Not heard from lately; gossip still shares its last state.
    Dead,
    /// Dead long enough that gossip no longer shares its state: whatever
    /// it published lives on only where peers republish it.
    Departed,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunStatus {
    pub run: RunId,
    pub liveness: Liveness,
}

/// One read of the gossip layer.
#[derive(Debug, Default)]
pub struct GossipRead {
    /// Every run the gossip layer knows of, this node's own included.
    pub runs: Vec<RunStatus>,
    /// Entries other runs set since the last read (the latest value of
    /// each), in no particular order.
    pub changes: Vec<Observed>,
}

pub trait GossipBus: Send + Sync + 'static {
    /// Applies `changes` to this node's published state.
    fn publish(&self, changes: Vec<Change>) -> BoxFuture<'_, ()>;
    /// Who is in the cluster, and what changed since the last read.
    fn read(&self) -> BoxFuture<'_, GossipRead>;
    /// Resolves when news (an admin change) arrived that should be read
    /// before the next round.
    fn news(&self) -> BoxFuture<'_, ()>;
}
