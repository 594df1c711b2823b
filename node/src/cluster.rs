//! The node's view of its cluster, with chitchat kept behind this front:
//! joining with authenticated gossip, publishing this node's sections,
//! reading what changed in everyone's, and the snapshot of members and
//! gossip figures the API and status page show.
//!
//! Reads are driven by chitchat's change events: a subscription per
//! section collects each changed key's latest value as it arrives, and a
//! read takes what was collected, never walking the whole state under
//! chitchat's lock.

mod keys;
mod transport;
mod view;

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use anyhow::Context;
use arc_swap::ArcSwap;
use chitchat::{
    spawn_chitchat, Chitchat, ChitchatConfig, ChitchatHandle, ChitchatId, FailureDetectorConfig,
    ListenerHandle, ProtocolVersion,
};
use chorus_actors::clock::unix_millis;
use chorus_actors::gossip::{Change, Liveness, Observed, RunStatus, Section};
use chorus_actors::{GossipBus, GossipRead, RunId};
use futures::future::BoxFuture;

use crate::config::ClusterConfig;
pub use transport::{AuthenticatedTransport, GossipCounters};
use view::{state_size, Heartbeats};
pub use view::{ClusterView, GossipFigures, Member};

/// How often the state size is counted: a walk over every key.
const STATE_SIZE_INTERVAL: Duration = Duration::from_secs(1);

/// Entries other runs changed since the last read, latest value of each.
type Pending = HashMap<(ChitchatId, Section, String), String>;

pub struct Cluster {
    chitchat: ChitchatHandle,
    cluster_id: String,
    gossip_interval: Duration,
    counters: Arc<GossipCounters>,
    pending: Arc<Mutex<Pending>>,
    /// Woken when an admin change arrives, so it is read at once.
    news: Arc<tokio::sync::Notify>,
    _listeners: Vec<ListenerHandle>,
    observer: Mutex<Observer>,
    view: ArcSwap<ClusterView>,
    /// Whether chitchat's gossip loop still runs.
    running: Arc<AtomicBool>,
    /// Set when this node leaves on purpose, so the loop's end is expected.
    leaving: Arc<AtomicBool>,
}

