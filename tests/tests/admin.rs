//! Virtual keys and teams across real nodes: a change made on one node
//! holds on every other within a second, a node that was down catches up
//! when it returns, and the CLI drives it all from the command line.

use std::process::{Command, Output};
use std::time::{Duration, Instant};

use chorus_tests::{
    binary, cluster_config, free_udp_port, scratch_dir, start_cluster, Node, ADMIN_TOKEN,
};
use reqwest::Method;
use serde_json::json;

const SECRET: &str = "admin-test-secret-0123456789";

/// Polls until `node` answers `status` to a chat with `key`; how long it took.
async fn until_status(node: &Node, key: &str, status: u16, within: Duration) -> Duration {
    let start = Instant::now();
    loop {
        if node.chat_status_with(key, "fast").await == status {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < within,
            "{} did not answer {status} within {within:?}",
            node.address
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn a_key_made_on_one_node_works_on_another_and_a_revocation_comes_back() {
    let (nodes, _) = start_cluster(&["adm-a", "adm-b", "adm-c"], SECRET).await;
    let key = nodes[0].create_key(json!({"name": "shared"})).await;
    for node in &nodes[1..] {
        until_status(node, &key, 200, Duration::from_secs(1)).await;
    }
    let (status, _) = nodes[1]
        .admin(Method::POST, "/admin/keys/shared/revoke", None)
        .await;
    assert_eq!(status, 200);
    for node in [&nodes[0], &nodes[2]] {
        until_status(node, &key, 401, Duration::from_secs(1)).await;
    }
    let (_, listed) = nodes[2].admin(Method::GET, "/admin/keys", None).await;
    assert_eq!(listed["data"][0]["revoked"], true, "{listed}");
}

#[tokio::test]
async fn a_node_that_was_down_catches_up_when_it_returns() {
    let data = scratch_dir();
    let ports: Vec<u16> = (0..3).map(|_| free_udp_port()).collect();
    let config = |index: usize, port: u16| {
        let seed = if index == 0 { ports[1] } else { ports[0] };
        let id = format!("catch-{index}");
        cluster_config(&id, port, &[seed], SECRET, Some(&data))
    };
    let mut nodes = Vec::new();
    for (index, port) in ports.iter().enumerate() {
        nodes.push(Node::start(&config(index, *port)).await);
    }
    for node in &nodes {
        node.wait_for_live_members(3).await;
    }
    let old = nodes[0].create_key(json!({"name": "old"})).await;
    let doomed = nodes[0].create_key(json!({"name": "doomed"})).await;
    until_status(&nodes[2], &old, 200, Duration::from_secs(5)).await;
    until_status(&nodes[2], &doomed, 200, Duration::from_secs(5)).await;

    nodes[2].kill();
    let new = nodes[0].create_key(json!({"name": "new"})).await;
    nodes[1]
        .admin(Method::POST, "/admin/keys/old/revoke", None)
        .await;
    nodes[1]
        .admin(Method::DELETE, "/admin/keys/doomed", None)
        .await;
    let (status, team) = nodes[1]
        .admin(Method::POST, "/admin/teams", Some(json!({"name": "later"})))
        .await;
    assert_eq!(status, 201, "{team}");

    // Back with the store it had (on a new gossip port: a parallel test
    // may have taken the old one): it must learn every change.
    nodes[2] = Node::start(&config(2, free_udp_port())).await;
    until_status(&nodes[2], &new, 200, Duration::from_secs(10)).await;
    until_status(&nodes[2], &old, 401, Duration::from_secs(10)).await;
    until_status(&nodes[2], &doomed, 401, Duration::from_secs(10)).await;
    let (status, _) = nodes[2]
        .admin(Method::GET, "/admin/teams/later", None)
        .await;
    assert_eq!(status, 200);
}

fn chorus_cli(node: &Node, args: &[&str], token: &str) -> Output {
    Command::new(binary("chorus"))
        .args(args)
        .args(["--url", &node.url("")])
        .env("CHORUS_ADMIN_TOKEN", token)
        .output()
        .expect("run the chorus CLI")
}

fn stdout(output: &Output) -> String {
    assert!(
        output.status.success(),
        "the CLI failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[tokio::test]
async fn the_cli_creates_lists_limits_and_revokes_keys() {
    let (nodes, _) = start_cluster(&["cli-a", "cli-b"], SECRET).await;
    let node = &nodes[0];
    let created = stdout(&chorus_cli(
        node,
        &[
            "team", "create", "--name", "research", "--rpm", "100", "--models", "fast",
        ],
        ADMIN_TOKEN,
    ));
    assert!(created.contains("research"), "{created}");

    let created = stdout(&chorus_cli(
        node,
        &[
            "key", "create", "--name", "ci", "--team", "research", "--rpm", "50",
        ],
        ADMIN_TOKEN,
    ));
    let key = created
        .lines()
        .find_map(|line| line.strip_prefix("key: "))
        .unwrap_or_else(|| panic!("no key printed: {created}"))
        .to_owned();
    // Made on one node, it works on the other within a second.
    until_status(&nodes[1], &key, 200, Duration::from_secs(1)).await;

    let refused = chorus_cli(
        node,
        &[
            "key", "create", "--name", "wide", "--team", "research", "--rpm", "500",
        ],
        ADMIN_TOKEN,
    );
    assert!(!refused.status.success());
    let message = String::from_utf8_lossy(&refused.stderr);
    assert!(
        message.contains("`rpm`") && message.contains("research") && message.contains("HTTP 400"),
        "{message}"
    );

    let listed = stdout(&chorus_cli(node, &["key", "list"], ADMIN_TOKEN));
    let header = listed.lines().next().unwrap_or_default();
    let row = listed
        .lines()
        .find(|line| line.contains(" ci "))
        .unwrap_or_else(|| panic!("{listed}"));
    assert!(
        header.contains("NAME") && header.contains("RPM"),
        "{listed}"
    );
    // The rpm cell (a random id may hold "50" too).
    assert_eq!(
        header.find("RPM"),
        row.find(" 50 ").map(|at| at + 1),
        "columns line up:\n{listed}"
    );
    assert!(row.contains("research"), "{row}");

    let info: serde_json::Value = serde_json::from_str(&stdout(&chorus_cli(
        node,
        &["key", "info", "ci", "--json"],
        ADMIN_TOKEN,
    )))
    .expect("JSON");
    assert_eq!(info["rpm"], 50);
    assert!(
        !info.to_string().contains(&key),
        "the key is never shown again"
    );

    stdout(&chorus_cli(
        node,
        &["key", "update", "ci", "--rpm", "none"],
        ADMIN_TOKEN,
    ));
    let (_, shown) = node.admin(Method::GET, "/admin/keys/ci", None).await;
    assert_eq!(shown["rpm"], serde_json::Value::Null);

    stdout(&chorus_cli(node, &["key", "revoke", "ci"], ADMIN_TOKEN));
    until_status(&nodes[1], &key, 401, Duration::from_secs(1)).await;

    let wrong = chorus_cli(node, &["key", "list"], "not-the-token");
    assert!(!wrong.status.success());
    assert!(String::from_utf8_lossy(&wrong.stderr).contains("invalid admin token"));
    let missing = chorus_cli(node, &["key", "info", "nobody"], ADMIN_TOKEN);
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("HTTP 404"));
}
