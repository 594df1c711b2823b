//! Clients that misbehave on purpose or by accident cannot hurt a node or
//! the clients behind them: a client that sends half its headers, or
//! nothing, or keeps a connection idle is disconnected; ten thousand idle
//! connections leave the node answering; a client that stops reading a
//! stream has its call cancelled; a body nested ten thousand deep is
//! refused with a clear error.

use std::time::{Duration, Instant};

use chorus_tests::{chat_body, mock_config, Node, TEST_KEY};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The node's idle limit in these tests: a client silent this long is
/// disconnected.
const IDLE_MS: u64 = 1_000;

fn config() -> String {
    format!(
        "[server]\nclient_idle_timeout_ms = {IDLE_MS}\n{}",
        mock_config().replacen("[server]\n", "", 1)
    )
}

/// Waits for the server to close `stream`: when it did, or `None` if it
/// was still open at `deadline`.
async fn closed_by(stream: &mut TcpStream, deadline: Instant) -> Option<Instant> {
    let mut buffer = [0u8; 4096];
    loop {
        match tokio::time::timeout_at(deadline.into(), stream.read(&mut buffer)).await {
            Err(_) => return None,
            Ok(Ok(0)) | Ok(Err(_)) => return Some(Instant::now()),
            // An answer (the keep-alive reply): read on.
            Ok(Ok(_)) => {}
        }
    }
}

#[tokio::test]
async fn a_client_silent_mid_headers_or_idle_is_disconnected() {
    let node = Node::start(&config()).await;
    let opened = Instant::now();
    let mut silent = TcpStream::connect(&node.address).await.unwrap();
    let mut slow = TcpStream::connect(&node.address).await.unwrap();
    slow.write_all(b"POST /v1/chat/completions HTTP/1.1\r\nhost: chorus\r\n")
        .await
        .unwrap();
    let mut kept_alive = TcpStream::connect(&node.address).await.unwrap();
    kept_alive
        .write_all(b"GET /health/live HTTP/1.1\r\nhost: chorus\r\n\r\n")
        .await
        .unwrap();

    let deadline = opened + Duration::from_millis(IDLE_MS * 5);
    for (name, stream) in [
        ("silent", &mut silent),
        ("half its headers", &mut slow),
        ("idle after an answer", &mut kept_alive),
    ] {
        let closed = closed_by(stream, deadline).await;
        let after = closed.unwrap_or_else(|| panic!("{name}: still open")) - opened;
        assert!(
            after >= Duration::from_millis(IDLE_MS / 2),
            "{name}: closed after {after:?}, before it was idle long"
        );
    }
    assert_eq!(
        node.chat_json(&chat_body("fast", false)).await["model"],
        "fast"
    );
}

#[tokio::test]
async fn ten_thousand_idle_connections_leave_the_node_answering() {
    let node = Node::start(&mock_config()).await;
    let connect_all = async {
        let mut idle = Vec::with_capacity(10_000);
        for _ in 0..10_000 {
            idle.push(TcpStream::connect(&node.address).await.expect("connect"));
        }
        idle
    };
    let _idle = tokio::time::timeout(Duration::from_secs(60), connect_all)
        .await
        .expect("10,000 connections taken within a minute");
    let started = Instant::now();
    let answer = node.chat_json(&chat_body("fast", false)).await;
    assert_eq!(answer["model"], "fast");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "answered in {:?} beside 10,000 idle connections",
        started.elapsed()
    );
    // Each idle connection costs little.
    let rss_kib = node.rss_kib();
    assert!(rss_kib < 400 * 1024, "{rss_kib} KiB resident");
}

#[tokio::test]
async fn a_client_that_stops_reading_a_stream_has_its_call_cancelled() {
    let config = format!(
        "{}\n[[providers]]\nname = \"endless\"\nformat = \"mock\"\noutput_tokens = 100000\n\n\
         [[models]]\nalias = \"endless\"\nidle_timeout_ms = {IDLE_MS}\n\
         deployments = [{{ provider = \"endless\", model = \"mock\" }}]\n",
        config()
    );
    let node = Node::start(&config).await;
    let body = serde_json::to_vec(&chat_body("endless", true)).unwrap();
    // A small window, so the node's sends back up soon.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut stream = socket.connect(node.address.parse().unwrap()).await.unwrap();
    let head = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nhost: chorus\r\nauthorization: Bearer {TEST_KEY}\r\n\
         content-type: application/json\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(&body).await.unwrap();
    let mut first = [0u8; 1024];
    assert!(stream.read(&mut first).await.unwrap() > 0);
    // Reads nothing more, and does not hang up either.
    let cancelled = chorus_tests::eventually(
        Duration::from_secs(30),
        "the stream's call cancelled",
        || async {
            let metrics = node.metrics().await;
            metrics
                .lines()
                .any(|line| {
                    line.starts_with("chorus_requests_total")
                        && line.contains("outcome=\"cancelled\"")
                        && !line.ends_with(" 0")
                })
                .then_some(())
        },
    );
    cancelled.await;
    drop(stream);
    let rss_kib = node.rss_kib();
    assert!(rss_kib < 400 * 1024, "{rss_kib} KiB resident");
}

#[tokio::test]
async fn a_body_nested_ten_thousand_deep_is_refused_with_a_clear_error() {
    let node = Node::start(&mock_config()).await;
    let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
    // Deep where anything goes: a tool's parameter schema.
    let mut schema = json!({"type": "string"});
    for _ in 0..200 {
        schema = json!({"type": "object", "properties": {"inner": schema}});
    }
    let mut deep_schema = chat_body("fast", false);
    deep_schema["tools"] =
        json!([{"type": "function", "function": {"name": "f", "parameters": schema}}]);
    let deep_schema = serde_json::to_vec(&deep_schema).unwrap();
    for (name, body) in [
        ("a deep array", deep.into_bytes()),
        ("a deep tool schema", deep_schema),
    ] {
        let response = node
            .chat(&json!(null))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 400, "{name}");
        let error: Value = response.json().await.unwrap();
        assert_eq!(
            error["error"]["type"], "invalid_request_error",
            "{name}: {error}"
        );
        assert!(
            error["error"]["message"].as_str().is_some(),
            "{name}: {error}"
        );
    }
    assert_eq!(
        node.chat_json(&chat_body("fast", false)).await["model"],
        "fast"
    );
}
