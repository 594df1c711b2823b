//! The node's view of its cluster, with chitchat kept behind this front:
//! joining with authenticated gossip, the key names each node publishes
//! about itself, and the member list the API and status page show.

mod keys;
mod transport;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use chitchat::{
    spawn_chitchat, Chitchat, ChitchatConfig, ChitchatHandle, ChitchatId, FailureDetectorConfig,
    NodeState, ProtocolVersion,
};
use chorus_actors::{Contribution, GossipBus, GossipRead, NodeReport};
use chorus_proto::gossip::DeploymentReport;
use futures::future::BoxFuture;
use serde::Serialize;

use crate::config::ClusterConfig;
use transport::AuthenticatedTransport;
use transport::GossipCounters;

/// How long a dead node's state is kept before chitchat forgets it.
const DEAD_NODE_GRACE: Duration = Duration::from_secs(60 * 60);

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

/// This node's gossip traffic and state size.
#[derive(Debug, Clone, Serialize)]
pub struct GossipFigures {
    pub peers: usize,
    pub state_bytes: usize,
    pub packets_sent: u64,
    pub packets_received: u64,
    pub bytes_sent: u64,
    pub bytes_received: u64,
    pub auth_failures: u64,
    pub other_cluster: u64,
    pub malformed: u64,
    pub undecodable: u64,
    pub oversized_sent: u64,
    pub dropped: u64,
}

pub struct Cluster {
    chitchat: ChitchatHandle,
    cluster_id: String,
    gossip_interval: Duration,
    counters: Arc<GossipCounters>,
    /// When each member's heartbeat last changed, as seen from here.
    heartbeats: Mutex<HashMap<ChitchatId, (u64, Instant)>>,
}

/// One node id's newest generation, as chitchat knows it.
struct NodeEntry<'a> {
    id: &'a ChitchatId,
    state: &'a NodeState,
    alive: bool,
    is_self: bool,
}

/// Every node id once, as its newest generation, in node id order. chitchat
/// sees a restarted node as a new member while the old generation lingers;
/// counting both would count the node twice.
fn newest_generations(chitchat: &Chitchat) -> Vec<NodeEntry<'_>> {
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

impl GossipBus for Cluster {
    fn publish(
        &self,
        deployments: Vec<(String, DeploymentReport)>,
        counters: Vec<Contribution>,
    ) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            let chitchat = self.chitchat.chitchat();
            let mut chitchat = chitchat.lock().await;
            let state = chitchat.self_node_state();
            for (deployment, report) in deployments {
                state.set(
                    keys::deployment_key(&deployment),
                    keys::encode_report(&report),
                );
            }
            // chitchat ignores a set that does not change the value.
            for (counter, contributor, total) in counters {
                state.set(keys::counter_key(&contributor, &counter), total);
            }
        })
    }

    fn read(&self) -> BoxFuture<'_, GossipRead> {
        Box::pin(async move {
            let chitchat = self.chitchat.chitchat();
            let chitchat = chitchat.lock().await;
            let mut read = GossipRead::default();
            // Counts from every generation of every node: each process
            // counts under its own contributor id, and max-merge makes
            // reading one twice harmless.
            for (id, state) in chitchat.node_states() {
                read.publishers
                    .push(contributor_id(&id.node_id, id.generation_id));
                for (key, value) in state.key_values() {
                    let Some((contributor, counter)) = keys::counter_of(key) else {
                        continue;
                    };
                    if let Ok(total) = value.parse() {
                        read.counters
                            .push((counter.to_owned(), contributor.to_owned(), total));
                    }
                }
            }
            // Live figures from each node's newest generation only.
            for NodeEntry {
                id, state, alive, ..
            } in newest_generations(&chitchat)
            {
                for (key, value) in state.key_values() {
                    if let (Some(deployment), Some(report)) =
                        (keys::deployment_of(key), keys::decode_report(value))
                    {
                        read.deployments.push(NodeReport {
                            node_id: id.node_id.to_string(),
                            alive,
                            deployment: deployment.to_owned(),
                            report,
                        });
                    }
                }
            }
            read
        })
    }
}

/// The ledger's name for one process of a node: `node_id#generation`.
pub fn contributor_id(node_id: &str, generation: u64) -> String {
    format!("{node_id}#{generation}")
}

pub fn unix_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_millis() as u64)
}

