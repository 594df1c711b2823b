//! `convergence`: how fast a count made on one node is visible on all, with
//! real `chorus` processes gossiping over UDP on 127.0.0.1.
//!
//! Starts N nodes (built-in mock provider, durable counters, authenticated
//! gossip), then, round after round, sends one chat completion to one node
//! (rotating) and times until every node's `GET /v1/cluster` shows the new
//! total of `calls/builtin/mock`. That is the whole path: the deployment
//! actor counts the call, the gossip actor publishes it at its next
//! exchange, chitchat spreads it, each receiver's gossip actor merges it.

use std::io::{BufRead, BufReader};
use std::net::UdpSocket;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Parser;
use serde_json::{json, Value};

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

const KEY: &str = "sk-convergence";
const COUNTER: &str = "calls/builtin/mock";
const GIVE_UP: Duration = Duration::from_secs(60);

struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

struct Node {
    _process: Process,
    url: String,
}

fn free_udp_port() -> Result<u16> {
    Ok(UdpSocket::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn start_node(
    chorus: &PathBuf,
    dir: &std::path::Path,
    index: usize,
    ports: &[u16],
    interval_ms: u64,
) -> Result<Node> {
    let seeds: Vec<String> = ports
        .iter()
        .take(1)
        .map(|port| format!("\"127.0.0.1:{port}\""))
        .collect();
    let config = format!(
        "[[providers]]\nname = \"builtin\"\nformat = \"mock\"\n\
         [[models]]\nalias = \"fast\"\ndeployments = [{{ provider = \"builtin\", model = \"mock\" }}]\n\
         [[keys]]\nname = \"bench\"\nkey = \"{KEY}\"\n\
         [storage]\npath = \"{store}\"\n\
         [cluster]\nnode_id = \"node-{index}\"\nlisten = \"127.0.0.1:{port}\"\nseeds = [{seeds}]\n\
         gossip_interval_ms = {interval_ms}\nsecret = \"convergence-bench-secret-0123456789\"\n",
        store = dir.join(format!("node-{index}")).display(),
        port = ports[index],
        seeds = seeds.join(", "),
    );
    let path = dir.join(format!("node-{index}.toml"));
    std::fs::write(&path, config)?;
    let mut child = Command::new(chorus)
        .args(["serve", "--listen", "127.0.0.1:0", "--config"])
        .arg(&path)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| format!("cannot start {}", chorus.display()))?;
    let stdout = child.stdout.take().context("stdout")?;
    let process = Process(child);
    let mut reader = BufReader::new(stdout);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    std::thread::spawn(move || std::io::copy(&mut reader, &mut std::io::sink()));
    let address = line
        .trim()
        .rsplit("http://")
        .next()
        .context("no start-up line")?
        .to_owned();
    Ok(Node {
        _process: process,
        url: format!("http://{address}"),
    })
}

async fn cluster(client: &reqwest::Client, node: &Node) -> Result<Value> {
    Ok(client
        .get(format!("{}/v1/cluster", node.url))
        .bearer_auth(KEY)
        .send()
        .await?
        .json()
        .await?)
}

async fn wait_until(what: &str, mut check: impl AsyncFnMut() -> Result<bool>) -> Result<()> {
    let start = Instant::now();
    while !check().await? {
        if start.elapsed() > GIVE_UP {
            bail!("timed out waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    Ok(())
}

async fn measure(args: &Args, chorus: &PathBuf, count: usize) -> Result<String> {
    let dir =
        std::env::temp_dir().join(format!("chorus-convergence-{}-{count}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let ports: Vec<u16> = (0..count).map(|_| free_udp_port()).collect::<Result<_>>()?;
    let nodes: Vec<Node> = (0..count)
        .map(|index| start_node(chorus, &dir, index, &ports, args.gossip_interval_ms))
        .collect::<Result<_>>()?;
    let client = reqwest::Client::new();
    for node in &nodes {
        wait_until("health", async || {
            Ok(client
                .get(format!("{}/health/ready", node.url))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success()))
        })
        .await?;
        wait_until("every member alive", async || {
            let view = cluster(&client, node).await?;
            let alive = view["members"]
                .as_array()
                .map_or(0, |m| m.iter().filter(|m| m["alive"] == true).count());
            Ok(alive == count)
        })
        .await?;
    }

    let mut times = Vec::with_capacity(args.rounds as usize);
    for round in 0..args.rounds {
        let node = &nodes[round as usize % count];
        let body = json!({"model": "fast", "messages": [{"role": "user", "content": "count me"}]});
        client
            .post(format!("{}/v1/chat/completions", node.url))
            .bearer_auth(KEY)
            .json(&body)
            .send()
            .await?
            .bytes()
            .await?;
        let start = Instant::now();
        let expected = round + 1;
        for other in &nodes {
            wait_until("the count everywhere", async || {
                Ok(cluster(&client, other).await?["counters"][COUNTER].as_u64() == Some(expected))
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
    let chorus = match &args.chorus {
        Some(path) => path.clone(),
        None => std::env::current_exe()?.with_file_name("chorus"),
    };
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
