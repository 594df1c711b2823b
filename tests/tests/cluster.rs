//! Nodes form a cluster by authenticated gossip: they converge, see a node
//! killed with SIGKILL go dead and come back after a restart, and drop
//! (and count) forged, foreign and garbage gossip packets.

use std::net::UdpSocket;
use std::time::Duration;

use chorus_tests::{chat_body, cluster_config, eventually, free_udp_port, start_cluster, Node};
use hmac::{Hmac, KeyInit, Mac};
use serde_json::Value;
use sha2::{Digest, Sha256};

const SECRET: &str = "cluster-test-secret-0123456789";
/// The cluster id `cluster_config` gives every node.
const CLUSTER_ID: &str = "test-cluster";
/// Convergence and failure detection can take a few seconds on a busy machine.
const PATIENCE: Duration = Duration::from_secs(30);

/// `node_id -> (alive, generation)` as `node` sees the cluster.
async fn view(node: &Node) -> Vec<(String, bool, u64)> {
    let cluster = node.cluster_view().await;
    cluster["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["node_id"].as_str().unwrap().to_owned(),
                m["alive"].as_bool().unwrap(),
                m["generation"].as_u64().unwrap(),
            )
        })
        .collect()
}

async fn wait_for_view(
    node: &Node,
    what: &str,
    check: impl Fn(&[(String, bool, u64)]) -> bool,
) -> Vec<(String, bool, u64)> {
    eventually(PATIENCE, what, || async {
        let members = view(node).await;
        check(&members).then_some(members)
    })
    .await
}

fn all_alive(members: &[(String, bool, u64)], ids: &[&str]) -> bool {
    members.len() == ids.len()
        && ids
            .iter()
            .all(|id| members.iter().any(|(m, alive, _)| m == id && *alive))
}

#[tokio::test]
async fn three_nodes_converge_see_a_killed_node_dead_and_see_it_rejoin() {
    let ports = [free_udp_port(), free_udp_port(), free_udp_port()];
    let configs = [
        cluster_config("node-a", ports[0], &[ports[1], ports[2]], SECRET, None),
        cluster_config("node-b", ports[1], &[ports[0]], SECRET, None),
        cluster_config("node-c", ports[2], &[ports[0]], SECRET, None),
    ];
    let a = Node::start(&configs[0]).await;
    let b = Node::start(&configs[1]).await;
    let mut c = Node::start(&configs[2]).await;
    let ids = ["node-a", "node-b", "node-c"];
    for node in [&a, &b, &c] {
        wait_for_view(node, "three live members", |m| all_alive(m, &ids)).await;
    }
    let first_generation = view(&a).await.iter().find(|m| m.0 == "node-c").unwrap().2;

    c.kill();
    for node in [&a, &b] {
        wait_for_view(node, "node-c dead", |m| {
            m.iter().any(|(id, alive, _)| id == "node-c" && !alive)
        })
        .await;
    }
    let cluster = a.cluster_view().await;
    assert_eq!(cluster["gossip"]["peers"], 1, "{cluster}");

    let c = Node::start(&configs[2]).await;
    for node in [&a, &b, &c] {
        let members = wait_for_view(node, "node-c back", |m| all_alive(m, &ids)).await;
        let generation = members.iter().find(|m| m.0 == "node-c").unwrap().2;
        assert!(
            generation > first_generation,
            "a restart is a newer generation"
        );
    }
}

