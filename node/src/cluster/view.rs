//! What the API and the status page show of the cluster: the members and
//! this node's gossip figures. Built once per gossip round, while the
//! gossip actor reads chitchat anyway, and kept as a snapshot, so serving a
//! page never takes chitchat's lock.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Instant;

use chitchat::{Chitchat, ChitchatId, NodeState};
use chorus_actors::clock::unix_millis;
use serde::Serialize;

use super::keys;
use super::transport::GossipCounters;

/// One node as this node sees it.
#[derive(Debug, Clone, Serialize)]
pub struct Member {
    pub node_id: String,
    pub generation: u64,
    pub gossip_addr: String,
    pub http_addr: Option<String>,
    pub version: Option<String>,
    pub alive: bool,
    pub is_self: bool,
    /// Since this node last saw the member's heartbeat move.
    pub heartbeat_age_ms: Option<u64>,
    pub uptime_s: Option<u64>,
}

/// This node's gossip traffic and the size of the state it holds.
#[derive(Debug, Clone, Default, Serialize)]
pub struct GossipFigures {
    pub running: bool,
    pub peers: usize,
    /// Runs (processes) whose state this node holds, alive or not.
    pub runs: usize,
    pub state_keys: usize,
    pub state_bytes: usize,
    /// Other runs' counter tallies this node republishes.
    pub republished: usize,
    pub packets_sent: u64,
    pub packets_received: u64,
    pub bytes_sent: u64,
    pub bytes_received: u64,
    pub fragmented_sent: u64,
    pub reassembled: u64,
    pub auth_failures: u64,
    pub other_cluster: u64,
    pub malformed: u64,
    pub undecodable: u64,
    pub replayed: u64,
    pub stale: u64,
    pub wrong_sender: u64,
    pub incomplete: u64,
    /// Messages chitchat was too far behind to take.
    pub queue_full: u64,
    pub dropped: u64,
}

/// The snapshot served to HTTP.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ClusterView {
    pub members: Vec<Member>,
    pub gossip: GossipFigures,
}

/// One node id's newest generation, as chitchat knows it.
pub(super) struct NodeEntry<'a> {
    pub id: &'a ChitchatId,
    pub state: &'a NodeState,
    pub alive: bool,
    pub is_self: bool,
}

/// Every node id once, as its newest generation, in node id order. chitchat
/// sees a restarted node as a new member while the old generation lingers;
/// showing both would show the node twice.
pub(super) fn newest_generations(chitchat: &Chitchat) -> Vec<NodeEntry<'_>> {
    let self_id = chitchat.self_chitchat_id();
    let live: HashSet<&ChitchatId> = chitchat.live_nodes().collect();
    let mut newest: BTreeMap<&str, NodeEntry<'_>> = BTreeMap::new();
    for (id, state) in chitchat.node_states() {
        if newest
            .get(&*id.node_id)
            .is_some_and(|known| known.id.generation_id >= id.generation_id)
        {
            continue;
        }
        let is_self = id == self_id;
        newest.insert(
            &id.node_id,
            NodeEntry {
                id,
                state,
                alive: is_self || live.contains(id),
                is_self,
            },
        );
    }
    newest.into_values().collect()
}

/// When each member's heartbeat last moved, as seen from here.
#[derive(Debug, Default)]
pub(super) struct Heartbeats(HashMap<ChitchatId, (u64, Instant)>);

impl Heartbeats {
    /// The members, one entry per node id.
    pub fn members(&mut self, chitchat: &Chitchat) -> Vec<Member> {
        let now = Instant::now();
        let now_ms = unix_millis();
        let mut members = Vec::new();
        let mut seen = HashSet::new();
        for NodeEntry {
            id,
            state,
            alive,
            is_self,
        } in newest_generations(chitchat)
        {
            let heartbeat = u64::from(state.heartbeat());
            let last = self.0.entry(id.clone()).or_insert((heartbeat, now));
            if last.0 != heartbeat {
                *last = (heartbeat, now);
            }
            seen.insert(id.clone());
            members.push(Member {
                node_id: id.node_id.to_string(),
                generation: id.generation_id,
                gossip_addr: id.gossip_advertise_addr.to_string(),
                http_addr: state.get(keys::HTTP_ADDR).map(str::to_owned),
                version: state.get(keys::VERSION).map(str::to_owned),
                alive,
                is_self,
                heartbeat_age_ms: (!is_self).then(|| {
                    u64::try_from(now.duration_since(last.1).as_millis()).unwrap_or(u64::MAX)
                }),
                uptime_s: state
                    .get(keys::STARTED_MS)
                    .and_then(|started| started.parse::<u64>().ok())
                    .map(|started| now_ms.saturating_sub(started) / 1000),
            });
        }
        self.0.retain(|id, _| seen.contains(id));
        members
    }
}

/// Counts the state chitchat holds: a walk over every key, so it runs
/// once a second at most, not on every round.
pub(super) fn state_size(chitchat: &Chitchat) -> (usize, usize, usize) {
    let states = chitchat.node_states();
    let (keys, bytes) = states
        .values()
        .flat_map(|state| state.key_values())
        .fold((0, 0), |(keys, bytes), (key, value)| {
            (keys + 1, bytes + key.len() + value.len())
        });
    (states.len(), keys, bytes)
}

impl GossipFigures {
    pub(super) fn from_counters(counters: &GossipCounters) -> Self {
        use std::sync::atomic::Ordering::Relaxed;
        GossipFigures {
            packets_sent: counters.packets_sent.load(Relaxed),
            packets_received: counters.packets_received.load(Relaxed),
            bytes_sent: counters.bytes_sent.load(Relaxed),
            bytes_received: counters.bytes_received.load(Relaxed),
            fragmented_sent: counters.fragmented_sent.load(Relaxed),
            reassembled: counters.reassembled.load(Relaxed),
            auth_failures: counters.auth_failures.load(Relaxed),
            other_cluster: counters.other_cluster.load(Relaxed),
            malformed: counters.malformed.load(Relaxed),
            undecodable: counters.undecodable.load(Relaxed),
            replayed: counters.replayed.load(Relaxed),
            stale: counters.stale.load(Relaxed),
            wrong_sender: counters.wrong_sender.load(Relaxed),
            incomplete: counters.incomplete.load(Relaxed),
            queue_full: counters.queue_full.load(Relaxed),
            dropped: counters.dropped(),
            ..GossipFigures::default()
        }
    }
}
