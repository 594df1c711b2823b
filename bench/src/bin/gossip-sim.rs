//! `gossip-sim`: how gossip scales, with N chitchat nodes in one process.
//!
//! By default the nodes talk over the node's own authenticated transport on
//! real UDP sockets on 127.0.0.1 — sealed datagrams (84-byte header),
//! fragmentation, the replay guard and the loopback codec included;
//! `--transport channel` uses chitchat's in-memory `ChannelTransport`
//! instead (messages still encoded, the 65,507-byte MTU enforced, no
//! header). Every node publishes K counter tallies under the key scheme
//! the node uses (`c:<node>:<generation>:calls:<deployment>`). For each
//! (N, K) it reports:
//!
//! - the time until every node has every node's K keys, from a cold start;
//! - the time for one more node to join that cluster and catch up on all
//!   of its state, and how large that state is;
//! - the time for one changed value to reach every node (p50, p99 over
//!   `--rounds` changes on rotating nodes);
//! - gossip bytes sent per node per second in steady state.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use chitchat::transport::{ChannelTransport, Transport};
use chitchat::{
    spawn_chitchat, ChitchatConfig, ChitchatHandle, ChitchatId, FailureDetectorConfig,
    ProtocolVersion,
};
use chorus_node::cluster::{AuthenticatedTransport, GossipCounters};
use clap::{Parser, ValueEnum};

#[derive(Debug, Parser)]
#[command(
    name = "gossip-sim",
    about = "In-process gossip convergence and traffic"
)]
struct Args {
    /// Cluster sizes to simulate.
    #[arg(long, value_delimiter = ',', default_value = "20,50,100")]
    nodes: Vec<usize>,
    /// Counter tallies each node publishes.
    #[arg(long, value_delimiter = ',', default_value = "10,100")]
    counters: Vec<usize>,
    #[arg(long, default_value_t = 100)]
    gossip_interval_ms: u64,
    /// Value changes timed per configuration.
    #[arg(long, default_value_t = 20)]
    rounds: usize,
    /// Seconds of steady state over which traffic is measured.
    #[arg(long, default_value_t = 3.0)]
    traffic_window_s: f64,
    #[arg(long, value_enum, default_value_t = TransportKind::Sealed)]
    transport: TransportKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum TransportKind {
    /// The node's authenticated transport over UDP on 127.0.0.1.
    Sealed,
    /// chitchat's in-memory transport: no header, no sockets.
    Channel,
}

const MTU: usize = 65_507;
const SECRET: &str = "gossip-sim-secret-0123456789";
const CLUSTER_ID: &str = "sim";
/// A configuration that has not converged by then is reported as such.
const GIVE_UP: Duration = Duration::from_secs(120);

fn key(node: usize, counter: usize) -> String {
    format!("c:node-{node}:1:calls:provider/model-{counter}")
}

/// Where the simulated nodes gossip, and how many bytes they have sent.
enum Network {
    Channel(ChannelTransport),
    Sealed(Vec<Arc<GossipCounters>>),
}

impl Network {
    fn new(kind: TransportKind) -> Self {
        match kind {
            TransportKind::Sealed => Network::Sealed(Vec::new()),
            TransportKind::Channel => Network::Channel(ChannelTransport::with_mtu(MTU)),
        }
    }

    /// An address for node `index`: a free UDP port for real sockets.
    fn address(&self, index: usize) -> Result<SocketAddr> {
        match self {
            Network::Channel(_) => Ok(([127, 0, 0, 1], 10_000 + index as u16).into()),
            Network::Sealed(_) => Ok(std::net::UdpSocket::bind("127.0.0.1:0")?.local_addr()?),
        }
    }

