//! No count is lost, none is counted twice, and the state that carries
//! them stays bounded: totals survive SIGKILL and SIGTERM (exactly, under
//! load), restarts go on from the store, a node that joins after a dead
//! node is forgotten still learns its counts, and restarting one node fifty
//! times leaves the gossip state the size it was.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use chorus_tests::{
    chat_body, cluster_config, cluster_configs, eventually, free_udp_port, scratch_dir, Node,
};
use serde_json::Value;

const SECRET: &str = "durability-test-secret-0123456789";
const DEPLOYMENT: &str = "builtin/mock";
const PATIENCE: Duration = Duration::from_secs(30);
/// A short dead-node grace, so forgetting a dead node happens within a test.
const SHORT_GRACE: &str = "dead_node_grace_ms = 2000\n";

async fn calls(node: &Node) -> u64 {
    node.counter(DEPLOYMENT, "calls").await
}

async fn wait_for_calls(node: &Node, expected: u64) {
    eventually(
        PATIENCE,
        &format!("{DEPLOYMENT} calls = {expected} on {}", node.address),
        || async { (calls(node).await == expected).then_some(()) },
    )
    .await;
}

async fn send(node: &Node, requests: usize) {
    for _ in 0..requests {
        assert_eq!(
            node.chat_json(&chat_body("fast", false)).await["model"],
            "fast"
        );
    }
}

/// Nodes that store their counts, and what it takes to restart them.
struct StoredCluster {
    nodes: Vec<Node>,
    configs: Vec<String>,
    gossip_ports: Vec<u16>,
    /// Dropped after the nodes: their stores go with it.
    data: chorus_tests::ScratchDir,
}

/// A cluster of `ids`, each node storing under a fresh directory, with
/// `extra` in its `[cluster]` section, every node seeing every other alive.
async fn start_stored_cluster(ids: &[&str], extra: &str) -> StoredCluster {
    let data = scratch_dir();
    let (configs, gossip_ports) = cluster_configs(ids, SECRET, &data, extra);
    let mut nodes = Vec::new();
    for config in &configs {
        nodes.push(Node::start(config).await);
    }
    for node in &nodes {
        node.wait_for_live_members(ids.len()).await;
    }
    StoredCluster {
        nodes,
        configs,
        gossip_ports,
        data,
    }
}

#[tokio::test]
async fn counts_survive_kills_and_restarts_and_reach_a_late_joiner() {
    let StoredCluster {
        mut nodes,
        configs,
        gossip_ports,
        data,
    } = start_stored_cluster(&["node-a", "node-b", "node-c"], "").await;
    for node in &nodes {
        send(node, 4).await;
    }
    for node in &nodes {
        wait_for_calls(node, 12).await;
    }

    // SIGKILL one node: the survivors keep its count.
    nodes[2].kill();
    tokio::time::sleep(Duration::from_secs(1)).await;
    for node in &nodes[..2] {
        assert_eq!(
            calls(node).await,
            12,
            "a survivor lost the dead node's count"
        );
    }

    // Restarted, it goes on from its stored tallies.
    nodes[2] = Node::start(&configs[2]).await;
    wait_for_calls(&nodes[2], 12).await;
    send(&nodes[2], 2).await;
    for node in &nodes {
        wait_for_calls(node, 14).await;
    }

    // Kill and restart every node, one after another.
    for index in 0..3 {
        nodes[index].kill();
        nodes[index] = Node::start(&configs[index]).await;
        for node in &nodes {
            wait_for_calls(node, 14).await;
        }
    }

    // With one node down, a fresh node still learns every count.
    nodes[1].kill();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let late = Node::start(&cluster_config(
        "node-d",
        free_udp_port(),
        &[gossip_ports[0]],
        SECRET,
        Some(&data),
    ))
    .await;
    wait_for_calls(&late, 14).await;
}

#[tokio::test]
async fn a_standalone_node_with_storage_keeps_its_counts_across_restarts() {
    let data = scratch_dir();
    let config = cluster_config("solo", free_udp_port(), &[], SECRET, Some(&data));
    let config = config.split("[cluster]").next().unwrap().to_owned();
    let mut node = Node::start(&config).await;
    send(&node, 3).await;
    wait_for_calls(&node, 3).await;
    // Give the ledger one flush interval, then kill without warning.
    tokio::time::sleep(Duration::from_millis(300)).await;
    node.kill();
    let node = Node::start(&config).await;
    assert_eq!(calls(&node).await, 3);
}

/// Streams a chat completion on `model` until `needle` has arrived, and
/// stops reading there, the way a client that has what it wanted does.
async fn read_until(node: &Node, model: &str, needle: &str) -> String {
    let mut response = node.chat(&chat_body(model, true)).send().await.unwrap();
    let mut body = String::new();
    while !body.contains(needle) {
        let chunk = response.chunk().await.unwrap();
        let chunk = chunk.unwrap_or_else(|| panic!("the stream ended without {needle}: {body}"));
        body.push_str(&String::from_utf8_lossy(&chunk));
    }
    body
}

