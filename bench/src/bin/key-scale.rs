//! `key-scale`: many keys, many of them in use, on several real nodes.
//!
//! Starts N `chorus` nodes (release build, authenticated gossip, stores),
//! then:
//!
//! 1. defines `--keys` virtual keys with limits through node 0's admin API
//!    (`--writers` at a time) and times until every node knows all of them;
//! 2. reads each node's memory (RSS) with the keys defined;
//! 3. offers `--rate` requests per second for `--seconds`, spread over
//!    `--active` of the keys and over the nodes in turn, and again with the
//!    bootstrap key (no limits), the same way: the gateway's own time per
//!    request (`x-chorus-overhead-ms`, p50 and p99) with and without
//!    admission, and gossip bytes sent per node per second while keys are
//!    in use;
//! 4. reads memory again, with the keys active;
//! 5. changes one active key's rpm on node 0 and times until every node
//!    applies the new limit.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use chorus_bench::{chorus_binary, scratch_dir, start_cluster, BenchNode, ADMIN_TOKEN, KEY};
use clap::Parser;
use serde_json::{json, Value};

#[derive(Debug, Parser)]
#[command(
    name = "key-scale",
    about = "Many keys, many in use, on several chorus nodes"
)]
struct Args {
    #[arg(long, default_value_t = 5)]
    nodes: usize,
    /// Keys defined.
    #[arg(long, default_value_t = 100_000)]
    keys: usize,
    /// Keys requests are spread over.
    #[arg(long, default_value_t = 10_000)]
    active: usize,
    /// Requests per second offered, over all nodes.
    #[arg(long, default_value_t = 1_000)]
    rate: u64,
    /// Seconds of load per run.
    #[arg(long, default_value_t = 30)]
    seconds: u64,
    /// Admin requests in flight while defining the keys.
    #[arg(long, default_value_t = 32)]
    writers: usize,
    #[arg(long, default_value_t = 200)]
    gossip_interval_ms: u64,
    /// The `chorus` binary (default: next to this one).
    #[arg(long)]
    chorus: Option<PathBuf>,
}

/// Resident memory of process `pid`, in MiB.
fn rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.split_whitespace().next()?.parse::<f64>().ok())
        .map_or(0.0, |kib| kib / 1024.0)
}

fn memory(nodes: &[BenchNode]) -> String {
    nodes
        .iter()
        .map(|node| format!("{:.0}", rss_mib(node.pid())))
        .collect::<Vec<_>>()
        .join(" / ")
}

async fn defined_keys(client: &reqwest::Client, node: &BenchNode) -> Result<u64> {
    Ok(node.cluster(client).await?["admin"]["keys"]
        .as_u64()
        .unwrap_or(0))
}

async fn bytes_sent(client: &reqwest::Client, nodes: &[BenchNode]) -> Result<u64> {
    let mut total = 0;
    for node in nodes {
        total += node.cluster(client).await?["gossip"]["bytes_sent"]
            .as_u64()
            .unwrap_or(0);
    }
    Ok(total)
}

/// Defines `count` keys on `node`, `writers` at a time; their values.
async fn define(args: &Args, client: &reqwest::Client, node: &BenchNode) -> Result<Vec<String>> {
    let url = format!("{}/admin/keys", node.url);
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut writers = Vec::new();
    for _ in 0..args.writers {
        let (client, url, next) = (client.clone(), url.clone(), next.clone());
        let count = args.keys;
        writers.push(tokio::spawn(async move {
            let mut made = Vec::new();
            loop {
                let index = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if index >= count {
                    return anyhow::Ok(made);
                }
                let body = json!({"name": format!("scale-{index:06}"), "rpm": 1_000_000,
                                  "tpm": 1_000_000_000u64, "budget_daily_usd": 1000});
                let created: Value = client
                    .post(&url)
                    .bearer_auth(ADMIN_TOKEN)
                    .json(&body)
                    .send()
                    .await?
                    .json()
                    .await?;
                let key = created["key"].as_str().context("no key made")?;
                made.push((index, key.to_owned()));
            }
        }));
    }
    let mut keys = vec![String::new(); args.keys];
    for writer in writers {
        for (index, key) in writer.await?? {
            keys[index] = key;
        }
    }
    Ok(keys)
}

/// Offers `rate` requests/s for `seconds`, key `i` of `keys` on node
/// `i % nodes`; the `x-chorus-overhead-ms` of every answer, sorted, and
/// how many were not 200.
async fn offer(
    client: &reqwest::Client,
    nodes: &[BenchNode],
    keys: &[String],
    rate: u64,
    seconds: u64,
) -> Result<(Vec<f64>, usize)> {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let mut ticker = tokio::time::interval(Duration::from_secs_f64(1.0 / rate as f64));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let end = Instant::now() + Duration::from_secs(seconds);
    let mut sent = 0usize;
    while Instant::now() < end {
        ticker.tick().await;
        let url = format!("{}/v1/chat/completions", nodes[sent % nodes.len()].url);
        let key = keys[sent % keys.len()].clone();
        let (client, tx) = (client.clone(), tx.clone());
        sent += 1;
        tokio::spawn(async move {
            let body = json!({"model": "fast", "max_tokens": 16,
                              "messages": [{"role": "user", "content": "scale"}]});
            let Ok(response) = client.post(url).bearer_auth(key).json(&body).send().await else {
                let _ = tx.send(None);
                return;
            };
            let ok = response.status() == 200;
            let overhead = response
                .headers()
                .get("x-chorus-overhead-ms")
                .and_then(|value| value.to_str().ok()?.parse::<f64>().ok());
            let _ = response.bytes().await;
            let _ = tx.send(if ok { overhead } else { None });
        });
    }
    drop(tx);
    let mut overheads = Vec::with_capacity(sent);
    let mut failed = 0;
    while let Some(answer) = rx.recv().await {
        match answer {
            Some(overhead) => overheads.push(overhead),
            None => failed += 1,
        }
    }
    overheads.sort_by(f64::total_cmp);
    Ok((overheads, failed))
}