#[tokio::test]
async fn forged_foreign_and_garbage_gossip_is_dropped_and_counted() {
    let (nodes, ports) = start_cluster(&["node-a", "node-b"], SECRET).await;
    let (a, b) = (&nodes[0], &nodes[1]);

    // A node with the wrong secret cannot join.
    let intruder = Node::start(&cluster_config(
        "intruder",
        free_udp_port(),
        &[ports[0]],
        "wrong-secret-0123456789",
        None,
    ))
    .await;

    // Datagrams sealed by hand, as the wire format says (see
    // node/src/cluster/transport/seal.rs), from a socket of our own.
    let sender = UdpSocket::bind("127.0.0.1:0").unwrap();
    let target = format!("127.0.0.1:{}", ports[0]);
    let now_ms = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64
    };
    let tag: [u8; 8] = Sha256::digest(CLUSTER_ID.as_bytes())[..8]
        .try_into()
        .unwrap();
    let own_address = sender.local_addr().unwrap();
    // An address as the seal carries it: IPv6 (IPv4 mapped), then port.
    let address = |at: std::net::SocketAddr| {
        let ip = match at.ip() {
            std::net::IpAddr::V4(ip) => ip.to_ipv6_mapped(),
            std::net::IpAddr::V6(ip) => ip,
        };
        [ip.octets().as_slice(), &at.port().to_be_bytes()].concat()
    };
    let node_a: std::net::SocketAddr = ([127, 0, 0, 1], ports[0]).into();
    // Sealed for node a, unless `to` says otherwise.
    let seal_to = |to: std::net::SocketAddr,
                   tag: &[u8],
                   key: &[u8],
                   from: std::net::SocketAddr,
                   sent_at: u64,
                   sequence: u64,
                   payload: &[u8]| {
        let header = [
            b"CHG2".as_slice(),
            tag,
            &address(from),
            &sent_at.to_be_bytes(),
            &sequence.to_be_bytes(),
            &[0, 1],
        ]
        .concat();
        let mut mac = Hmac::<Sha256>::new_from_slice(key).unwrap();
        mac.update(&header);
        mac.update(&address(to));
        mac.update(payload);
        [header.as_slice(), &mac.finalize().into_bytes(), payload].concat()
    };
    let seal =
        |tag: &[u8],
         key: &[u8],
         from: std::net::SocketAddr,
         sent_at: u64,
         sequence: u64,
         payload: &[u8]| { seal_to(node_a, tag, key, from, sent_at, sequence, payload) };
    let send = |datagram: &[u8]| {
        sender.send_to(datagram, &target).unwrap();
    };
    let secret = SECRET.as_bytes();
    // Garbage, and a truncated header.
    send(b"\x00\x01 definitely not gossip");
    send(b"CHG2");
    // Another cluster's tag.
    send(&seal(&[7; 8], secret, own_address, now_ms(), 1, b"payload"));
    // The right tag, a MAC made with the wrong key.
    send(&seal(
        &tag,
        b"guessed-0123456789",
        own_address,
        now_ms(),
        2,
        b"payload",
    ));
    // The right key over a payload that is not a chitchat message, then
    // the same datagram again.
    let genuine = seal(&tag, secret, own_address, now_ms(), 3, b"not chitchat");
    send(&genuine);
    send(&genuine);
    // The right key, sealed a minute ago.
    send(&seal(
        &tag,
        secret,
        own_address,
        now_ms() - 60_000,
        4,
        b"old",
    ));
    // The right key, sealed for another sender than the one sending it.
    let elsewhere: std::net::SocketAddr = ([127, 0, 0, 1], 9).into();
    send(&seal(&tag, secret, elsewhere, now_ms(), 5, b"relayed"));
    // The right key, sealed for node b: captured on its way there and
    // replayed to node a, it does not open.
    let node_b: std::net::SocketAddr = ([127, 0, 0, 1], ports[1]).into();
    send(&seal_to(
        node_b,
        &tag,
        secret,
        own_address,
        now_ms(),
        6,
        b"for b",
    ));

    let gossip = eventually(PATIENCE, "drops counted", || async {
        let gossip = a.cluster_view().await["gossip"].clone();
        let counted = |field: &str| gossip[field].as_u64().unwrap_or(0);
        (counted("malformed") >= 2
            && counted("other_cluster") >= 1
            && counted("auth_failures") >= 3
            && counted("undecodable") >= 1
            && counted("replayed") >= 1
            && counted("stale") >= 1
            && counted("wrong_sender") >= 1)
            .then_some(gossip)
    })
    .await;
    assert!(gossip["dropped"].as_u64().unwrap() >= 10, "{gossip}");

    // The cluster is undisturbed and the intruder never appears.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let members = view(a).await;
    assert!(all_alive(&members, &["node-a", "node-b"]), "{members:?}");
    assert!(view(b).await.iter().all(|m| m.0 != "intruder"));
    let intruder_view: Value = intruder.cluster_view().await;
    assert_eq!(
        intruder_view["members"].as_array().unwrap().len(),
        1,
        "{intruder_view}"
    );
}