/// The answer reaches the client only once its call is counted on disk:
/// a node SIGKILLed the moment the client has read its answer, whole or
/// streamed, still counts the call when it comes back.
#[tokio::test]
async fn a_call_answered_just_before_a_sigkill_is_counted_after_the_restart() {
    let data = scratch_dir();
    let config = cluster_config("solo", free_udp_port(), &[], SECRET, Some(&data));
    let config = config.split("[cluster]").next().unwrap().to_owned();
    let mut node = Node::start(&config).await;
    let mut tokens = 0;
    for answered in 1..=6 {
        let stream = answered % 2 == 0;
        if stream {
            // As SDKs do: done at `[DONE]`, whatever follows it.
            read_until(&node, "fast", "data: [DONE]").await;
        } else {
            assert_eq!(
                node.chat_json(&chat_body("fast", false)).await["model"],
                "fast"
            );
        }
        node.kill();
        node = Node::start(&config).await;
        assert_eq!(
            calls(&node).await,
            answered,
            "call {answered}, stream: {stream}"
        );
        let now = node.counter(DEPLOYMENT, "completion_tokens").await;
        assert!(
            now > tokens,
            "call {answered}'s tokens: {now} after {tokens}"
        );
        tokens = now;
    }
}

/// A stream that breaks after content ends with an `error` event, which
/// also leaves only once the call (an error, with its tokens) is on disk.
#[tokio::test]
async fn a_stream_broken_just_before_a_sigkill_is_counted_after_the_restart() {
    let upstream = chorus_tests::MockUpstream::start(&[]);
    let data = scratch_dir();
    let config = format!(
        "{}\n[storage]\npath = \"{}\"\n",
        chorus_tests::standard_config(&upstream),
        data.join("broken").display()
    );
    let deployment = "fault-cut/gpt-4o-mini";
    let mut node = Node::start(&config).await;
    for broken in 1..=3 {
        let body = read_until(&node, "fault-cut", "upstream_broken").await;
        node.kill();
        node = Node::start(&config).await;
        assert_eq!(node.counter(deployment, "errors").await, broken, "{body}");
    }
}