fn percentile(sorted: &[f64], quantile: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() - 1) as f64 * quantile).round() as usize]
}

async fn run(args: &Args) -> Result<()> {
    let chorus = chorus_binary(args.chorus.as_deref())?;
    let dir = scratch_dir("key-scale")?;
    let nodes = start_cluster(&chorus, &dir, args.nodes, args.gossip_interval_ms)?;
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(256)
        .build()?;
    for node in &nodes {
        node.wait_for_members(&client, args.nodes).await?;
    }
    println!(
        "{} nodes, gossip every {} ms; {} keys defined, {} in use, {} requests/s for {} s",
        args.nodes, args.gossip_interval_ms, args.keys, args.active, args.rate, args.seconds
    );
    println!("memory at start, MiB per node: {}", memory(&nodes));

    let started = Instant::now();
    let keys = define(args, &client, &nodes[0]).await?;
    let defined = started.elapsed();
    let mut everywhere = Duration::ZERO;
    for node in &nodes {
        while defined_keys(&client, node).await? < args.keys as u64 {
            ensure!(
                started.elapsed() < Duration::from_secs(1_800),
                "keys never reached {}",
                node.url
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        everywhere = started.elapsed();
    }
    println!(
        "defined {} keys on node 0 in {:.1} s ({:.0}/s); known on every node after {:.1} s",
        args.keys,
        defined.as_secs_f64(),
        args.keys as f64 / defined.as_secs_f64(),
        everywhere.as_secs_f64()
    );
    println!(
        "memory with the keys defined, MiB per node: {}",
        memory(&nodes)
    );

    let bootstrap = vec![KEY.to_owned()];
    let (plain, plain_failed) = offer(&client, &nodes, &bootstrap, args.rate, args.seconds).await?;
    let active = &keys[..args.active.min(keys.len())];
    let before = bytes_sent(&client, &nodes).await?;
    let load_started = Instant::now();
    let (limited, limited_failed) = offer(&client, &nodes, active, args.rate, args.seconds).await?;
    let sent = bytes_sent(&client, &nodes).await? - before;
    let per_node_per_s = sent as f64 / args.nodes as f64 / load_started.elapsed().as_secs_f64();
    println!("\n| key | answered | not 200 | overhead p50 ms | p99 ms |");
    println!("|---|---:|---:|---:|---:|");
    for (name, sorted, failed) in [
        ("bootstrap (no limits)", &plain, plain_failed),
        (
            "virtual, limits (spread over the active keys)",
            &limited,
            limited_failed,
        ),
    ] {
        println!(
            "| {name} | {} | {failed} | {:.3} | {:.3} |",
            sorted.len(),
            percentile(sorted, 0.5),
            percentile(sorted, 0.99)
        );
    }
    println!(
        "admission: +{:.3} ms at p50, +{:.3} ms at p99; gossip while in use: {:.0} bytes/node/s",
        percentile(&limited, 0.5) - percentile(&plain, 0.5),
        percentile(&limited, 0.99) - percentile(&plain, 0.99),
        per_node_per_s
    );
    println!(
        "memory with {} keys in use, MiB per node: {}",
        args.active,
        memory(&nodes)
    );

    // A limit change, made on node 0, until every node applies it.
    let changed = Instant::now();
    let name = "scale-000000";
    let patched = client
        .patch(format!("{}/admin/keys/{name}", nodes[0].url))
        .bearer_auth(ADMIN_TOKEN)
        .json(&json!({"rpm": 999_999}))
        .send()
        .await?;
    ensure!(
        patched.status().is_success(),
        "PATCH answered {}",
        patched.status()
    );
    let mut applied = Vec::new();
    for node in &nodes {
        loop {
            let response = client
                .post(format!("{}/v1/chat/completions", node.url))
                .bearer_auth(&keys[0])
                .json(&json!({"model": "fast", "max_tokens": 4, "messages": [{"role": "user", "content": "x"}]}))
                .send()
                .await?;
            let limit = response
                .headers()
                .get("x-ratelimit-limit-requests")
                .and_then(|value| value.to_str().ok())
                .unwrap_or_default()
                .to_owned();
            if limit == "999999" {
                applied.push(changed.elapsed());
                break;
            }
            ensure!(
                changed.elapsed() < Duration::from_secs(600),
                "the change did not reach {} in 10 minutes",
                node.url
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    let slowest = applied.iter().max().copied().unwrap_or_default();
    println!(
        "a limit change applied on every node after {:.0} ms (per node: {})",
        slowest.as_secs_f64() * 1000.0,
        applied
            .iter()
            .map(|elapsed| format!("{:.0}", elapsed.as_secs_f64() * 1000.0))
            .collect::<Vec<_>>()
            .join(", ")
    );
    drop(nodes);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

fn main() -> Result<()> {
    let args = Args::parse();
    chorus_bench::block_on(run(&args))
}