impl Cluster {
    /// Starts gossip. `generation` is the process's start time in ms, so a
    /// node restarted with the same `node_id` is a newer generation of itself.
    pub async fn join(
        config: &ClusterConfig,
        generation: u64,
        http_addr: SocketAddr,
    ) -> anyhow::Result<Cluster> {
        let started_ms = generation;
        let chitchat_id = ChitchatId::new(config.node_id.clone(), generation, config.advertise);
        let failure_detector_config = FailureDetectorConfig {
            dead_node_grace_period: DEAD_NODE_GRACE,
            initial_interval: config.gossip_interval * 4,
            ..FailureDetectorConfig::default()
        };
        let chitchat_config = ChitchatConfig {
            chitchat_id,
            cluster_id: config.cluster_id.clone(),
            gossip_interval: config.gossip_interval,
            listen_addr: config.listen,
            seed_nodes: config.seeds.clone(),
            failure_detector_config,
            marked_for_deletion_grace_period: DEAD_NODE_GRACE,
            catchup_callback: None,
            extra_liveness_predicate: None,
            protocol_version: ProtocolVersion::V0,
        };
        let initial = vec![
            (keys::HTTP_ADDR.to_owned(), http_addr.to_string()),
            (
                keys::VERSION.to_owned(),
                env!("CARGO_PKG_VERSION").to_owned(),
            ),
            (keys::STARTED_MS.to_owned(), started_ms.to_string()),
        ];
        let counters = Arc::new(GossipCounters::default());
        let transport =
            AuthenticatedTransport::new(&config.secret, &config.cluster_id, counters.clone())?;
        let chitchat = spawn_chitchat(chitchat_config, initial, &transport)
            .await
            .context("cannot start gossip")?;
        tracing::info!(node_id = %config.node_id, gossip = %config.listen, seeds = ?config.seeds, "joined the cluster");
        Ok(Cluster {
            chitchat,
            cluster_id: config.cluster_id.clone(),
            gossip_interval: config.gossip_interval,
            counters,
            heartbeats: Mutex::new(HashMap::new()),
        })
    }

    pub fn gossip_interval(&self) -> Duration {
        self.gossip_interval
    }

    pub fn cluster_id(&self) -> &str {
        &self.cluster_id
    }

    pub fn self_node_id(&self) -> &str {
        &self.chitchat.chitchat_id().node_id
    }

    /// Every node known, one entry per node id: a restarted node shows as
    /// its newest generation only.
    pub async fn members(&self) -> Vec<Member> {
        let now = Instant::now();
        let now_ms = unix_millis();
        let chitchat = self.chitchat.chitchat();
        let chitchat = chitchat.lock().await;
        let Ok(mut heartbeats) = self.heartbeats.lock() else {
            return Vec::new();
        };
        let mut members = Vec::new();
        for NodeEntry {
            id,
            state,
            alive,
            is_self,
        } in newest_generations(&chitchat)
        {
            let heartbeat = u64::from(state.heartbeat());
            let seen = heartbeats.entry(id.clone()).or_insert((heartbeat, now));
            if seen.0 != heartbeat {
                *seen = (heartbeat, now);
            }
            members.push(Member {
                node_id: id.node_id.to_string(),
                generation: id.generation_id,
                gossip_addr: id.gossip_advertise_addr.to_string(),
                http_addr: state.get(keys::HTTP_ADDR).map(str::to_owned),
                version: state.get(keys::VERSION).map(str::to_owned),
                alive,
                is_self,
                heartbeat_age_ms: (!is_self).then(|| now.duration_since(seen.1).as_millis() as u64),
                uptime_s: state
                    .get(keys::STARTED_MS)
                    .and_then(|started| started.parse::<u64>().ok())
                    .map(|started| now_ms.saturating_sub(started) / 1000),
            });
        }
        members
    }

    pub async fn gossip_figures(&self) -> GossipFigures {
        let chitchat = self.chitchat.chitchat();
        let chitchat = chitchat.lock().await;
        let state_bytes = chitchat
            .node_states()
            .values()
            .flat_map(|state| state.key_values())
            .map(|(key, value)| key.len() + value.len())
            .sum();
        let peers = newest_generations(&chitchat)
            .iter()
            .filter(|node| node.alive && !node.is_self)
            .count();
        drop(chitchat);
        let load = |counter: &std::sync::atomic::AtomicU64| counter.load(Ordering::Relaxed);
        let counters = &self.counters;
        GossipFigures {
            peers,
            state_bytes,
            packets_sent: load(&counters.packets_sent),
            packets_received: load(&counters.packets_received),
            bytes_sent: load(&counters.bytes_sent),
            bytes_received: load(&counters.bytes_received),
            auth_failures: load(&counters.auth_failures),
            other_cluster: load(&counters.other_cluster),
            malformed: load(&counters.malformed),
            undecodable: load(&counters.undecodable),
            oversized_sent: load(&counters.oversized_sent),
            dropped: counters.dropped(),
        }
    }

    /// Stops gossiping; peers will see this node go dead.
    pub fn leave(&self) {
        if let Err(error) = self.chitchat.initiate_shutdown() {
            tracing::warn!(%error, "gossip did not stop cleanly");
        }
    }
}