/// Sends requests to `node` one after another until told to stop,
/// counting those answered with 200.
fn steady_load(
    node: &Node,
    stop: Arc<AtomicU64>,
    answered: Arc<AtomicU64>,
) -> tokio::task::JoinHandle<()> {
    let url = node.url("/v1/chat/completions");
    tokio::spawn(async move {
        let client = reqwest::Client::new();
        while stop.load(Ordering::Relaxed) == 0 {
            let response = client
                .post(&url)
                .bearer_auth(chorus_tests::TEST_KEY)
                .json(&chat_body("fast", false))
                .send()
                .await;
            match response {
                Ok(response) if response.status() == 200 => {
                    if response.bytes().await.is_ok() {
                        answered.fetch_add(1, Ordering::Relaxed);
                    }
                }
                // The node is shutting down or gone: try again shortly.
                _ => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        }
    })
}

#[tokio::test]
async fn sigterm_under_load_loses_no_count_and_counts_none_twice() {
    let StoredCluster {
        mut nodes, configs, ..
    } = start_stored_cluster(&["term-a", "term-b", "term-c"], "").await;
    let answered = Arc::new(AtomicU64::new(0));
    let stop_all = Arc::new(AtomicU64::new(0));
    let stop_c = Arc::new(AtomicU64::new(0));
    let mut load = vec![
        steady_load(&nodes[0], stop_all.clone(), answered.clone()),
        steady_load(&nodes[1], stop_all.clone(), answered.clone()),
    ];
    let load_c = steady_load(&nodes[2], stop_c.clone(), answered.clone());
    tokio::time::sleep(Duration::from_secs(2)).await;

    let status = nodes[2].terminate();
    assert!(status.success(), "a SIGTERMed node exits cleanly: {status}");
    stop_c.store(1, Ordering::Relaxed);
    load_c.await.unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    nodes[2] = Node::start(&configs[2]).await;
    load.push(steady_load(&nodes[2], stop_all.clone(), answered.clone()));
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop_all.store(1, Ordering::Relaxed);
    for task in load {
        task.await.unwrap();
    }

    let answered = answered.load(Ordering::Relaxed);
    assert!(
        answered > 100,
        "too little load to mean anything: {answered}"
    );
    for node in &nodes {
        wait_for_calls(node, answered).await;
    }
    // And it stays there: nothing arrives late to count twice.
    tokio::time::sleep(Duration::from_secs(1)).await;
    for node in &nodes {
        assert_eq!(calls(node).await, answered);
    }
}

#[tokio::test]
async fn a_node_joining_after_a_dead_node_is_forgotten_still_learns_its_counts() {
    let StoredCluster {
        mut nodes,
        configs,
        gossip_ports,
        ..
    } = start_stored_cluster(&["rep-a", "rep-b", "rep-c"], SHORT_GRACE).await;
    send(&nodes[2], 5).await;
    for node in &nodes {
        wait_for_calls(node, 5).await;
    }
    nodes[2].kill();
    // Gossip stops sharing the dead node's state half a grace after it is
    // seen dead, and forgets it entirely after a whole grace.
    eventually(PATIENCE, "rep-c forgotten by gossip", || async {
        let members = nodes[0].cluster_view().await["members"].clone();
        let known = members.as_array()?.iter().any(|m| m["node_id"] == "rep-c");
        (!known).then_some(())
    })
    .await;
    let republishers: Vec<u64> = {
        let mut figures = Vec::new();
        for node in &nodes[..2] {
            figures.push(
                node.cluster_view().await["gossip"]["republished"]
                    .as_u64()
                    .unwrap_or(0),
            );
        }
        figures
    };
    assert_eq!(
        republishers.iter().filter(|count| **count > 0).count(),
        1,
        "exactly one survivor republishes the dead node's tallies: {republishers:?}"
    );

    let fresh = scratch_dir();
    let late = Node::start(
        &(cluster_config(
            "rep-d",
            free_udp_port(),
            &[gossip_ports[1]],
            SECRET,
            Some(&fresh),
        ) + SHORT_GRACE),
    )
    .await;
    wait_for_calls(&late, 5).await;

    // The dead node comes back and counts on: its run folds the old one
    // in, and the copies are no longer needed.
    nodes[2] = Node::start(&configs[2]).await;
    send(&nodes[2], 1).await;
    for node in nodes.iter().chain([&late]) {
        wait_for_calls(node, 6).await;
    }
    for node in &nodes[..2] {
        eventually(PATIENCE, "no copies left", || async {
            let republished = node.cluster_view().await["gossip"]["republished"].as_u64();
            (republished == Some(0)).then_some(())
        })
        .await;
    }
}

/// (keys, bytes, runs) of the gossip state `node` holds, once it has
/// settled: only `runs` runs left and nothing republished. The size is
/// recounted once a second, so each look waits for a fresh count.
async fn settled_state(node: &Node, runs: u64) -> (u64, u64, u64) {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        tokio::time::sleep(Duration::from_millis(1_100)).await;
        let gossip: Value = node.cluster_view().await["gossip"].clone();
        let figure = |name: &str| gossip[name].as_u64().unwrap_or(0);
        if figure("runs") == runs && figure("republished") == 0 {
            return (figure("state_keys"), figure("state_bytes"), figure("runs"));
        }
        assert!(
            std::time::Instant::now() < deadline,
            "gossip state never settled: {gossip}"
        );
    }
}

/// SIGKILLs the third node once a peer has every call so far (a SIGKILL
/// may lose only what was neither gossiped nor flushed), restarts it, and
/// has the new run count one call.
async fn restart_and_count(nodes: &mut [Node], config: &str, expected: &mut u64) {
    wait_for_calls(&nodes[0], *expected).await;
    nodes[2].kill();
    nodes[2] = Node::start(config).await;
    send(&nodes[2], 1).await;
    *expected += 1;
}

#[tokio::test]
async fn fifty_restarts_leave_the_gossip_state_the_size_it_was() {
    let StoredCluster {
        mut nodes, configs, ..
    } = start_stored_cluster(&["size-a", "size-b", "size-c"], SHORT_GRACE).await;
    for node in &nodes {
        send(node, 2).await;
    }
    let mut expected = 6;
    restart_and_count(&mut nodes, &configs[2], &mut expected).await;
    wait_for_calls(&nodes[0], expected).await;
    let after_one = settled_state(&nodes[0], 3).await;

    for _ in 1..50 {
        restart_and_count(&mut nodes, &configs[2], &mut expected).await;
    }
    for node in &nodes {
        wait_for_calls(node, expected).await;
    }
    let after_fifty = settled_state(&nodes[0], 3).await;
    println!("gossip state (keys, bytes, runs) after 1 restart: {after_one:?}; after 50: {after_fifty:?}");
    let within_ten_percent = |one: u64, fifty: u64| fifty * 10 <= one * 11 && fifty * 10 >= one * 9;
    // Each node's calls per minute is counted in 2 s slices, and the calls
    // of fifty restarts fall in more of them than those of one: up to 30
    // more `,1` in each of three nodes' entries. A run left behind by each
    // restart would add far more than that.
    let slices_more = 3 * 30 * 2;
    assert!(
        within_ten_percent(after_one.0, after_fifty.0)
            && after_fifty.1 * 10 <= (after_one.1 + slices_more) * 11,
        "after 1 restart {after_one:?}, after 50 {after_fifty:?}"
    );
    // Fifty runs of one node, and every call counted exactly once.
    assert_eq!(calls(&nodes[1]).await, expected);
}
