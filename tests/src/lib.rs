//! A sandbox for end-to-end tests: starts `mock-upstream` and `chorus` as
//! real processes on 127.0.0.1 ephemeral ports, waits for them to be ready,
//! and kills them when the test ends. Build the binaries first
//! (`cargo build --workspace --bins`; `tests/run.sh` does).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// The gateway key every test config accepts.
pub const TEST_KEY: &str = "sk-chorus-test-0123456789";
/// The key the node sends upstream; tests check it never leaks.
pub const UPSTREAM_KEY: &str = "sk-upstream-secret-9876543210";
/// The admin token every test config sets, for `/v1/cluster` and `/status`.
pub const ADMIN_TOKEN: &str = "admin-token-test-0123456789";

/// Where cargo put the workspace binaries: `CHORUS_BIN_DIR`, or the profile
/// directory this test binary runs from (`target/debug/deps/..`).
pub fn bin_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("CHORUS_BIN_DIR") {
        return PathBuf::from(dir);
    }
    let exe = std::env::current_exe().expect("test binary path");
    exe.parent()
        .and_then(Path::parent)
        .expect("test binary lives in target/<profile>/deps")
        .to_path_buf()
}

pub fn binary(name: &str) -> PathBuf {
    let path = bin_dir().join(name);
    assert!(
        path.exists(),
        "{} not found: run `cargo build --workspace --bins` first",
        path.display()
    );
    path
}

