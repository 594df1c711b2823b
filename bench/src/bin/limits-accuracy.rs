//! `limits-accuracy`: do key limits hold across a cluster, and how closely?
//!
//! Starts three real `chorus` nodes (authenticated gossip, stores) and
//! spreads requests over them in turn, as an L4 balancer would:
//!
//! - **rate**: keys with an rpm limit under load at five times the limit
//!   for several minutes; requests admitted in each whole UTC minute
//!   after the first and the most in any 60 s, against the limit (one
//!   key, then ten at once);
//! - **bursts**: one key idle, then offered five times its limit for the
//!   30 s around a minute boundary, several times over; the most admitted
//!   in any 60 s, against the limit;
//! - **budget**: concurrent clients on every node spend a daily budget on
//!   a priced alias until every node answers 402; the settled spend, and
//!   what the clients were answered (the usage of every 200, priced),
//!   against the budget;
//! - **budget, node killed**: the same with one node SIGKILLed half-way:
//!   the settled spend must still cover every answered request.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{ensure, Context, Result};
use chorus_bench::{chorus_binary, scratch_dir, start_cluster, BenchNode, ADMIN_TOKEN, PRICED};
use clap::Parser;
use serde_json::{json, Value};

#[derive(Debug, Parser)]
#[command(name = "limits-accuracy", about = "Key limits across a 3-node cluster")]
struct Args {
    /// Requests per minute of each key in the rate runs.
    #[arg(long, default_value_t = 300)]
    rpm: u64,
    /// Offered load, as a multiple of the limit.
    #[arg(long, default_value_t = 5)]
    overload: u64,
    /// Whole minutes measured per rate run (after a first, partial one).
    #[arg(long, default_value_t = 3)]
    windows: u64,
    /// Keys limited at once in the second rate run.
    #[arg(long, default_value_t = 10)]
    keys: usize,
    /// Daily budget of the budget runs, in USD.
    #[arg(long, default_value_t = 1.0)]
    budget_usd: f64,
    /// Concurrent clients per node in the budget runs.
    #[arg(long, default_value_t = 4)]
    clients: usize,
    #[arg(long, default_value_t = 100)]
    gossip_interval_ms: u64,
    /// Which runs: any of rate, keys, bursts, budget, kill.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "rate,keys,bursts,budget,kill"
    )]
    runs: Vec<String>,
    /// The `chorus` binary (default: next to this one).
    #[arg(long)]
    chorus: Option<PathBuf>,
}

/// USD per million tokens of the `priced` alias, as micro-dollars per token.
const PROMPT_MICROS_PER_TOKEN: u64 = 100;
const COMPLETION_MICROS_PER_TOKEN: u64 = 400;

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_millis() as u64)
}

struct Cluster {
    nodes: Vec<BenchNode>,
    client: reqwest::Client,
}

impl Cluster {
    fn start(args: &Args, name: &str) -> Result<Cluster> {
        let chorus = chorus_binary(args.chorus.as_deref())?;
        let dir = scratch_dir(name)?;
        let nodes = start_cluster(&chorus, &dir, 3, args.gossip_interval_ms)?;
        Ok(Cluster {
            nodes,
            client: reqwest::Client::new(),
        })
    }

    async fn ready(&self) -> Result<()> {
        for node in &self.nodes {
            node.wait_for_members(&self.client, 3).await?;
        }
        Ok(())
    }

