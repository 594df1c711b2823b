//! What the process-level benchmarks share: real `chorus` nodes on
//! 127.0.0.1 with the built-in mock provider, durable counters and
//! authenticated gossip, and the reads and waits they are measured by.

use std::io::{BufRead, BufReader};
use std::net::UdpSocket;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};

pub mod mock_messages;

pub const KEY: &str = "sk-bench";
pub const ADMIN_TOKEN: &str = "admin-bench-0123456789";
/// The deployment every bench node serves.
pub const DEPLOYMENT: &str = "builtin/mock";
/// Alias `priced`: the built-in mock at USD 100 and 400 per million
/// prompt and completion tokens (16 completion tokens a reply), reserving
/// 32 output tokens when a request sets no `max_tokens`.
pub const PRICED: &str = "priced";
const GIVE_UP: Duration = Duration::from_secs(60);

/// Runs a benchmark's `main` future on a multi-threaded runtime.
pub fn block_on<T>(future: impl std::future::Future<Output = Result<T>>) -> Result<T> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(future)
}

/// The `chorus` binary: `explicit`, or the one next to this benchmark.
pub fn chorus_binary(explicit: Option<&Path>) -> Result<PathBuf> {
    match explicit {
        Some(path) => Ok(path.to_owned()),
        None => Ok(std::env::current_exe()?.with_file_name("chorus")),
    }
}

pub fn free_udp_port() -> Result<u16> {
    Ok(UdpSocket::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// A fresh directory for one run's configs and stores.
pub fn scratch_dir(name: &str) -> Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("chorus-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

/// How a bench node is set up.
pub struct NodeSpec<'a> {
    pub chorus: &'a Path,
    pub dir: &'a Path,
    pub index: usize,
    pub gossip_port: u16,
    pub seeds: &'a [u16],
    pub gossip_interval_ms: u64,
    pub dead_node_grace_ms: u64,
}

/// A running node, killed (SIGKILL) when dropped. Its log (stderr) is
/// `node-<index>.log` in the bench's directory.
pub struct BenchNode {
    child: Child,
    pub url: String,
}

impl Drop for BenchNode {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl BenchNode {
    pub fn start(spec: &NodeSpec<'_>) -> Result<BenchNode> {
        let NodeSpec {
            chorus,
            dir,
            index,
            gossip_port,
            seeds,
            gossip_interval_ms,
            dead_node_grace_ms,
        } = *spec;
        let seeds: Vec<String> = seeds
            .iter()
            .map(|port| format!("\"127.0.0.1:{port}\""))
            .collect();
        let config = format!(
            "[server]\nadmin_token = \"{ADMIN_TOKEN}\"\n\
             [[providers]]\nname = \"builtin\"\nformat = \"mock\"\n\
             [[models]]\nalias = \"fast\"\ndeployments = [{{ provider = \"builtin\", model = \"mock\" }}]\n\
             [[models]]\nalias = \"priced\"\ndefault_max_tokens = 32\n\
             deployments = [{{ provider = \"builtin\", model = \"priced\", input_per_mtok = 100, output_per_mtok = 400 }}]\n\
             [[keys]]\nname = \"bench\"\nkey = \"{KEY}\"\n\
             [storage]\npath = \"{store}\"\n\
             [cluster]\nnode_id = \"node-{index}\"\nlisten = \"127.0.0.1:{gossip_port}\"\nseeds = [{seeds}]\n\
             gossip_interval_ms = {gossip_interval_ms}\ndead_node_grace_ms = {dead_node_grace_ms}\n\
             secret = \"bench-secret-0123456789\"\n",
            store = dir.join(format!("node-{index}")).display(),
            seeds = seeds.join(", "),
        );
        let path = dir.join(format!("node-{index}.toml"));
        std::fs::write(&path, config)?;
        let log = std::fs::File::create(dir.join(format!("node-{index}.log")))?;
        let mut child = Command::new(chorus)
            .args(["serve", "--listen", "127.0.0.1:0", "--config"])
            .arg(&path)
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .with_context(|| format!("cannot start {}", chorus.display()))?;
        let stdout = child.stdout.take().context("stdout")?;
        let mut reader = BufReader::new(stdout);
        let mut line = String::new();
        reader.read_line(&mut line)?;
        std::thread::spawn(move || std::io::copy(&mut reader, &mut std::io::sink()));
        let address = line
            .trim()
            .rsplit("http://")
            .next()
            .context("no start-up line")?;
        Ok(BenchNode {
            url: format!("http://{address}"),
            child,
        })
    }

    /// `GET /v1/cluster` with the admin token.
    pub async fn cluster(&self, client: &reqwest::Client) -> Result<Value> {
        Ok(client
            .get(format!("{}/v1/cluster", self.url))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await?
            .json()
            .await?)
    }

    /// The cluster-wide calls of the bench deployment, as this node sees them.
    pub async fn calls(&self, client: &reqwest::Client) -> Result<u64> {
        Ok(self.cluster(client).await?["counters"][DEPLOYMENT]["calls"]
            .as_u64()
            .unwrap_or(0))
    }

    /// One chat completion on the bench alias.
    pub async fn chat(&self, client: &reqwest::Client) -> Result<()> {
        let body = json!({"model": "fast", "messages": [{"role": "user", "content": "count me"}]});
        let response = client
            .post(format!("{}/v1/chat/completions", self.url))
            .bearer_auth(KEY)
            .json(&body)
            .send()
            .await?;
        anyhow::ensure!(
            response.status().is_success(),
            "chat answered {}",
            response.status()
        );
        response.bytes().await?;
        Ok(())
    }

    /// Waits until the node is ready and sees `members` live members.
    pub async fn wait_for_members(&self, client: &reqwest::Client, members: usize) -> Result<()> {
        wait_until("every member alive", async || {
            let Ok(view) = self.cluster(client).await else {
                return Ok(false);
            };
            let alive = view["members"]
                .as_array()
                .map_or(0, |m| m.iter().filter(|m| m["alive"] == true).count());
            Ok(alive == members)
        })
        .await
    }

    /// The node's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends the node SIGKILL, without waiting (for a node others share).
    pub fn signal_kill(&self) {
        let _ = Command::new("kill")
            .args(["-KILL", &self.child.id().to_string()])
            .status();
    }

    /// Kills the node with SIGKILL and waits for it to go.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `count` nodes in `dir`, all joining through the first, with the
/// dead-node grace long enough to play no part in a run.
pub fn start_cluster(
    chorus: &Path,
    dir: &Path,
    count: usize,
    gossip_interval_ms: u64,
) -> Result<Vec<BenchNode>> {
    let ports: Vec<u16> = (0..count).map(|_| free_udp_port()).collect::<Result<_>>()?;
    (0..count)
        .map(|index| {
            BenchNode::start(&NodeSpec {
                chorus,
                dir,
                index,
                gossip_port: ports[index],
                seeds: &ports[..1],
                gossip_interval_ms,
                dead_node_grace_ms: 600_000,
            })
        })
        .collect()
}

/// Polls `check` every 2 ms until it holds; gives up after a minute.
pub async fn wait_until(what: &str, mut check: impl AsyncFnMut() -> Result<bool>) -> Result<()> {
    let start = Instant::now();
    while !check().await? {
        if start.elapsed() > GIVE_UP {
            bail!("timed out waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    Ok(())
}