#[tokio::test]
async fn a_node_without_a_cluster_section_runs_alone() {
    let config = cluster_config("x", 1, &[], SECRET, None);
    let alone = config.split("[cluster]").next().unwrap();
    let node = Node::start(alone).await;
    let cluster = node.cluster_view().await;
    assert_eq!(cluster["clustered"], false);
    assert_eq!(
        node.chat_json(&chorus_tests::chat_body("fast", false))
            .await["model"],
        "fast"
    );
}

/// `deployment`'s cluster-wide figures as `node` sees them.
async fn cluster_figures(node: &Node, deployment: &str) -> Option<Value> {
    let cluster = node.cluster_view().await;
    let entry = cluster["deployments"]
        .as_array()?
        .iter()
        .find(|d| d["name"] == deployment)?
        .clone();
    Some(entry["cluster"].clone()).filter(|figures| !figures.is_null())
}

async fn wait_for_figures(
    node: &Node,
    deployment: &str,
    what: &str,
    check: impl Fn(&Value) -> bool,
) -> Value {
    eventually(PATIENCE, what, || async {
        cluster_figures(node, deployment)
            .await
            .filter(|figures| check(figures))
    })
    .await
}

#[tokio::test]
async fn every_node_sees_the_cluster_wide_deployment_figures() {
    let (nodes, _) = start_cluster(&["node-a", "node-b"], SECRET).await;
    let (a, b) = (&nodes[0], &nodes[1]);

    // Load on one node is visible on the other.
    let mut stream = a.chat(&chat_body("slow", true)).send().await.unwrap();
    stream.chunk().await.unwrap();
    let busy = wait_for_figures(b, "paced/mock", "in-flight seen from node-b", |f| {
        f["in_flight"] == 1
    })
    .await;
    assert_eq!(busy["nodes"], 2, "{busy}");
    drop(stream);
    wait_for_figures(b, "paced/mock", "in-flight back to zero", |f| {
        f["in_flight"] == 0
    })
    .await;

    // Finished calls add up across nodes.
    for _ in 0..3 {
        a.chat_json(&chat_body("fast", false)).await;
    }
    for _ in 0..2 {
        b.chat_json(&chat_body("fast", false)).await;
    }
    for node in [&a, &b] {
        let figures = wait_for_figures(node, "builtin/mock", "five finished", |f| {
            f["finished"] == 5
        })
        .await;
        assert!(figures["latency_ms"].as_f64().is_some(), "{figures}");
        assert_eq!(figures["health"], "healthy");
    }

    // A deployment failing on one node is failing in everyone's view, with
    // every attempt counted (retries included, until its breaker opened).
    let mut attempts = 0;
    for _ in 0..3 {
        let response = a.chat(&chat_body("dead", false)).send().await.unwrap();
        attempts += response.headers()["x-chorus-attempts"]
            .to_str()
            .unwrap()
            .parse::<u64>()
            .unwrap();
    }
    let failing = wait_for_figures(b, "nowhere/m", "failing seen from node-b", |f| {
        f["health"] == "failing" && f["errors"] == attempts
    })
    .await;
    assert!(attempts >= 5, "{failing}");
}