/// What the snapshot is built from between reads.
#[derive(Default)]
struct Observer {
    heartbeats: Heartbeats,
    /// (runs, keys, bytes) and when they were last counted.
    state_size: Option<((usize, usize, usize), Instant)>,
    /// Counter keys this node sets for other runs.
    republished: HashSet<String>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Plain maps: a panic elsewhere mid-update leaves them usable.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Keeps chitchat's live-nodes watch empty. Chitchat fills it with a copy
/// of every live node's whole state each round in which any node's state
/// changed — every round here, as counters move. With 100,000 keys in the
/// admin registers that is tens of megabytes copied per round under
/// chitchat's lock (40 % of a node's CPU, measured with `perf` under
/// `bench/key-scale`), and nothing here reads the watch: liveness comes
/// from `live_nodes()`, which this predicate does not touch.
fn no_state_copies(_: &chitchat::NodeState) -> bool {
    false
}

fn run_of(id: &ChitchatId) -> RunId {
    RunId {
        node_id: id.node_id.to_string(),
        generation: id.generation_id,
    }
}

impl Cluster {
    /// Starts gossip as run `generation` of this node.
    pub async fn join(
        config: &ClusterConfig,
        generation: u64,
        http_addr: SocketAddr,
    ) -> anyhow::Result<Cluster> {
        let chitchat_id = ChitchatId::new(config.node_id.clone(), generation, config.advertise);
        let failure_detector_config = FailureDetectorConfig {
            dead_node_grace_period: config.dead_node_grace,
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
            marked_for_deletion_grace_period: config.dead_node_grace,
            catchup_callback: None,
            extra_liveness_predicate: Some(Box::new(no_state_copies)),
            protocol_version: ProtocolVersion::V0,
        };
        // Bound to every interface: peers reach the HTTP API at the address
        // they reach the gossip at.
        let http_addr = if http_addr.ip().is_unspecified() {
            SocketAddr::new(config.advertise.ip(), http_addr.port())
        } else {
            http_addr
        };
        let initial = vec![
            (keys::HTTP_ADDR.to_owned(), http_addr.to_string()),
            (
                keys::VERSION.to_owned(),
                env!("CARGO_PKG_VERSION").to_owned(),
            ),
            (keys::STARTED_MS.to_owned(), unix_millis().to_string()),
        ];
        let counters = Arc::new(GossipCounters::default());
        let transport = AuthenticatedTransport::new(
            &config.secrets,
            &config.cluster_id,
            config.advertise,
            generation,
            counters.clone(),
        )?;
        let chitchat = spawn_chitchat(chitchat_config, initial, &transport)
            .await
            .context("cannot start gossip")?;
        let pending = Arc::new(Mutex::new(Pending::new()));
        let news = Arc::new(tokio::sync::Notify::new());
        let listeners = subscribe(&chitchat, &pending, &news).await;
        let running = Arc::new(AtomicBool::new(true));
        let leaving = Arc::new(AtomicBool::new(false));
        watch_gossip_loop(&chitchat, running.clone(), leaving.clone());
        tracing::info!(node_id = %config.node_id, generation, gossip = %config.listen,
            seeds = ?config.seeds, "joined the cluster");
        Ok(Cluster {
            chitchat,
            cluster_id: config.cluster_id.clone(),
            gossip_interval: config.gossip_interval,
            counters,
            pending,
            news,
            _listeners: listeners,
            observer: Mutex::new(Observer::default()),
            view: ArcSwap::from_pointee(ClusterView::default()),
            running,
            leaving,
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

    /// Members and gossip figures as of the last gossip round.
    pub fn view(&self) -> Arc<ClusterView> {
        self.view.load_full()
    }

    /// Whether gossip runs: false once chitchat's loop has ended (its
    /// socket failed), which readiness reports.
    pub fn is_gossiping(&self) -> bool {
        self.running.load(Ordering::Acquire)
    }

    /// Stops gossiping; peers will see this node go dead.
    pub fn leave(&self) {
        self.leaving.store(true, Ordering::Release);
        if let Err(error) = self.chitchat.initiate_shutdown() {
            tracing::warn!(%error, "gossip did not stop cleanly");
        }
    }

    /// Rebuilds the snapshot served to HTTP; `chitchat` is locked already.
    fn refresh_view(&self, chitchat: &Chitchat) {
        let mut observer = lock(&self.observer);
        let members = observer.heartbeats.members(chitchat);
        let counted = observer
            .state_size
            .filter(|(_, at)| at.elapsed() < STATE_SIZE_INTERVAL)
            .map(|(size, _)| size);
        let (runs, state_keys, state_bytes) = counted.unwrap_or_else(|| {
            let size = state_size(chitchat);
            observer.state_size = Some((size, Instant::now()));
            size
        });
        let gossip = GossipFigures {
            running: self.is_gossiping(),
            peers: members
                .iter()
                .filter(|member| member.alive && !member.is_self)
                .count(),
            runs,
            state_keys,
            state_bytes,
            republished: observer.republished.len(),
            ..GossipFigures::from_counters(&self.counters)
        };
        self.view.store(Arc::new(ClusterView { members, gossip }));
    }
}

/// Subscribes to every section's changes, then queues the entries already
/// there, all under one lock: no change falls between the two. Admin
/// changes also wake `news`.
async fn subscribe(
    chitchat: &ChitchatHandle,
    pending: &Arc<Mutex<Pending>>,
    news: &Arc<tokio::sync::Notify>,
) -> Vec<ListenerHandle> {
    let chitchat = chitchat.chitchat();
    let chitchat = chitchat.lock().await;
    let self_id = chitchat.self_chitchat_id().clone();
    let mut listeners = Vec::new();
    for section in keys::SECTIONS {
        let pending = pending.clone();
        let self_id = self_id.clone();
        let news = (section == Section::Admin).then(|| news.clone());
        // Runs under chitchat's lock: only queue the change.
        listeners.push(
            chitchat.subscribe_event(keys::prefix(section), move |event| {
                if *event.node != self_id {
                    lock(&pending).insert(
                        (event.node.clone(), section, event.key.to_owned()),
                        event.value.to_owned(),
                    );
                    if let Some(news) = &news {
                        news.notify_one();
                    }
                }
            }),
        );
    }
    let mut queued = lock(pending);
    for (id, state) in chitchat.node_states() {
        if *id == self_id {
            continue;
        }
        for section in keys::SECTIONS {
            for (key, versioned) in state.iter_prefix(keys::prefix(section)) {
                let key = key[keys::prefix(section).len()..].to_owned();
                queued.insert((id.clone(), section, key), versioned.value.clone());
            }
        }
    }
    listeners
}

/// Notes when chitchat's loop ends, and logs it unless the node is leaving.
fn watch_gossip_loop(
    chitchat: &ChitchatHandle,
    running: Arc<AtomicBool>,
    leaving: Arc<AtomicBool>,
) {
    let ended = chitchat.termination_watcher();
    tokio::spawn(async move {
        let result = ended.await;
        running.store(false, Ordering::Release);
        if !leaving.load(Ordering::Acquire) {
            match result {
                Ok(()) => tracing::error!("gossip stopped"),
                Err(error) => tracing::error!(%error, "gossip stopped"),
            }
        }
    });
}

impl GossipBus for Cluster {
    fn publish(&self, changes: Vec<Change>) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            let self_prefix = format!("{}:", self.self_node_id());
            let chitchat = self.chitchat.chitchat();
            let mut chitchat = chitchat.lock().await;
            let state = chitchat.self_node_state();
            let mut observer = lock(&self.observer);
            for change in changes {
                match change {
                    Change::Set {
                        section,
                        key,
                        value,
                    } => {
                        if section == Section::Counters && !key.starts_with(&self_prefix) {
                            observer.republished.insert(key.clone());
                        }
                        // chitchat ignores a set that does not change the value.
                        state.set(keys::key(section, &key), value);
                    }
                    Change::Delete { section, key } => {
                        observer.republished.remove(&key);
                        let key = keys::key(section, &key);
                        if state.get(&key).is_some() {
                            state.delete(&key);
                        }
                    }
                }
            }
        })
    }