    /// A new key with `fields`, usable on every node; its id and value.
    async fn key(&self, fields: Value) -> Result<(String, String)> {
        let created: Value = self
            .client
            .post(format!("{}/admin/keys", self.nodes[0].url))
            .bearer_auth(ADMIN_TOKEN)
            .json(&fields)
            .send()
            .await?
            .json()
            .await?;
        let id = created["id"].as_str().context("no id")?.to_owned();
        let key = created["key"].as_str().context("no key")?.to_owned();
        for node in &self.nodes {
            let deadline = Instant::now() + Duration::from_secs(10);
            while node_status(&self.client, &node.url, &key, "fast").await?.0 == 401 {
                ensure!(
                    Instant::now() < deadline,
                    "the key never reached {}",
                    node.url
                );
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
        Ok((id, key))
    }

    /// The spend of key `id` today, in micro-dollars, as `node` sees it:
    /// what requests used, and what requests under way hold reserved.
    async fn spend_micros(&self, node: usize, id: &str) -> Result<u64> {
        let view = self.nodes[node].cluster(&self.client).await?;
        let counters = &view["counters"][format!("key:{id}")];
        let figure = |kind: &str| counters[kind].as_u64().unwrap_or(0);
        let held = figure("spend_micros_day_held").saturating_sub(figure("spend_micros_day_freed"));
        Ok(figure("spend_micros_day") + held)
    }
}

/// One small chat completion: the status and, for a 200, its cost in
/// micro-dollars at the `priced` alias's prices.
async fn node_status(
    client: &reqwest::Client,
    url: &str,
    key: &str,
    model: &str,
) -> Result<(u16, u64)> {
    let body = json!({"model": model, "messages": [{"role": "user", "content": "count me"}]});
    let response = client
        .post(format!("{url}/v1/chat/completions"))
        .bearer_auth(key)
        .json(&body)
        .send()
        .await?;
    let status = response.status().as_u16();
    let answer: Value = response.json().await.unwrap_or_default();
    let usage = &answer["usage"];
    let cost = usage["prompt_tokens"].as_u64().unwrap_or(0) * PROMPT_MICROS_PER_TOKEN
        + usage["completion_tokens"].as_u64().unwrap_or(0) * COMPLETION_MICROS_PER_TOKEN;
    Ok((status, cost))
}

/// Offers `rate` requests per second on `key`, in turn over the nodes,
/// until `until_ms`; returns when each admitted request was answered, in
/// order.
async fn offer(cluster: Arc<Cluster>, key: String, rate: u64, until_ms: u64) -> Result<Vec<u64>> {
    let mut admitted = Vec::new();
    let interval = Duration::from_secs_f64(1.0 / rate as f64);
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut sent = 0usize;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    while unix_ms() < until_ms {
        ticker.tick().await;
        let cluster = cluster.clone();
        let key = key.clone();
        let tx = tx.clone();
        let node = sent % cluster.nodes.len();
        sent += 1;
        tokio::spawn(async move {
            let url = cluster.nodes[node].url.clone();
            if let Ok((status, _)) = node_status(&cluster.client, &url, &key, "fast").await {
                let _ = tx.send((status, unix_ms()));
            }
        });
    }
    drop(tx);
    while let Some((status, at)) = rx.recv().await {
        if status == 200 {
            admitted.push(at);
        }
    }
    admitted.sort_unstable();
    Ok(admitted)
}

/// The most of `times` (sorted, in ms) within any 60 s.
fn most_in_any_minute(times: &[u64]) -> usize {
    let mut start = 0;
    let mut most = 0;
    for (end, at) in times.iter().enumerate() {
        while times[start] + 60_000 <= *at {
            start += 1;
        }
        most = most.max(end + 1 - start);
    }
    most
}

fn percent_off(count: usize, limit: u64) -> f64 {
    (count as f64 - limit as f64) / limit as f64 * 100.0
}

/// Admitted per whole minute, after the first minute of the run.
async fn rate_run(args: &Args, keys: usize) -> Result<()> {
    let cluster = Arc::new(Cluster::start(args, &format!("limits-rate-{keys}"))?);
    cluster.ready().await?;
    let mut created = Vec::new();
    for index in 0..keys {
        created.push(
            cluster
                .key(json!({"name": format!("rate-{index}"), "rpm": args.rpm}))
                .await?
                .1,
        );
    }
    // Start on a minute boundary, then run the first minute plus the
    // measured windows.
    let now = unix_ms();
    let start_ms = now.div_ceil(60_000) * 60_000;
    tokio::time::sleep(Duration::from_millis(start_ms - now)).await;
    let until_ms = start_ms + (args.windows + 1) * 60_000;
    let rate = args.rpm * args.overload / 60;
    let runs: Vec<_> = created
        .into_iter()
        .map(|key| tokio::spawn(offer(cluster.clone(), key, rate, until_ms)))
        .collect();
    println!(
        "\n{keys} key(s) at {} rpm, {rate} requests/s offered each ({}x), 3 nodes, gossip every {} ms",
        args.rpm, args.overload, args.gossip_interval_ms
    );
    println!(
        "| key | {} | most in any 60 s |",
        (1..=args.windows)
            .map(|w| format!("minute {w}"))
            .collect::<Vec<_>>()
            .join(" | ")
    );
    println!("|---|{}---:|", "---:|".repeat(args.windows as usize));
    let first_minute = start_ms / 60_000;
    let (mut fewest, mut most) = (f64::MAX, f64::MIN);
    let mut measured_total = 0;
    for (index, run) in runs.into_iter().enumerate() {
        let admitted = run.await??;
        let figures: Vec<String> = (1..=args.windows)
            .map(|window| {
                let minute = first_minute + window;
                let count = admitted.iter().filter(|at| **at / 60_000 == minute).count();
                let off = percent_off(count, args.rpm);
                fewest = fewest.min(off);
                format!("{count} ({off:+.1}%)")
            })
            .collect();
        let measured: Vec<u64> = admitted
            .into_iter()
            .filter(|at| *at >= (first_minute + 1) * 60_000)
            .collect();
        measured_total += measured.len();
        let peak = most_in_any_minute(&measured);
        most = most.max(percent_off(peak, args.rpm));
        println!(
            "| {index} | {} | {peak} ({:+.1}%) |",
            figures.join(" | "),
            percent_off(peak, args.rpm)
        );
    }
    let mean = measured_total as f64 / (keys as u64 * args.windows) as f64;
    println!(
        "fewest in a clock minute: {fewest:+.1}%; most in any 60 s: {most:+.1}%; \
         mean per key and minute: {mean:.1} ({:.1}% of the limit)",
        mean / args.rpm as f64 * 100.0
    );
    Ok(())
}

/// The adversarial timing: an idle key offered `overload` times its limit
/// for the 30 s around a minute boundary (from :45 to :15), then idle
/// until that has left the window, `windows` times over.
async fn bursts_run(args: &Args) -> Result<()> {
    let cluster = Arc::new(Cluster::start(args, "limits-bursts")?);
    cluster.ready().await?;
    let (_, key) = cluster
        .key(json!({"name": "bursts", "rpm": args.rpm}))
        .await?;
    let rate = args.rpm * args.overload / 60;
    println!(
        "\none key at {} rpm, idle, then {rate} requests/s ({}x) from :45 to :15 of a minute, 3 nodes, gossip every {} ms",
        args.rpm, args.overload, args.gossip_interval_ms
    );
    println!("| burst | admitted | most in any 60 s |");
    println!("|---|---:|---:|");
    let mut most = 0;
    for burst in 1..=args.windows {
        let now = unix_ms();
        let start_ms = (now + 15_000).div_ceil(60_000) * 60_000 - 15_000;
        tokio::time::sleep(Duration::from_millis(start_ms - now)).await;
        let admitted = offer(cluster.clone(), key.clone(), rate, start_ms + 30_000).await?;
        let peak = most_in_any_minute(&admitted);
        most = most.max(peak);
        println!(
            "| {burst} | {} | {peak} ({:+.1}%) |",
            admitted.len(),
            percent_off(peak, args.rpm)
        );
        // Idle until the burst has left every window.
        tokio::time::sleep(Duration::from_secs(65)).await;
    }
    println!(
        "most in any 60 s: {most} ({:+.1}%)",
        percent_off(most, args.rpm)
    );
    Ok(())
}

/// Spends a budget from every node at once; with `kill`, SIGKILLs node 2
/// half-way. Prints the settled spend against the budget and the answers.
async fn budget_run(args: &Args, kill: bool) -> Result<()> {
    let name = if kill { "limits-kill" } else { "limits-budget" };
    let cluster = Arc::new(Cluster::start(args, name)?);
    cluster.ready().await?;
    let (id, key) = cluster
        .key(json!({"name": "budget", "budget_daily_usd": args.budget_usd}))
        .await?;
    let budget_micros = (args.budget_usd * 1e6).round() as u64;
    let answered = Arc::new(AtomicU64::new(0));
    let answered_micros = Arc::new(AtomicU64::new(0));
    let mut clients = Vec::new();
    for node in 0..3 {
        for _ in 0..args.clients {
            let cluster = cluster.clone();
            let key = key.clone();
            let (answered, answered_micros) = (answered.clone(), answered_micros.clone());
            clients.push(tokio::spawn(async move {
                let url = cluster.nodes[node].url.clone();
                let mut refused_in_a_row = 0;
                while refused_in_a_row < 20 {
                    match node_status(&cluster.client, &url, &key, PRICED).await {
                        Ok((200, cost)) => {
                            refused_in_a_row = 0;
                            answered.fetch_add(1, Ordering::Relaxed);
                            answered_micros.fetch_add(cost, Ordering::Relaxed);
                        }
                        Ok(_) => {
                            refused_in_a_row += 1;
                            tokio::time::sleep(Duration::from_millis(50)).await;
                        }
                        // The killed node's clients stop there.
                        Err(_) => return,
                    }
                }
            }));
        }
    }
    if kill {
        // Half the budget answered, then node 2 dies with requests in flight.
        while answered_micros.load(Ordering::Relaxed) < budget_micros / 2 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        cluster.nodes[2].signal_kill();
    }
    for client in clients {
        let _ = client.await;
    }
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    let settled = cluster.spend_micros(0, &id).await?;
    let answered = answered.load(Ordering::Relaxed);
    let answered_micros = answered_micros.load(Ordering::Relaxed);
    let per_request = answered_micros.checked_div(answered).unwrap_or(0);
    println!(
        "\nbudget USD {:.2}, {} clients per node{}",
        args.budget_usd,
        args.clients,
        if kill {
            ", node 2 SIGKILLed half-way"
        } else {
            ""
        }
    );
    println!("| requests answered | answered cost | settled spend | over the budget | in requests | settled − answered |");
    println!("|---:|---:|---:|---:|---:|---:|");
    let over = settled as i64 - budget_micros as i64;
    println!(
        "| {answered} | {:.6} | {:.6} | {:+.6} | {:+.2} | {:+.6} |",
        answered_micros as f64 / 1e6,
        settled as f64 / 1e6,
        over as f64 / 1e6,
        over as f64 / per_request.max(1) as f64,
        (settled as i64 - answered_micros as i64) as f64 / 1e6,
    );
    ensure!(
        settled >= answered_micros,
        "under-counted: settled {settled} below answered {answered_micros}"
    );
    Ok(())
}

fn main() -> Result<()> {
    let args = Args::parse();
    chorus_bench::block_on(async {
        for run in &args.runs {
            match run.as_str() {
                "rate" => rate_run(&args, 1).await?,
                "keys" => rate_run(&args, args.keys).await?,
                "bursts" => bursts_run(&args).await?,
                "budget" => budget_run(&args, false).await?,
                "kill" => budget_run(&args, true).await?,
                other => anyhow::bail!("unknown run `{other}`"),
            }
        }
        Ok(())
    })
}
