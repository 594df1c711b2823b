//! The request log and `/v1/stats` across a 3-node cluster: every request
//! sent to any node is in the log any node shows, filtered and paged;
//! the stats any node gives add up to the requests sent, by key, team and
//! model; `chorus stats` prints them; a node that is gone is named as
//! missing.

use std::process::Command;
use std::time::Duration;

use chorus_tests::{
    binary, cluster_config, eventually, free_udp_port, mock_config, scratch_dir, Node, ADMIN_TOKEN,
    TEST_KEY,
};
use reqwest::Method;
use serde_json::{json, Value};

const SECRET: &str = "request-log-test-secret-0123";

async fn start_three(data: &std::path::Path) -> Vec<Node> {
    let ids = ["a", "b", "c"];
    let ports: Vec<u16> = ids.iter().map(|_| free_udp_port()).collect();
    let mut nodes = Vec::new();
    for (index, id) in ids.iter().enumerate() {
        let seed = if index == 0 { ports[1] } else { ports[0] };
        let config = cluster_config(id, ports[index], &[seed], SECRET, Some(data));
        nodes.push(Node::start(&config).await);
    }
    for node in &nodes {
        node.wait_for_live_members(ids.len()).await;
    }
    nodes
}

/// Sends a chat request; its status and usage.
async fn chat(node: &Node, key: &str, body: Value) -> (u16, Value) {
    let response = reqwest::Client::new()
        .post(node.url("/v1/chat/completions"))
        .bearer_auth(key)
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let answer: Value = response.json().await.unwrap_or_default();
    (status, answer["usage"].clone())
}

fn body(model: &str, extra: Value) -> Value {
    let mut body = json!({"model": model, "messages": [{"role": "user", "content": "log me"}]});
    if let (Some(body), Some(extra)) = (body.as_object_mut(), extra.as_object()) {
        body.extend(extra.clone());
    }
    body
}

async fn get(node: &Node, path: &str) -> Value {
    let (status, answer) = node.admin(Method::GET, path, None).await;
    assert_eq!(status, 200, "{path}: {answer}");
    answer
}

/// Every record of the cluster, page by page.
async fn all_records(node: &Node, query: &str) -> Vec<Value> {
    let mut records = Vec::new();
    let mut before = String::new();
    loop {
        let page = get(node, &format!("/admin/requests?limit=3&{query}{before}")).await;
        records.extend(page["data"].as_array().unwrap().iter().cloned());
        match page["next_before"].as_str() {
            Some(cursor) => before = format!("&before={cursor}"),
            None => return records,
        }
    }
}

