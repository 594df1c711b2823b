//! `[cluster]`: gossip membership and its authentication.

use std::net::SocketAddr;
use std::time::Duration;

use serde::Deserialize;

use super::checker::Checker;

const DEFAULT_GOSSIP_LISTEN: &str = "127.0.0.1:7946";
const DEFAULT_GOSSIP_INTERVAL_MS: u64 = 500;
const DEFAULT_CLUSTER_ID: &str = "chorus";
/// Ten minutes: a dead node's gossip state is shared for half of it, then
/// only the counts peers republish remain, and after all of it chitchat
/// forgets the node.
const DEFAULT_DEAD_NODE_GRACE_MS: u64 = 600_000;
/// Shorter secrets are too easy to guess for packet authentication.
const MIN_SECRET_LEN: usize = 16;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCluster {
    /// This node's stable identity; keep it across restarts. Required.
    pub node_id: String,
    /// UDP address gossip listens on. Default `127.0.0.1:7946`.
    pub listen: Option<String>,
    /// Address peers reach this node's gossip at; every datagram is sealed
    /// with it, and peers drop datagrams that come from elsewhere. Peers
    /// seal theirs for it too: a datagram sealed for another node's
    /// address does not open here. Default: `listen`.
    pub advertise: Option<String>,
    /// Gossip addresses (`host:port`) of nodes to join through: each one's
    /// `advertise` (or `listen`) address. Default none.
    #[serde(default)]
    pub seeds: Vec<String>,
    /// Nodes only gossip with nodes of the same cluster id. Default `chorus`.
    pub cluster_id: Option<String>,
    /// Time between gossip rounds, in ms. Default 500.
    pub gossip_interval_ms: Option<u64>,
    /// How long a dead node's state is kept, in ms. Default 600000.
    pub dead_node_grace_ms: Option<u64>,
    /// Shared secret every gossip datagram is sealed with (HMAC-SHA256).
    /// Required; `${VAR}` allowed.
    pub secret: String,
    /// Secrets also accepted from peers, never used to seal: the old one
    /// while a new `secret` rolls out. Default none.
    #[serde(default)]
    pub accept_secrets: Vec<String>,
}

#[derive(Clone)]
pub struct ClusterConfig {
    pub node_id: String,
    pub listen: SocketAddr,
    pub advertise: SocketAddr,
    pub seeds: Vec<String>,
    pub cluster_id: String,
    pub gossip_interval: Duration,
    pub dead_node_grace: Duration,
    /// `secret` first (it seals), then `accept_secrets`.
    pub secrets: Vec<String>,
}

/// Hand-written so the secrets never reach a log through `{:?}`.
impl std::fmt::Debug for ClusterConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterConfig")
            .field("node_id", &self.node_id)
            .field("listen", &self.listen)
            .field("advertise", &self.advertise)
            .field("seeds", &self.seeds)
            .field("cluster_id", &self.cluster_id)
            .field("gossip_interval", &self.gossip_interval)
            .field("dead_node_grace", &self.dead_node_grace)
            .finish_non_exhaustive()
    }
}

pub fn check(raw: &RawCluster, checker: &mut Checker) -> Option<ClusterConfig> {
    let at = |field: &str| format!("cluster.{field}");
    let address = |checker: &mut Checker, field: &str, written: &str| -> Option<SocketAddr> {
        let expanded = checker.expand(&at(field), written)?;
        match expanded.parse() {
            Ok(address) => Some(address),
            Err(_) => {
                checker.problem(
                    at(field),
                    format!("`{written}` is not an address like `127.0.0.1:7946`"),
                );
                None
            }
        }
    };
    let node_id = raw.node_id.trim();
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.');
    let node_id_valid = !node_id.is_empty() && node_id.chars().all(allowed);
    if !node_id_valid {
        // Gossip keys embed node ids before a `:`.
        checker.problem(at("node_id"), "must be letters, digits, `-`, `_` or `.`");
    }
    let listen = address(
        checker,
        "listen",
        raw.listen.as_deref().unwrap_or(DEFAULT_GOSSIP_LISTEN),
    );
    let advertise = match &raw.advertise {
        Some(written) => address(checker, "advertise", written),
        None => listen,
    };
    if let Some(unreachable) = advertise.filter(|advertise| advertise.ip().is_unspecified()) {
        checker.problem(
            at("advertise"),
            format!("peers cannot reach `{unreachable}`: set `advertise` to this node's address"),
        );
    }
    let mut seeds = Vec::with_capacity(raw.seeds.len());
    for (index, seed) in raw.seeds.iter().enumerate() {
        let field = at(&format!("seeds[{index}]"));
        let Some(seed) = checker.expand(&field, seed) else {
            continue;
        };
        if seed.contains(':') {
            seeds.push(seed);
        } else {
            checker.problem(
                field,
                format!("`{seed}` needs a port, like `10.0.0.2:7946`"),
            );
        }
    }
    let interval_ms = raw.gossip_interval_ms.unwrap_or(DEFAULT_GOSSIP_INTERVAL_MS);
    if !(10..=60_000).contains(&interval_ms) {
        checker.problem(at("gossip_interval_ms"), "must be between 10 and 60000");
    }
    let grace_ms = raw.dead_node_grace_ms.unwrap_or(DEFAULT_DEAD_NODE_GRACE_MS);
    if grace_ms < interval_ms.saturating_mul(10) {
        checker.problem(
            at("dead_node_grace_ms"),
            "must be at least ten gossip intervals, so a dead node is noticed before it is forgotten",
        );
    }
    let mut secrets = Vec::with_capacity(1 + raw.accept_secrets.len());
    let written = std::iter::once(("secret".to_owned(), &raw.secret)).chain(
        raw.accept_secrets
            .iter()
            .enumerate()
            .map(|(index, secret)| (format!("accept_secrets[{index}]"), secret)),
    );
    for (field, secret) in written {
        let Some(secret) = checker.expand(&at(&field), secret) else {
            continue;
        };
        if secret.len() < MIN_SECRET_LEN {
            checker.problem(
                at(&field),
                format!("must be at least {MIN_SECRET_LEN} characters"),
            );
        } else {
            secrets.push(secret);
        }
    }
    let all_valid = node_id_valid
        && (10..=60_000).contains(&interval_ms)
        && grace_ms >= interval_ms.saturating_mul(10)
        && secrets.len() == 1 + raw.accept_secrets.len()
        && seeds.len() == raw.seeds.len();
    let (listen, advertise) = (listen?, advertise?);
    (all_valid && !advertise.ip().is_unspecified()).then(|| ClusterConfig {
        node_id: node_id.to_owned(),
        listen,
        advertise,
        seeds,
        cluster_id: raw
            .cluster_id
            .clone()
            .unwrap_or_else(|| DEFAULT_CLUSTER_ID.to_owned()),
        gossip_interval: Duration::from_millis(interval_ms),
        dead_node_grace: Duration::from_millis(grace_ms),
        secrets,
    })
}
