//! No count is lost: counter totals survive a node killed with SIGKILL, a
//! restarted node goes on from its stored contributions, rolling kills of
//! every node lose nothing, and a node that joins later — even while one
//! node is down — sees the same totals.

use std::time::Duration;

use chorus_tests::{chat_body, cluster_config, eventually, free_udp_port, scratch_dir, Node};

const SECRET: &str = "durability-test-secret-0123456789";
const CALLS: &str = "calls/builtin/mock";
const PATIENCE: Duration = Duration::from_secs(30);

async fn total(node: &Node) -> u64 {
    node.get_v1("/v1/cluster").await["counters"][CALLS]
        .as_u64()
        .unwrap_or(0)
}

async fn wait_for_total(node: &Node, expected: u64) {
    eventually(
        PATIENCE,
        &format!("{CALLS} = {expected} on {}", node.address),
        || async { (total(node).await == expected).then_some(()) },
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

#[tokio::test]
async fn counts_survive_kills_and_restarts_and_reach_a_late_joiner() {
    let data = scratch_dir();
    let ports = [
        free_udp_port(),
        free_udp_port(),
        free_udp_port(),
        free_udp_port(),
    ];
    let configs = [
        cluster_config(
            "node-a",
            ports[0],
            &[ports[1], ports[2]],
            SECRET,
            Some(&data),
        ),
        cluster_config(
            "node-b",
            ports[1],
            &[ports[0], ports[2]],
            SECRET,
            Some(&data),
        ),
        cluster_config(
            "node-c",
            ports[2],
            &[ports[0], ports[1]],
            SECRET,
            Some(&data),
        ),
    ];
    let mut nodes = vec![
        Node::start(&configs[0]).await,
        Node::start(&configs[1]).await,
        Node::start(&configs[2]).await,
    ];
    for node in &nodes {
        send(node, 4).await;
    }
    for node in &nodes {
        wait_for_total(node, 12).await;
    }

    // SIGKILL one node: the survivors keep its count.
    nodes[2].kill();
    tokio::time::sleep(Duration::from_secs(1)).await;
    for node in &nodes[..2] {
        assert_eq!(
            total(node).await,
            12,
            "a survivor lost the dead node's count"
        );
    }

    // Restarted, it goes on from its stored contribution.
    nodes[2] = Node::start(&configs[2]).await;
    wait_for_total(&nodes[2], 12).await;
    send(&nodes[2], 2).await;
    for node in &nodes {
        wait_for_total(node, 14).await;
    }

    // Kill and restart every node, one after another.
    for index in 0..3 {
        nodes[index].kill();
        nodes[index] = Node::start(&configs[index]).await;
        for node in &nodes {
            wait_for_total(node, 14).await;
        }
    }

    // With one node down, a fresh node still learns every count.
    nodes[1].kill();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let late = Node::start(&cluster_config(
        "node-d",
        ports[3],
        &[ports[0]],
        SECRET,
        Some(&data),
    ))
    .await;
    wait_for_total(&late, 14).await;
    let cluster = late.get_v1("/v1/cluster").await;
    let members = cluster["members"].as_array().unwrap();
    assert!(
        members
            .iter()
            .any(|m| m["node_id"] == "node-b" && m["alive"] == false),
        "{cluster}"
    );
}

#[tokio::test]
async fn a_standalone_node_with_storage_keeps_its_counts_across_restarts() {
    let data = scratch_dir();
    let config = cluster_config("solo", free_udp_port(), &[], SECRET, Some(&data));
    let config = config.split("[cluster]").next().unwrap().to_owned();
    let mut node = Node::start(&config).await;
    send(&node, 3).await;
    let standalone = "calls/builtin/mock";
    eventually(PATIENCE, "three calls counted", || async {
        (node.get_v1("/v1/cluster").await["counters"][standalone] == 3).then_some(())
    })
    .await;
    // Give the ledger one flush interval, then kill without warning.
    tokio::time::sleep(Duration::from_millis(300)).await;
    node.kill();
    let node = Node::start(&config).await;
    assert_eq!(node.get_v1("/v1/cluster").await["counters"][standalone], 3);
}