#[tokio::test]
async fn the_log_and_stats_of_three_nodes_add_up_to_the_requests_sent() {
    let data = scratch_dir();
    let mut nodes = start_three(&data).await;
    let (status, team) = nodes[0]
        .admin(
            Method::POST,
            "/admin/teams",
            Some(json!({"name": "research"})),
        )
        .await;
    assert_eq!(status, 201, "{team}");
    let team_id = team["id"].as_str().unwrap().to_owned();
    let key = nodes[0]
        .create_key(json!({"name": "analyst", "team": "research"}))
        .await;
    let (_, keys) = nodes[0]
        .admin(Method::GET, "/admin/keys/analyst", None)
        .await;
    let key_id = keys["id"].as_str().unwrap().to_owned();
    // The key is usable everywhere once gossiped.
    eventually(Duration::from_secs(10), "the key on every node", || async {
        let mut everywhere = true;
        for node in &nodes {
            everywhere &= node.chat_status_with(&key, "fast").await == 200;
        }
        everywhere.then_some(())
    })
    .await;

    // 3 on a with the bootstrap key (one of them then a cache hit), 2 on b
    // and 2 on c with the team's key, one of which asks for no such model.
    let sent = [
        chat(&nodes[0], TEST_KEY, body("fast", json!({}))).await,
        chat(&nodes[0], TEST_KEY, body("fast", json!({"temperature": 0}))).await,
        chat(&nodes[0], TEST_KEY, body("fast", json!({"temperature": 0}))).await,
        chat(&nodes[1], &key, body("fast", json!({"max_tokens": 3}))).await,
        chat(&nodes[1], &key, body("fast", json!({}))).await,
        chat(&nodes[2], &key, body("fast", json!({}))).await,
        chat(&nodes[2], &key, body("no-such-model", json!({}))).await,
    ];
    let statuses: Vec<u16> = sent.iter().map(|(status, _)| *status).collect();
    assert_eq!(statuses, [200, 200, 200, 200, 200, 200, 404]);
    // The checks of the key's spread above were requests too: 3, all
    // with the team's key, one on each node.
    let probes = 3;
    let total = sent.len() as u64 + probes;
    // The bootstrap key's calls (the hit made none), by the answers' usage.
    let bootstrap_usage = |field: &str| {
        sent[..2]
            .iter()
            .map(|(_, usage)| usage[field].as_u64().unwrap())
            .sum::<u64>()
    };

    let stats = eventually(
        Duration::from_secs(10),
        "every request in the stats",
        || async {
            let stats = get(&nodes[1], "/v1/stats").await;
            (stats["totals"]["requests"] == total).then_some(stats)
        },
    )
    .await;
    let totals = &stats["totals"];
    assert_eq!(totals["errors"], 1, "{stats}");
    assert_eq!(totals["cache_hits"], 1, "{stats}");
    let by = |list: &str, field: &str, name: &str| {
        stats[list]
            .as_array()
            .unwrap()
            .iter()
            .find(|row| row[field] == name)
            .cloned()
            .unwrap_or_else(|| panic!("no {field} {name} in {stats}"))
    };
    assert_eq!(by("by_model", "model", "fast")["requests"], total - 1);
    let models = stats["by_model"].as_array().unwrap().len();
    assert_eq!(models, 1, "a model that does not exist has no row: {stats}");
    assert_eq!(by("by_key", "key", "test")["requests"], 3);
    assert_eq!(by("by_key", "key", "test")["cache_hits"], 1);
    assert_eq!(by("by_key", "key", &key_id)["name"], "analyst");
    assert_eq!(by("by_key", "key", &key_id)["requests"], 4 + probes);
    assert_eq!(by("by_team", "team", &team_id)["requests"], 4 + probes);
    let nodes_answered = stats["nodes"]["answered"].as_array().unwrap().len();
    assert_eq!(nodes_answered, 3, "{stats}");
    // Tokens as the answers reported them; a hit counts none.
    let bootstrap = by("by_key", "key", "test");
    for field in ["prompt_tokens", "completion_tokens"] {
        assert_eq!(bootstrap[field], bootstrap_usage(field), "{field}: {stats}");
    }

    // The log itself: every request once, newest first, in pages.
    let records = all_records(&nodes[2], "").await;
    assert_eq!(records.len() as u64, total);
    let times: Vec<u64> = records
        .iter()
        .map(|r| r["time_ms"].as_u64().unwrap())
        .collect();
    assert!(times.windows(2).all(|pair| pair[0] >= pair[1]), "{times:?}");
    let mut ids: Vec<&str> = records.iter().map(|r| r["id"].as_str().unwrap()).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len() as u64, total, "no record twice");
    let node_of: Vec<&str> = records
        .iter()
        .map(|r| r["node"].as_str().unwrap())
        .collect();
    for node in ["a", "b", "c"] {
        assert!(node_of.contains(&node), "{node} is in the log");
    }
    for record in &records {
        let text = record.to_string();
        assert!(
            !text.contains(TEST_KEY) && !text.contains(&key),
            "no key in the log"
        );
        assert!(!text.contains("log me"), "no prompt in the log");
    }

    let refused = all_records(&nodes[0], "status=4xx").await;
    assert_eq!(refused.len(), 1);
    assert_eq!(refused[0]["code"], "model_not_found");
    assert_eq!(refused[0]["key"], key_id.as_str());
    let hits = all_records(&nodes[0], "key=test&alias=fast").await;
    assert_eq!(hits.len(), 3);
    let hit = hits.iter().find(|record| record["cache"] == "hit").unwrap();
    assert_eq!(hit["outcome"], "cached");
    assert_eq!(hit["cost_micros"], 0);
    let of_team = all_records(&nodes[1], &format!("team={team_id}")).await;
    assert_eq!(of_team.len() as u64, 4 + probes);
    let (status, error) = nodes[0]
        .admin(Method::GET, "/admin/requests?status=bad", None)
        .await;
    assert_eq!(status, 400, "{error}");
    assert_eq!(error["error"]["param"], "status");

    // The command line prints the same.
    let output = Command::new(binary("chorus"))
        .args(["stats", "--url", &nodes[0].url(""), "--token", ADMIN_TOKEN])
        .output()
        .unwrap();
    let printed = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{printed}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(printed.contains("nodes answered: a, b, c"), "{printed}");
    for needle in ["MODEL", "fast", "analyst", &team_id, &key_id] {
        assert!(printed.contains(needle), "no {needle} in\n{printed}");
    }

    // A node that is gone is named, and its records are missing.
    nodes[2].kill();
    let stats = get(&nodes[0], "/v1/stats").await;
    assert_eq!(stats["nodes"]["missing"], json!(["c"]), "{stats}");
    assert!(stats["totals"]["requests"].as_u64().unwrap() < total);
}

#[tokio::test]
async fn records_survive_the_node_stopping_and_starting_again() {
    let data = scratch_dir();
    let config = mock_config() + &format!("\n[storage]\npath = \"{}\"\n", data.display());
    let mut node = Node::start(&config).await;
    for _ in 0..5 {
        assert_eq!(chat(&node, TEST_KEY, body("fast", json!({}))).await.0, 200);
    }
    assert!(node.terminate().success());
    let node = Node::start(&config).await;
    let records = all_records(&node, "").await;
    assert_eq!(records.len(), 5, "{records:?}");
}
