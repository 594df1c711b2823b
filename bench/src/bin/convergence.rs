//! `convergence`: how fast a count made on one node is visible on all, with
//! real `chorus` processes gossiping over UDP on 127.0.0.1.
//!
//! Starts N nodes (built-in mock provider, durable counters, authenticated
//! gossip), then, round after round, sends one chat completion to one node
//! (rotating) and times until every node's `GET /v1/cluster` shows the new
//! calls of `builtin/mock`. That is the whole path: the request records
//! the call, the gossip actor publishes the tally at its next exchange,
//! chitchat spreads it, each receiver's gossip actor merges it.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Result;
use chorus_bench::{chorus_binary, scratch_dir, start_cluster, wait_until};
use clap::Parser;

#[derive(Debug, Parser)]
#[command(
    name = "convergence",
    about = "Time for a count on one chorus node to reach every node"
)]
struct Args {
    /// Cluster sizes to measure.
    #[arg(long, value_delimiter = ',', default_value = "3,5")]
    nodes: Vec<usize>,
    #[arg(long, default_value_t = 50)]
    rounds: u64,
    #[arg(long, default_value_t = 100)]
    gossip_interval_ms: u64,
    /// The `chorus` binary (default: next to this one).
    #[arg(long)]
    chorus: Option<PathBuf>,
}

async fn measure(args: &Args, chorus: &std::path::Path, count: usize) -> Result<String> {
    let dir = scratch_dir(&format!("convergence-{count}"))?;
    let nodes = start_cluster(chorus, &dir, count, args.gossip_interval_ms)?;
    let client = reqwest::Client::new();
    for node in &nodes {
        node.wait_for_members(&client, count).await?;
    }

    let mut times = Vec::with_capacity(args.rounds as usize);
    for round in 0..args.rounds {
        nodes[round as usize % count].chat(&client).await?;
        let start = Instant::now();
        let expected = round + 1;
        for other in &nodes {
            wait_until("the count everywhere", async || {
                Ok(other.calls(&client).await? == expected)
            })
            .await?;
        }
        times.push(start.elapsed());
    }
    times.sort();
    let ms = |q: f64| times[((times.len() - 1) as f64 * q).round() as usize].as_secs_f64() * 1000.0;
    drop(nodes);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(format!(
        "| {count} | {} | {:.0} | {:.0} | {:.0} |",
        args.rounds,
        ms(0.5),
        ms(0.99),
        ms(1.0)
    ))
}

fn main() -> Result<()> {
    let args = Args::parse();
    let chorus = chorus_binary(args.chorus.as_deref())?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    println!("gossip interval {} ms", args.gossip_interval_ms);
    println!("| nodes | rounds | visible on all p50 ms | p99 ms | max ms |");
    println!("|---:|---:|---:|---:|---:|");
    for &count in &args.nodes {
        println!("{}", runtime.block_on(measure(&args, &chorus, count))?);
    }
    Ok(())
}
