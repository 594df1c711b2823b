//! The admin section: keys and teams, one gossip entry per register,
//! `key:<id>` or `team:<id>` → the register's JSON.
//!
//! Each register is published by one node, so the state stays one copy of
//! the admin data however many nodes there are: the node that took its
//! latest change while gossip shares that node's state, otherwise the live
//! node with the lowest id. A node merely not heard from lately (dead, on
//! a busy machine often only for a moment) keeps its registers: gossip
//! still carries what it published, and taking over would send a copy of
//! every register it wrote through gossip, ahead of everything else. A node that published a register goes on doing so until
//! it sees the responsible node publish a state that covers its own, so a
//! hand-over never leaves a gap. Every node keeps the merged state in its
//! store, so a node that was down catches up from whoever publishes now.

use std::collections::{BTreeSet, HashMap};
use std::time::Instant;

use chorus_proto::admin::{AdminEntry, Digest, EntryId};

use super::bus::{Change, Liveness, Observed, RunStatus, Section};
use crate::admin::AdminRegistry;
use crate::ledger::{NodeId, RunId};

pub(super) struct AdminSection {
    /// Until then, a register whose author has not been heard from is left
    /// to its author: it may be a live peer not heard from yet.
    settled_at: Instant,
    /// What this node publishes, by register (digests: equal digests are
    /// equal states, and a copy of every record would double the memory).
    published: HashMap<EntryId, Digest>,
    /// What each run of another node last published, by register. Keyed
    /// by run, not node: a restarted node's new run has published nothing
    /// yet, whatever its last run did. Deletions are not notified, so an
    /// entry stays until gossip forgets its run; only live runs' count.
    observed: HashMap<EntryId, HashMap<RunId, Digest>>,
    /// Runs whose state gossip shares (alive or dead, not departed), this
    /// node's own included.
    present_runs: BTreeSet<RunId>,
    /// Node ids with such a run, this node's included.
    present: BTreeSet<NodeId>,
    /// Node ids with a live run, this node's included: who takes over.
    alive: BTreeSet<NodeId>,
    /// Registers to look at again in the next round.
    dirty: BTreeSet<EntryId>,
    /// Whether every register must be looked at (membership changed).
    recheck_all: bool,
}

impl AdminSection {
    pub fn new(settled_at: Instant) -> Self {
        AdminSection {
            settled_at,
            published: HashMap::new(),
            observed: HashMap::new(),
            present_runs: BTreeSet::new(),
            present: BTreeSet::new(),
            alive: BTreeSet::new(),
            dirty: BTreeSet::new(),
            recheck_all: true,
        }
    }

    pub fn observe(&mut self, admin: &AdminRegistry, observed: &Observed) {
        let Some(id) = EntryId::decode(&observed.key) else {
            tracing::debug!(key = %observed.key, "ignored an unreadable admin key");
            return;
        };
        let Some(entry) = AdminEntry::decode(&id, &observed.value) else {
            tracing::debug!(%id, publisher = %observed.publisher.node_id,
                "ignored an unreadable admin entry");
            return;
        };
        self.observed
            .entry(id.clone())
            .or_default()
            .insert(observed.publisher.clone(), entry.digest());
        tracing::trace!(%id, publisher = %observed.publisher.node_id, "admin register observed");
        admin.observe(id.clone(), entry);
        self.dirty.insert(id);
    }

    /// What to publish now: registers this node is responsible for that
    /// changed, and the ones it hands over.
    pub fn changes(&mut self, admin: &AdminRegistry, runs: &[RunStatus], me: &str) -> Vec<Change> {
        admin.save_observed();
        let present_runs: BTreeSet<RunId> = runs
            .iter()
            .filter(|status| status.liveness != Liveness::Departed)
            .map(|status| status.run.clone())
            .collect();
        let alive: BTreeSet<NodeId> = runs
            .iter()
            .filter(|status| status.liveness == Liveness::Alive)
            .map(|status| status.run.node_id.clone())
            .chain(std::iter::once(me.to_owned()))
            .collect();
        if present_runs != self.present_runs || alive != self.alive {
            // Runs whose state gossip no longer shares published nothing
            // that still counts.
            self.observed.retain(|_, by_run| {
                by_run.retain(|run, _| present_runs.contains(run));
                !by_run.is_empty()
            });
            self.present = present_runs
                .iter()
                .map(|run| run.node_id.clone())
                .chain(std::iter::once(me.to_owned()))
                .collect();
            self.present_runs = present_runs;
            self.alive = alive;
            self.recheck_all = true;
        }
        let settled = Instant::now() >= self.settled_at;
        if settled && std::mem::take(&mut self.recheck_all) {
            self.dirty.extend(admin.ids());
            self.dirty.extend(self.published.keys().cloned());
        }
        self.dirty.extend(admin.take_changed());
        let mut changes = Vec::new();
        for id in std::mem::take(&mut self.dirty) {
            let wanted = admin
                .entry(&id)
                .filter(|entry| self.publishes(&id, entry, me, settled));
            match wanted {
                Some(entry) => {
                    let digest = entry.digest();
                    if self.published.get(&id) != Some(&digest) {
                        tracing::trace!(%id, "admin register published");
                        changes.push(Change::Set {
                            section: Section::Admin,
                            key: id.to_string(),
                            value: entry.encode(),
                        });
                        self.published.insert(id, digest);
                    }
                }
                None => {
                    if self.published.remove(&id).is_some() {
                        changes.push(Change::Delete {
                            section: Section::Admin,
                            key: id.to_string(),
                        });
                    }
                }
            }
        }
        changes
    }

    /// Whether this node should publish `entry`, its state of register `id`.
    fn publishes(&self, id: &EntryId, entry: &AdminEntry, me: &str, settled: bool) -> bool {
        let author = entry.stamp().node_id.as_str();
        let responsible = if self.present.contains(author) || !settled {
            author
        } else {
            self.alive.first().map_or(me, String::as_str)
        };
        if responsible == me {
            return true;
        }
        // Hand over only once the responsible node publishes all we know.
        let ours = entry.digest();
        let covered = self.observed.get(id).is_some_and(|by_run| {
            by_run.iter().any(|(run, theirs)| {
                run.node_id == responsible
                    && self.present_runs.contains(run)
                    && theirs.covers(&ours)
            })
        });
        self.published.contains_key(id) && !covered
    }
}