    async fn spawn(
        &mut self,
        config: ChitchatConfig,
        initial: Vec<(String, String)>,
    ) -> Result<ChitchatHandle> {
        let handle = match self {
            Network::Channel(transport) => spawn_chitchat(config, initial, transport).await?,
            Network::Sealed(counters) => {
                let node_counters = Arc::new(GossipCounters::default());
                let advertise = config.chitchat_id.gossip_advertise_addr;
                let transport: Box<dyn Transport> = Box::new(AuthenticatedTransport::new(
                    &[SECRET.to_owned()],
                    CLUSTER_ID,
                    advertise,
                    1,
                    node_counters.clone(),
                )?);
                counters.push(node_counters);
                spawn_chitchat(config, initial, transport.as_ref()).await?
            }
        };
        Ok(handle)
    }

    /// Datagrams or messages the sealed transport dropped, by cause.
    fn drops(&self) -> String {
        let Network::Sealed(counters) = self else {
            return "–".to_owned();
        };
        let sum = |pick: fn(&GossipCounters) -> u64| counters.iter().map(|c| pick(c)).sum::<u64>();
        let causes = [
            (
                "undecodable",
                sum(|c| c.undecodable.load(Ordering::Relaxed)),
            ),
            ("queue full", sum(|c| c.queue_full.load(Ordering::Relaxed))),
            ("incomplete", sum(|c| c.incomplete.load(Ordering::Relaxed))),
            ("replayed", sum(|c| c.replayed.load(Ordering::Relaxed))),
            ("other", sum(GossipCounters::dropped)),
        ];
        let total = causes[4].1;
        let named: Vec<String> = causes[..4]
            .iter()
            .filter(|(_, count)| *count > 0)
            .map(|(cause, count)| format!("{count} {cause}"))
            .collect();
        if named.is_empty() {
            total.to_string()
        } else {
            format!("{total} ({})", named.join(", "))
        }
    }