/// A fresh scratch directory for one test's files (stores of several
/// nodes can take hundreds of MB), removed when dropped unless the test is
/// failing: then it stays for a look.
pub fn scratch_dir() -> ScratchDir {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let dir = std::env::temp_dir().join(format!(
        "chorus-test-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir).expect("create scratch dir");
    ScratchDir(dir)
}

/// See [`scratch_dir`]. Hold it for as long as the files are used.
pub struct ScratchDir(PathBuf);

impl std::ops::Deref for ScratchDir {
    type Target = Path;

    fn deref(&self) -> &Path {
        &self.0
    }
}

impl AsRef<Path> for ScratchDir {
    fn as_ref(&self) -> &Path {
        &self.0
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// A child process that is killed when dropped.
struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Spawns `command`, reads the `... listening on http://ADDR` line it prints
/// on stdout and returns the address. A process that exits before it says
/// so fails the test with what it wrote to `log` (its stderr), if any.
fn spawn_listening(mut command: Command, log: Option<&Path>) -> (Process, String) {
    command.stdout(Stdio::piped());
    let mut child = command.spawn().expect("spawn process");
    let stdout = child.stdout.take().expect("piped stdout");
    let process = Process(child);
    let mut reader = BufReader::new(stdout);
    let mut line = String::new();
    reader.read_line(&mut line).expect("read startup line");
    // Keep reading, so a later line never meets a closed pipe.
    std::thread::spawn(move || std::io::copy(&mut reader, &mut std::io::sink()));
    let address = line
        .trim()
        .rsplit("http://")
        .next()
        .filter(|address| address.contains(':'))
        .unwrap_or_else(|| {
            let stderr = log
                .and_then(|log| std::fs::read_to_string(log).ok())
                .unwrap_or_default();
            panic!("unexpected startup line {line:?}; stderr:\n{stderr}")
        })
        .to_owned();
    (process, address)
}

pub struct MockUpstream {
    _process: Process,
    pub address: String,
}

impl MockUpstream {
    pub fn start(extra_args: &[&str]) -> Self {
        let mut command = Command::new(binary("mock-upstream"));
        command.args(["--listen", "127.0.0.1:0"]).args(extra_args);
        let (process, address) = spawn_listening(command, None);
        MockUpstream {
            _process: process,
            address,
        }
    }

    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.address)
    }

    /// `GET /mock/stats`.
    pub async fn stats(&self) -> serde_json::Value {
        get_json(&format!("http://{}/mock/stats", self.address)).await
    }

    /// `GET /mock/last-request`: the last chat body and authorization header.
    pub async fn last_request(&self) -> serde_json::Value {
        get_json(&format!("http://{}/mock/last-request", self.address)).await
    }
}

pub struct Node {
    process: Process,
    pub address: String,
    pub log_path: PathBuf,
    /// Its config and log: removed after the node is killed, unless the
    /// test is failing and the log may say why.
    _dir: ScratchDir,
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill();
    }
}

impl Node {
    /// Starts `chorus serve` on `config` (TOML text) and waits until ready.
    pub async fn start(config: &str) -> Self {
        Self::start_with(config, &[], &[]).await
    }

    pub async fn start_with(config: &str, args: &[&str], env: &[(&str, &str)]) -> Self {
        let dir = scratch_dir();
        let config_path = dir.join("chorus.toml");
        std::fs::write(&config_path, config).expect("write config");
        let log_path = dir.join("chorus.log");
        let log = std::fs::File::create(&log_path).expect("create log");
        let mut command = Command::new(binary("chorus"));
        command
            .arg("serve")
            .arg("--config")
            .arg(&config_path)
            .args(["--listen", "127.0.0.1:0"])
            .args(args)
            .envs(env.iter().copied())
            .stderr(log);
        let (process, address) = spawn_listening(command, Some(&log_path));
        let node = Node {
            process,
            address,
            log_path,
            _dir: dir,
        };
        node.wait_ready().await;
        node
    }

    /// Kills the node with SIGKILL: no shutdown, no goodbye to peers.
    pub fn kill(&mut self) {
        let _ = self.process.0.kill();
        let _ = self.process.0.wait();
    }

    /// `GET` a `/v1` path with the test key, as JSON.
    pub async fn get_v1(&self, path: &str) -> serde_json::Value {
        self.get_json_with(path, TEST_KEY).await
    }

    /// `GET /v1/cluster` with the admin token, as JSON.
    pub async fn cluster_view(&self) -> serde_json::Value {
        self.get_json_with("/v1/cluster", ADMIN_TOKEN).await
    }

    async fn get_json_with(&self, path: &str, token: &str) -> serde_json::Value {
        reqwest::Client::new()
            .get(self.url(path))
            .bearer_auth(token)
            .send()
            .await
            .expect("GET")
            .json()
            .await
            .expect("JSON body")
    }

    /// The cluster-wide value of counter `kind` of `subject` (a deployment,
    /// `key:<id>` or `team:<id>`).
    pub async fn counter(&self, subject: &str, kind: &str) -> u64 {
        self.cluster_view().await["counters"][subject][kind]
            .as_u64()
            .unwrap_or(0)
    }

    /// The node's resident memory, in KiB, from `/proc`.
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.process.0.id()))
            .expect("the node's /proc status");
        status
            .lines()
            .find_map(|line| line.strip_prefix("VmRSS:"))
            .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmRSS in /proc status")
    }

    /// Sends SIGTERM and waits for the node to exit; its exit status.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        self.signal("TERM");
        self.process.0.wait().expect("wait for the node")
    }

    /// Sends the signal `name` (`HUP`, `TERM`, …) to the node.
    pub fn signal(&self, name: &str) {
        let pid = self.process.0.id().to_string();
        let sent = Command::new("kill")
            .args([&format!("-{name}"), &pid])
            .status()
            .expect("run kill");
        assert!(sent.success(), "kill -{name} {pid} failed");
    }

    /// Whether the node's process has exited.
    pub fn has_exited(&mut self) -> bool {
        matches!(self.process.0.try_wait(), Ok(Some(_)))
    }

    /// `GET /metrics`, as text.
    pub async fn metrics(&self) -> String {
        reqwest::get(self.url("/metrics"))
            .await
            .expect("metrics request")
            .text()
            .await
            .expect("metrics body")
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.address, path)
    }

    async fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(response) = reqwest::get(self.url("/health/ready")).await {
                if response.status().is_success() {
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "node at {} never became ready",
                self.address
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// A `POST /v1/chat/completions` with the test key.
    pub fn chat(&self, body: &serde_json::Value) -> reqwest::RequestBuilder {
        reqwest::Client::new()
            .post(self.url("/v1/chat/completions"))
            .bearer_auth(TEST_KEY)
            .json(body)
    }

    /// A chat request's response body, as JSON.
    pub async fn chat_json(&self, body: &serde_json::Value) -> serde_json::Value {
        self.chat(body)
            .send()
            .await
            .expect("chat request")
            .json()
            .await
            .expect("JSON body")
    }

    /// A chat request's whole response body, as text.
    pub async fn chat_text(&self, body: &serde_json::Value) -> String {
        self.chat(body)
            .send()
            .await
            .expect("chat request")
            .text()
            .await
            .expect("body")
    }

    /// Waits until deployment `name`'s entry in `/v1/health` satisfies
    /// `check` (figures arrive a moment after the response), and returns it.
    pub async fn wait_for_deployment(
        &self,
        name: &str,
        check: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        let url = self.url("/v1/health");
        eventually(
            Duration::from_secs(5),
            &format!("deployment `{name}` figures"),
            || async {
                let health = get_json(&url).await;
                let deployment = health["deployments"]
                    .as_array()?
                    .iter()
                    .find(|d| d["name"] == name)?
                    .clone();
                check(&deployment).then_some(deployment)
            },
        )
        .await
    }

    /// The node's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// Waits until the log contains `needle` (log lines are written by a
    /// background thread, a moment after the response).
    pub async fn wait_for_log(&self, needle: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let log = self.log();
            if log.contains(needle) {
                return log;
            }
            assert!(
                Instant::now() < deadline,
                "log never contained {needle:?}:\n{log}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

pub async fn get_json(url: &str) -> serde_json::Value {
    reqwest::get(url)
        .await
        .expect("GET")
        .json()
        .await
        .expect("JSON body")
}

/// Polls `check` until it returns `Some`, or fails after `timeout`.
pub async fn eventually<T, F, Fut>(timeout: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The faults `mock-upstream` can inject; each test config has an alias
/// `fault-<name>` whose provider sends the matching `x-mock-fault` header,
/// with no retries, so the client sees what one faulty call gives.
pub const FAULTS: [&str; 10] = [
    "400",
    "context",
    "content-filter",
    "500",
    "429",
    "hang",
    "reset",
    "cut",
    "garbage",
    "error-event",
];

/// A config with `fast` on the mock upstream, one `fault-*` alias per fault,
/// `slow` (100 ms between stream tokens), `glacial` (500 ms between
/// them: a 10 s stream), `laggy` (300 ms before the
/// answer), `no-usage` (an upstream never asked for stream usage), `demo`
/// on the built-in mock, the test key and admin token. `fast` costs USD
/// 0.15 / 0.60 per million prompt / completion tokens.
pub fn standard_config(upstream: &MockUpstream) -> String {
    let base_url = upstream.base_url();
    let mut config = format!(
        r#"
[server]
max_body_bytes = 65536
admin_token = "{ADMIN_TOKEN}"

[[providers]]
name = "up"
format = "openai"
base_url = "{base_url}"
api_key = "{UPSTREAM_KEY}"
timeout_ms = 1500

[[providers]]
name = "slow"
format = "openai"
base_url = "{base_url}"
headers = {{ "x-mock-token-delay-ms" = "100", "x-mock-output-tokens" = "20" }}

[[providers]]
name = "glacial"
format = "openai"
base_url = "{base_url}"
headers = {{ "x-mock-token-delay-ms" = "500", "x-mock-output-tokens" = "20" }}

[[providers]]
name = "laggy"
format = "openai"
base_url = "{base_url}"
headers = {{ "x-mock-latency-ms" = "300" }}

[[providers]]
name = "builtin"
format = "mock"
token_delay_ms = 1
output_tokens = 8

[[providers]]
name = "no-usage"
format = "openai"
base_url = "{base_url}"
stream_usage = false

[[models]]
alias = "fast"
deployments = [{{ provider = "up", model = "gpt-4o-mini", input_per_mtok = 0.15, output_per_mtok = 0.60 }}]

[[models]]
alias = "no-usage"
deployments = [{{ provider = "no-usage", model = "gpt-4o-mini" }}]

[[models]]
alias = "slow"
deployments = [{{ provider = "slow", model = "gpt-4o-mini" }}]

[[models]]
alias = "laggy"
deployments = [{{ provider = "laggy", model = "gpt-4o-mini" }}]

[[models]]
alias = "demo"
deployments = [{{ provider = "builtin", model = "mock-1" }}]

[[models]]
alias = "glacial"
deployments = [{{ provider = "glacial", model = "gpt-4o-mini" }}]

[[keys]]
name = "test"
key = "{TEST_KEY}"
"#
    );
    for fault in FAULTS {
        config.push_str(&format!(
            r#"
[[providers]]
name = "fault-{fault}"
format = "openai"
base_url = "{base_url}"
timeout_ms = 1000
headers = {{ "x-mock-fault" = "{fault}", "x-mock-cut-after" = "3" }}

[[models]]
alias = "fault-{fault}"
max_retries = 0
deployments = [{{ provider = "fault-{fault}", model = "gpt-4o-mini" }}]
"#
        ));
    }
    config
}

/// A standalone node on the built-in mock: alias `fast` at USD 10 / 20 per
/// million prompt / completion tokens, the test key and the admin token.
/// Sections can follow.
pub fn mock_config() -> String {
    format!(
        r#"
[server]
admin_token = "{ADMIN_TOKEN}"

[[providers]]
name = "builtin"
format = "mock"

[[models]]
alias = "fast"
deployments = [{{ provider = "builtin", model = "mock", input_per_mtok = 10, output_per_mtok = 20 }}]

[[keys]]
name = "test"
key = "{TEST_KEY}"
"#
    )
}

/// A minimal chat request body for `model`.
pub fn chat_body(model: &str, stream: bool) -> serde_json::Value {
    serde_json::json!({
        "model": model,
        "stream": stream,
        "messages": [{"role": "user", "content": "What is Chorus?"}],
    })
}

/// Splits an SSE body into its events' (event type, data) pairs.
pub fn sse_events(body: &str) -> Vec<(Option<String>, String)> {
    body.split("\n\n")
        .filter(|event| !event.trim().is_empty())
        .map(|event| {
            let mut kind = None;
            let mut data = String::new();
            for line in event.lines() {
                if let Some(value) = line.strip_prefix("event: ") {
                    kind = Some(value.to_owned());
                } else if let Some(value) = line.strip_prefix("data: ") {
                    data.push_str(value);
                }
            }
            (kind, data)
        })
        .collect()
}

/// A UDP port free right now on 127.0.0.1, for a node's gossip, and never
/// one this test process was handed before: tests run in parallel, and a
/// port freed by one test's killed node must not become another's while
/// the first may restart on it. Taken below the kernel's ephemeral range
/// (32768 and up), so no socket anywhere on the machine that binds port 0
/// can take it between this call and the node binding it.
pub fn free_udp_port() -> u16 {
    const PORTS: std::ops::Range<u32> = 20_000..32_000;
    static HANDED_OUT: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    let mut handed_out = HANDED_OUT
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    // Parallel test processes start from different places in the range.
    let span = PORTS.end - PORTS.start;
    let start = std::process::id().wrapping_mul(7_919) % span;
    for step in 0..span {
        let port = (PORTS.start + (start + step * 13) % span) as u16;
        if handed_out.contains(&port) {
            continue;
        }
        if std::net::UdpSocket::bind(("127.0.0.1", port)).is_ok() {
            handed_out.push(port);
            return port;
        }
    }
    panic!("no free UDP port in {PORTS:?}");
}

/// A clustered node's config: built-in mock aliases `fast` (instant),
/// `slow` (20 tokens 100 ms apart) and `dead` (an upstream nobody listens
/// on), the test key and admin token, a `[cluster]` section gossiping every
/// 100 ms on `gossip_port` and joining through `seeds`, and with `data` a
/// `[storage]` section in `data/<node_id>`. The `[cluster]` section comes
/// last, so a test can append settings to it.
pub fn cluster_config(
    node_id: &str,
    gossip_port: u16,
    seeds: &[u16],
    secret: &str,
    data: Option<&Path>,
) -> String {
    let seeds: Vec<String> = seeds
        .iter()
        .map(|port| format!("\"127.0.0.1:{port}\""))
        .collect();
    let storage = data
        .map(|data| format!("[storage]\npath = \"{}\"\n", data.join(node_id).display()))
        .unwrap_or_default();
    format!(
        r#"
[server]
admin_token = "{ADMIN_TOKEN}"

[[providers]]
name = "builtin"
format = "mock"

[[providers]]
name = "paced"
format = "mock"
token_delay_ms = 100
output_tokens = 20

[[providers]]
name = "nowhere"
format = "openai"
base_url = "http://127.0.0.1:9/v1"
timeout_ms = 1000

[[models]]
alias = "fast"
deployments = [{{ provider = "builtin", model = "mock" }}]

[[models]]
alias = "slow"
deployments = [{{ provider = "paced", model = "mock" }}]

[[models]]
alias = "dead"
deployments = [{{ provider = "nowhere", model = "m" }}]

[[keys]]
name = "test"
key = "{TEST_KEY}"

{storage}
[cluster]
node_id = "{node_id}"
listen = "127.0.0.1:{gossip_port}"
seeds = [{seeds}]
cluster_id = "test-cluster"
gossip_interval_ms = 100
secret = "{secret}"
"#,
        seeds = seeds.join(", ")
    )
}

/// [`cluster_config`]s for `ids`, each seeded with every other, storing
/// under `data`, with `extra` appended to the `[cluster]` section; and
/// their gossip ports.
pub fn cluster_configs(
    ids: &[&str],
    secret: &str,
    data: &Path,
    extra: &str,
) -> (Vec<String>, Vec<u16>) {
    let ports: Vec<u16> = ids.iter().map(|_| free_udp_port()).collect();
    let configs = ids
        .iter()
        .enumerate()
        .map(|(index, id)| {
            let seeds: Vec<u16> = ports
                .iter()
                .enumerate()
                .filter(|(other, _)| *other != index)
                .map(|(_, port)| *port)
                .collect();
            cluster_config(id, ports[index], &seeds, secret, Some(data)) + extra
        })
        .collect();
    (configs, ports)
}

impl Node {
    /// Waits until this node's `GET /v1/cluster` counts `count` live members.
    pub async fn wait_for_live_members(&self, count: usize) {
        eventually(
            Duration::from_secs(30),
            &format!("{count} live members"),
            || async {
                let cluster = self.cluster_view().await;
                let alive = cluster["members"]
                    .as_array()?
                    .iter()
                    .filter(|m| m["alive"] == true)
                    .count();
                (alive == count).then_some(())
            },
        )
        .await;
    }
}

/// Starts one clustered node per id (`cluster_config`, no storage), each
/// joining through the first node (the first through the second), and waits
/// until every node sees them all alive. Returns the nodes and their gossip
/// ports, in the order of `node_ids`.
pub async fn start_cluster(node_ids: &[&str], secret: &str) -> (Vec<Node>, Vec<u16>) {
    start_cluster_with(node_ids, secret, "").await
}

/// [`start_cluster`] with `extra` config (providers, models) appended to
/// every node's.
pub async fn start_cluster_with(
    node_ids: &[&str],
    secret: &str,
    extra: &str,
) -> (Vec<Node>, Vec<u16>) {
    let ports: Vec<u16> = node_ids.iter().map(|_| free_udp_port()).collect();
    let mut nodes = Vec::with_capacity(node_ids.len());
    for (index, node_id) in node_ids.iter().enumerate() {
        let seed = if index == 0 {
            ports.get(1)
        } else {
            ports.first()
        };
        let seeds: Vec<u16> = seed.copied().into_iter().collect();
        let config = cluster_config(node_id, ports[index], &seeds, secret, None) + extra;
        nodes.push(Node::start(&config).await);
    }
    for node in &nodes {
        node.wait_for_live_members(node_ids.len()).await;
    }
    (nodes, ports)
}

impl Node {
    /// An admin API call with the admin token: the status and the JSON answer.
    pub async fn admin(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> (reqwest::StatusCode, serde_json::Value) {
        let mut request = reqwest::Client::new()
            .request(method, self.url(path))
            .bearer_auth(ADMIN_TOKEN);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("admin request");
        let status = response.status();
        (status, response.json().await.unwrap_or_default())
    }

    /// Creates a virtual key through the admin API; its value.
    pub async fn create_key(&self, body: serde_json::Value) -> String {
        let (status, created) = self
            .admin(reqwest::Method::POST, "/admin/keys", Some(body))
            .await;
        assert_eq!(status, 201, "{created}");
        created["key"].as_str().expect("the key").to_owned()
    }

    /// The status of a small chat completion on `model` with `key`.
    pub async fn chat_status_with(&self, key: &str, model: &str) -> u16 {
        reqwest::Client::new()
            .post(self.url("/v1/chat/completions"))
            .bearer_auth(key)
            .json(&chat_body(model, false))
            .send()
            .await
            .expect("chat request")
            .status()
            .as_u16()
    }
}
