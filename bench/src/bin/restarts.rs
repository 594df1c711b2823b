//! `restarts`: does gossip state grow when a node restarts again and again?
//!
//! Starts three real `chorus` nodes (durable counters, a short dead-node
//! grace so forgotten runs go within the run), counts a few calls on each,
//! then SIGKILLs and restarts the third node over and over, one call per
//! run, each call seen by a peer before the next kill. At each checkpoint it
//! reports, as the first node sees it: the largest gossip state seen while
//! the restarts went on (dead runs are kept for the grace period), the
//! state once the dead runs are gone (runs, keys, bytes), and whether the
//! cluster-wide count is exactly the number of calls made.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{ensure, Result};
use chorus_bench::{chorus_binary, free_udp_port, scratch_dir, wait_until, BenchNode, NodeSpec};
use clap::Parser;
use serde_json::Value;

#[derive(Debug, Parser)]
#[command(
    name = "restarts",
    about = "Gossip state size against restarts of one node of three"
)]
struct Args {
    /// Restart counts at which the state is measured.
    #[arg(long, value_delimiter = ',', default_value = "1,10,50")]
    checkpoints: Vec<usize>,
    #[arg(long, default_value_t = 100)]
    gossip_interval_ms: u64,
    /// How long a dead node's state is kept, in ms.
    #[arg(long, default_value_t = 2_000)]
    dead_node_grace_ms: u64,
    /// The `chorus` binary (default: next to this one).
    #[arg(long)]
    chorus: Option<PathBuf>,
}

/// (runs, keys, bytes) of the gossip state a node holds.
fn state(view: &Value) -> (u64, u64, u64) {
    let gossip = &view["gossip"];
    let figure = |name: &str| gossip[name].as_u64().unwrap_or(0);
    (figure("runs"), figure("state_keys"), figure("state_bytes"))
}

async fn run(args: &Args) -> Result<()> {
    let chorus = chorus_binary(args.chorus.as_deref())?;
    let dir = scratch_dir("restarts")?;
    let ports: Vec<u16> = (0..3).map(|_| free_udp_port()).collect::<Result<_>>()?;
    let spec = |index: usize, seeds: &[u16]| {
        BenchNode::start(&NodeSpec {
            chorus: &chorus,
            dir: &dir,
            index,
            gossip_port: ports[index],
            seeds,
            gossip_interval_ms: args.gossip_interval_ms,
            dead_node_grace_ms: args.dead_node_grace_ms,
        })
    };
    // The first node watches; the third restarts.
    let observer = spec(0, &ports[1..2])?;
    let peer = spec(1, &ports[..1])?;
    let mut restarting = spec(2, &ports[..1])?;
    let client = reqwest::Client::new();
    for node in [&observer, &peer, &restarting] {
        node.wait_for_members(&client, 3).await?;
        for _ in 0..3 {
            node.chat(&client).await?;
        }
    }
    let mut calls = 9;
    println!(
        "gossip interval {} ms, dead-node grace {} ms",
        args.gossip_interval_ms, args.dead_node_grace_ms
    );
    println!("| restarts | peak keys while restarting | peak bytes | runs after | keys after | bytes after | calls counted / made | settle s |");
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|");
    let mut restarts = 0;
    let mut peak = (0, 0, 0);
    for &checkpoint in &args.checkpoints {
        while restarts < checkpoint {
            wait_until("a peer has every call", async || {
                Ok(observer.calls(&client).await? == calls)
            })
            .await?;
            let seen = state(&observer.cluster(&client).await?);
            peak = (peak.0.max(seen.0), peak.1.max(seen.1), peak.2.max(seen.2));
            restarting.kill();
            restarting = spec(2, &ports[..1])?;
            wait_until("the restarted node ready", async || {
                Ok(restarting.cluster(&client).await.is_ok())
            })
            .await?;
            restarting.chat(&client).await?;
            calls += 1;
            restarts += 1;
        }
        let started = Instant::now();
        // Settled: only the three live runs, nothing republished, counted afresh.
        let settled = loop {
            tokio::time::sleep(Duration::from_millis(1_100)).await;
            let view = observer.cluster(&client).await?;
            let republished = view["gossip"]["republished"].as_u64().unwrap_or(0);
            if state(&view).0 == 3 && republished == 0 {
                break state(&view);
            }
            ensure!(
                started.elapsed() < Duration::from_secs(120),
                "the state never settled"
            );
        };
        let counted = observer.calls(&client).await?;
        println!(
            "| {restarts} | {} | {} | {} | {} | {} | {counted} / {calls} | {:.1} |",
            peak.1,
            peak.2,
            settled.0,
            settled.1,
            settled.2,
            started.elapsed().as_secs_f64()
        );
        ensure!(counted == calls, "{counted} calls counted for {calls} made");
    }
    drop((observer, peer, restarting));
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

fn main() -> Result<()> {
    let args = Args::parse();
    chorus_bench::block_on(run(&args))
}