    fn read(&self) -> BoxFuture<'_, GossipRead> {
        Box::pin(async move {
            let changed = std::mem::take(&mut *lock(&self.pending));
            let chitchat = self.chitchat.chitchat();
            let chitchat = chitchat.lock().await;
            let self_id = chitchat.self_chitchat_id();
            let live: HashSet<&ChitchatId> = chitchat.live_nodes().collect();
            let departed: HashSet<&ChitchatId> = chitchat.scheduled_for_deletion_nodes().collect();
            let runs = chitchat
                .node_states()
                .keys()
                .map(|id| RunStatus {
                    run: run_of(id),
                    liveness: if id == self_id || live.contains(id) {
                        Liveness::Alive
                    } else if departed.contains(id) {
                        Liveness::Departed
                    } else {
                        Liveness::Dead
                    },
                })
                .collect();
            self.refresh_view(&chitchat);
            drop(chitchat);
            let changes = changed
                .into_iter()
                .map(|((id, section, key), value)| Observed {
                    publisher: run_of(&id),
                    section,
                    key,
                    value,
                })
                .collect();
            GossipRead { runs, changes }
        })
    }

    fn news(&self) -> BoxFuture<'_, ()> {
        Box::pin(self.news.notified())
    }
}

#[cfg(test)]
pub(crate) mod tests;
