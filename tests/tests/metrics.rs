//! `GET /metrics` as Prometheus scrapes it: requests by alias, deployment
//! and status, tokens, cost, latency histograms, rejections, breakers,
//! cluster members, gossip traffic and gossip drops by cause, the store's
//! memory — valid for `promtool check metrics`
//! (Debian's `prometheus` package; `tests/run.sh` installs it) and with no
//! key, token or prompt in it.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use chorus_tests::{
    chat_body, eventually, mock_config, scratch_dir, standard_config, start_cluster, MockUpstream,
    Node, ADMIN_TOKEN, TEST_KEY, UPSTREAM_KEY,
};

async fn scrape(node: &Node) -> String {
    let response = reqwest::get(node.url("/metrics")).await.unwrap();
    assert_eq!(response.status(), 200);
    assert!(response.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/plain; version=0.0.4"));
    response.text().await.unwrap()
}

/// Runs `promtool check metrics` on `text`: it parses the exposition and
/// lints names, types, units and help.
fn promtool_check(text: &str) {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (Debian package `prometheus`; tests/run.sh installs it)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "promtool check metrics: {}{}\n{text}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// The value of the series `series` (name and labels, as written).
fn value(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no `{series}` in\n{text}"))
        .parse()
        .unwrap()
}

#[tokio::test]
async fn requests_rejections_and_breakers_are_exposed_and_pass_promtool() {
    let upstream = MockUpstream::start(&[]);
    let node = Node::start(&standard_config(&upstream)).await;
    for stream in [false, true] {
        let response = node.chat(&chat_body("fast", stream)).send().await.unwrap();
        assert_eq!(response.status(), 200);
        response.text().await.unwrap();
    }
    let failed = node
        .chat(&chat_body("fault-500", false))
        .send()
        .await
        .unwrap();
    assert_eq!(failed.status(), 500);
    let unknown = node.chat(&chat_body("nope", false)).send().await.unwrap();
    assert_eq!(unknown.status(), 404);
    let unauthorized = reqwest::Client::new()
        .post(node.url("/v1/chat/completions"))
        .bearer_auth("sk-wrong")
        .json(&chat_body("fast", false))
        .send()
        .await
        .unwrap();
    assert_eq!(unauthorized.status(), 401);

    let text = scrape(&node).await;
    let fast = r#"alias="fast",deployment="up/gpt-4o-mini""#;
    assert_eq!(
        value(
            &text,
            &format!(r#"chorus_requests_total{{{fast},outcome="completed",status="200"}}"#)
        ),
        2.0
    );
    assert_eq!(
        value(
            &text,
            r#"chorus_requests_total{alias="fault-500",deployment="fault-500/gpt-4o-mini",outcome="failed",status="500"}"#
        ),
        1.0
    );
    assert!(
        value(
            &text,
            &format!(r#"chorus_tokens_total{{{fast},type="completion"}}"#)
        ) > 0.0
    );
    assert!(value(&text, &format!(r#"chorus_cost_usd_total{{{fast}}}"#)) > 0.0);
    assert_eq!(
        value(
            &text,
            r#"chorus_request_duration_seconds_count{alias="fast"}"#
        ),
        2.0
    );
    assert_eq!(
        value(
            &text,
            r#"chorus_time_to_first_token_seconds_count{alias="fast"}"#
        ),
        1.0
    );
    assert_eq!(value(&text, "chorus_gateway_overhead_seconds_count"), 2.0);
    assert_eq!(
        value(&text, r#"chorus_rejections_total{code="model_not_found"}"#),
        1.0
    );
    assert_eq!(
        value(&text, r#"chorus_rejections_total{code="invalid_api_key"}"#),
        1.0
    );
    assert_eq!(
        value(
            &text,
            r#"chorus_breaker_state{deployment="up/gpt-4o-mini"}"#
        ),
        0.0
    );
    for secret in [
        TEST_KEY,
        UPSTREAM_KEY,
        ADMIN_TOKEN,
        "sk-wrong",
        "What is Chorus",
    ] {
        assert!(!text.contains(secret), "`{secret}` in the metrics");
    }
    promtool_check(&text);
}

#[tokio::test]
async fn cluster_members_and_gossip_traffic_are_exposed() {
    let (nodes, gossip_ports) =
        start_cluster(&["metrics-a", "metrics-b"], "metrics-secret-0123456789").await;
    // A datagram that is not gossip at all, on node a's gossip port.
    let stranger = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    stranger
        .send_to(b"not a sealed datagram", ("127.0.0.1", gossip_ports[0]))
        .unwrap();
    let dropped = r#"chorus_gossip_dropped_total{cause="malformed"}"#;
    let text = eventually(Duration::from_secs(5), "the drop counted", || async {
        let text = scrape(&nodes[0]).await;
        (value(&text, dropped) == 1.0).then_some(text)
    })
    .await;
    for cause in ["auth_failure", "replayed", "stale", "wrong_sender"] {
        let series = format!(r#"chorus_gossip_dropped_total{{cause="{cause}"}}"#);
        assert_eq!(value(&text, &series), 0.0, "{cause}");
    }
    assert_eq!(
        value(&text, r#"chorus_cluster_members{state="alive"}"#),
        2.0
    );
    assert_eq!(value(&text, r#"chorus_cluster_members{state="dead"}"#), 0.0);
    assert!(
        value(
            &text,
            r#"chorus_gossip_packets_total{direction="received"}"#
        ) > 0.0
    );
    assert!(value(&text, r#"chorus_gossip_bytes_total{direction="sent"}"#) > 0.0);
    assert_eq!(value(&text, "chorus_gossip_auth_failures_total"), 0.0);
    promtool_check(&text);
}

/// A node with a store shows what the store holds in memory, part by part,
/// so an operator can tell RocksDB's share of the node's memory.
#[tokio::test]
async fn the_store_s_memory_is_exposed_by_part() {
    let data = scratch_dir();
    let config = format!(
        "{}\n[storage]\npath = \"{}\"\n",
        mock_config(),
        data.join("store").display()
    );
    let node = Node::start(&config).await;
    let response = node.chat(&chat_body("fast", false)).send().await.unwrap();
    assert_eq!(response.status(), 200);
    // The call's counts reach the store's memtables within a flush.
    let text = eventually(Duration::from_secs(5), "the counts written", || async {
        let text = scrape(&node).await;
        (value(&text, r#"chorus_store_memory_bytes{part="memtables"}"#) > 0.0).then_some(text)
    })
    .await;
    for part in ["block_cache", "table_readers"] {
        let series = format!(r#"chorus_store_memory_bytes{{part="{part}"}}"#);
        assert!(value(&text, &series) >= 0.0, "{part}");
    }
    promtool_check(&text);
}
