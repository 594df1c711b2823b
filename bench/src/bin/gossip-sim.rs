//! `gossip-sim`: how gossip scales, simulated in one process.
//!
//! N chitchat nodes talk over chitchat's in-memory `ChannelTransport` (each
//! message is still encoded and decoded, and the 65,507-byte MTU is
//! enforced). Every node publishes K counter contributions under the same
//! key scheme the node uses (`c:<node>:<counter>`). For each (N, K) it
//! reports:
//!
//! - the time until every node has every node's K keys, from a cold start;
//! - the time for one changed value to reach every node (p50, p99 over
//!   `--rounds` changes on rotating nodes);
//! - gossip bytes sent per node per second in steady state.
//!
//! No HMAC here (the real transport adds 44 bytes a packet) and no network.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use chitchat::transport::ChannelTransport;
use chitchat::{
    spawn_chitchat, ChitchatConfig, ChitchatHandle, ChitchatId, FailureDetectorConfig,
    ProtocolVersion,
};
use clap::Parser;

#[derive(Debug, Parser)]
#[command(
    name = "gossip-sim",
    about = "In-process gossip convergence and traffic"
)]
struct Args {
    /// Cluster sizes to simulate.
    #[arg(long, value_delimiter = ',', default_value = "20,50,100")]
    nodes: Vec<usize>,
    /// Counter contributions each node publishes.
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
}

const MTU: usize = 65_507;
/// A configuration that has not converged by then is reported as such.
const GIVE_UP: Duration = Duration::from_secs(120);

fn address(index: usize) -> SocketAddr {
    ([127, 0, 0, 1], 10_000 + index as u16).into()
}

fn key(node: usize, counter: usize) -> String {
    format!("c:node-{node}:calls/provider/model-{counter}")
}

async fn start(
    nodes: usize,
    counters: usize,
    interval: Duration,
    transport: &ChannelTransport,
) -> Result<Vec<ChitchatHandle>> {
    let mut handles = Vec::with_capacity(nodes);
    for index in 0..nodes {
        let config = ChitchatConfig {
            chitchat_id: ChitchatId::new(format!("node-{index}"), 1, address(index)),
            cluster_id: "sim".into(),
            gossip_interval: interval,
            listen_addr: address(index),
            seed_nodes: vec![address(0).to_string()],
            failure_detector_config: FailureDetectorConfig::default(),
            marked_for_deletion_grace_period: Duration::from_secs(3600),
            catchup_callback: None,
            extra_liveness_predicate: None,
            protocol_version: ProtocolVersion::V0,
        };
        let initial = (0..counters)
            .map(|counter| (key(index, counter), "1".to_owned()))
            .collect();
        handles.push(spawn_chitchat(config, initial, transport).await?);
    }
    Ok(handles)
}

/// Whether every node sees `expected` keys in total.
async fn converged(handles: &[ChitchatHandle], expected: usize) -> bool {
    for handle in handles {
        let chitchat = handle.chitchat();
        let chitchat = chitchat.lock().await;
        let seen: usize = chitchat
            .node_states()
            .values()
            .map(|state| state.key_values().count())
            .sum();
        if seen < expected {
            return false;
        }
    }
    true
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
    let transport = ChannelTransport::with_mtu(MTU);
    let started = Instant::now();
    let handles = start(nodes, counters, interval, &transport).await?;
    while !converged(&handles, nodes * counters).await {
        anyhow::ensure!(
            started.elapsed() < GIVE_UP,
            "{nodes} nodes × {counters} keys did not converge"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let cold = started.elapsed();

    let before = transport.statistics().num_bytes_total;
    tokio::time::sleep(Duration::from_secs_f64(args.traffic_window_s)).await;
    let bytes = transport.statistics().num_bytes_total - before;
    let per_node_per_s = bytes as f64 / nodes as f64 / args.traffic_window_s;

    let mut changes = Vec::with_capacity(args.rounds);
    for round in 0..args.rounds {
        let node = round % nodes;
        let changed = key(node, round % counters);
        let value = (round + 2).to_string();
        let handle = &handles[node];
        handle
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
    for handle in handles {
        handle.shutdown().await.context("shutdown")?;
    }
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    Ok(format!(
        "| {nodes} | {counters} | {:.0} | {:.0} | {:.0} | {:.0} |",
        ms(cold),
        ms(percentile(&changes, 0.5)),
        ms(percentile(&changes, 0.99)),
        per_node_per_s
    ))
}

fn main() -> Result<()> {
    let args = Args::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    println!(
        "gossip interval {} ms, {} changes per row",
        args.gossip_interval_ms, args.rounds
    );
    println!("| nodes | counters per node | cold convergence ms | change visible everywhere p50 ms | p99 ms | gossip bytes/node/s |");
    println!("|---:|---:|---:|---:|---:|---:|");
    for &nodes in &args.nodes {
        for &counters in &args.counters {
            let row = runtime.block_on(simulate(&args, nodes, counters))?;
            println!("{row}");
        }
    }
    Ok(())
}