    fn bytes_sent(&self) -> u64 {
        match self {
            Network::Channel(transport) => transport.statistics().num_bytes_total,
            Network::Sealed(counters) => counters
                .iter()
                .map(|counters| counters.bytes_sent.load(Ordering::Relaxed))
                .sum(),
        }
    }
}

/// Starts node `index` with `counters` keys of its own, joining through `seed`.
async fn start_node(
    network: &mut Network,
    index: usize,
    seed: Option<SocketAddr>,
    counters: usize,
    interval: Duration,
) -> Result<(ChitchatHandle, SocketAddr)> {
    let address = network.address(index)?;
    let config = ChitchatConfig {
        chitchat_id: ChitchatId::new(format!("node-{index}"), 1, address),
        cluster_id: CLUSTER_ID.into(),
        gossip_interval: interval,
        listen_addr: address,
        seed_nodes: seed.map(|seed| seed.to_string()).into_iter().collect(),
        failure_detector_config: FailureDetectorConfig::default(),
        marked_for_deletion_grace_period: Duration::from_secs(3600),
        catchup_callback: None,
        extra_liveness_predicate: None,
        protocol_version: ProtocolVersion::V0,
    };
    // Tallies as the node writes them: total buckets, then folded ones.
    let initial = (0..counters)
        .map(|counter| {
            (
                key(index, counter),
                format!("0,{},0/0,{},0", counter * 7, counter),
            )
        })
        .collect();
    Ok((network.spawn(config, initial).await?, address))
}

/// Whether every node sees `expected` keys in total, and the state bytes
/// of the last one.
async fn converged(handles: &[ChitchatHandle], expected: usize) -> (bool, usize) {
    let mut bytes = 0;
    for handle in handles {
        let chitchat = handle.chitchat();
        let chitchat = chitchat.lock().await;
        let (seen, size) = chitchat
            .node_states()
            .values()
            .flat_map(|state| state.key_values())
            .fold((0, 0), |(seen, size), (key, value)| {
                (seen + 1, size + key.len() + value.len())
            });
        if seen < expected {
            return (false, size);
        }
        bytes = size;
    }
    (true, bytes)
}

async fn wait_converged(
    handles: &[ChitchatHandle],
    expected: usize,
    what: &str,
    network: &Network,
) -> Result<(Duration, usize)> {
    let started = Instant::now();
    loop {
        let (done, bytes) = converged(handles, expected).await;
        if done {
            return Ok((started.elapsed(), bytes));
        }
        anyhow::ensure!(
            started.elapsed() < GIVE_UP,
            "{what} did not converge in {} s (drops: {})",
            GIVE_UP.as_secs(),
            network.drops()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn everyone_sees(handles: &[ChitchatHandle], key: &str, value: &str) -> bool {
    for handle in handles {
        let chitchat = handle.chitchat();
        let chitchat = chitchat.lock().await;
        if !chitchat
            .node_states()
            .values()
            .any(|state| state.get(key) == Some(value))
        {
            return false;
        }
    }
    true
}

fn percentile(sorted: &[Duration], quantile: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * quantile).round() as usize;
    sorted.get(index).copied().unwrap_or_default()
}

async fn simulate(args: &Args, nodes: usize, counters: usize) -> Result<String> {
    let interval = Duration::from_millis(args.gossip_interval_ms);
    let mut network = Network::new(args.transport);
    let mut handles = Vec::with_capacity(nodes + 1);
    let mut seed = None;
    for index in 0..nodes {
        let (handle, address) = start_node(&mut network, index, seed, counters, interval).await?;
        seed.get_or_insert(address);
        handles.push(handle);
    }
    let what = format!("{nodes} nodes × {counters} keys");
    let (cold, _) = wait_converged(&handles, nodes * counters, &what, &network).await?;

    // One more node, with nothing, joins the cluster and catches up.
    let (joiner, _) = start_node(&mut network, nodes, seed, 0, interval).await?;
    let joined = std::slice::from_ref(&joiner);
    let (join, state_bytes) =
        wait_converged(joined, nodes * counters, "the late joiner", &network).await?;
    handles.push(joiner);

    let before = network.bytes_sent();
    tokio::time::sleep(Duration::from_secs_f64(args.traffic_window_s)).await;
    let bytes = network.bytes_sent() - before;
    let per_node_per_s = bytes as f64 / handles.len() as f64 / args.traffic_window_s;

    let mut changes = Vec::with_capacity(args.rounds);
    for round in 0..args.rounds {
        let node = round % nodes;
        let changed = key(node, round % counters.max(1));
        let value = format!("0,{},0", round + 1_000_000);
        handles[node]
            .with_chitchat(|chitchat| {
                chitchat
                    .self_node_state()
                    .set(changed.clone(), value.clone())
            })
            .await;
        let start = Instant::now();
        while !everyone_sees(&handles, &changed, &value).await {
            anyhow::ensure!(
                start.elapsed() < GIVE_UP,
                "a change did not reach every node"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        changes.push(start.elapsed());
    }
    changes.sort();
    let drops = network.drops();
    for handle in handles {
        handle.shutdown().await.context("shutdown")?;
    }
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    Ok(format!(
        "| {nodes} | {counters} | {:.0} | {:.0} | {:.2} | {:.0} | {:.0} | {:.0} | {} |",
        ms(cold),
        ms(join),
        state_bytes as f64 / 1e6,
        ms(percentile(&changes, 0.5)),
        ms(percentile(&changes, 0.99)),
        per_node_per_s,
        drops
    ))
}

fn main() -> Result<()> {
    let args = Args::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    println!(
        "{:?} transport, gossip interval {} ms, {} changes per row",
        args.transport, args.gossip_interval_ms, args.rounds
    );
    println!("| nodes | counters per node | cold convergence ms | late join ms | state MB | change visible everywhere p50 ms | p99 ms | gossip bytes/node/s | dropped |");
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---|");
    for &nodes in &args.nodes {
        for &counters in &args.counters {
            let row = runtime.block_on(simulate(&args, nodes, counters))?;
            println!("{row}");
        }
    }
    Ok(())
}
