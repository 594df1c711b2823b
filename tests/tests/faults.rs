//! Every upstream fault the mock can inject, and what the client sees:
//! upstream statuses passed on, 502/504 for a dead or silent upstream, and
//! a broken stream ended with an SSE error event — never a made-up finish.

use std::time::{Duration, Instant};

use chorus_tests::{chat_body, eventually, sse_events, standard_config, MockUpstream, Node};
use serde_json::Value;

async fn error_body(response: reqwest::Response) -> Value {
    let body: Value = response.json().await.unwrap();
    assert!(body["error"]["message"].is_string(), "{body}");
    body["error"].clone()
}

#[tokio::test]
async fn upstream_error_statuses_are_passed_on() {
    let upstream = MockUpstream::start(&[]);
    let node = Node::start(&standard_config(&upstream)).await;
    let response = node
        .chat(&chat_body("fault-500", false))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 500);
    let error = error_body(response).await;
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .contains("injected server error"),
        "{error}"
    );
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .contains("fault-500/gpt-4o-mini"),
        "{error}"
    );

    let response = node
        .chat(&chat_body("fault-429", false))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 429);
    assert_eq!(response.headers()["retry-after"], "1");
    error_body(response).await;
}

#[tokio::test]
async fn a_silent_upstream_is_504_after_the_timeout() {
    let upstream = MockUpstream::start(&[]);
    let node = Node::start(&standard_config(&upstream)).await;
    let started = Instant::now();
    let response = node
        .chat(&chat_body("fault-hang", false))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 504);
    let elapsed = started.elapsed();
    assert!(
        elapsed >= Duration::from_millis(1000) && elapsed < Duration::from_millis(3000),
        "{elapsed:?}"
    );
    assert_eq!(error_body(response).await["code"], "upstream_timeout");
    // Streaming requests time out the same way before the first byte.
    let response = node
        .chat(&chat_body("fault-hang", true))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 504);
}

#[tokio::test]
async fn a_reset_or_unreachable_upstream_is_502() {
    let upstream = MockUpstream::start(&[]);
    let node = Node::start(&standard_config(&upstream)).await;
    let response = node
        .chat(&chat_body("fault-reset", false))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 502);
    assert_eq!(error_body(response).await["code"], "upstream_unreachable");

    // A provider whose port has nothing listening.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead_url = format!("http://{}/v1", closed.local_addr().unwrap());
    drop(closed);
    let config = standard_config(&upstream).replace(&upstream.base_url(), &dead_url);
    let node = Node::start(&config).await;
    let response = node.chat(&chat_body("fast", false)).send().await.unwrap();
    assert_eq!(response.status(), 502);
    let error = error_body(response).await;
    assert_eq!(error["code"], "upstream_unreachable");
}

#[tokio::test]
async fn a_garbage_body_is_502() {
    let upstream = MockUpstream::start(&[]);
    let node = Node::start(&standard_config(&upstream)).await;
    let response = node
        .chat(&chat_body("fault-garbage", false))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 502);
    assert_eq!(
        error_body(response).await["code"],
        "upstream_malformed_response"
    );
}

/// The events of a stream that broke upstream: data chunks, then one error
/// event, and neither `[DONE]` nor a `finish_reason`.
fn assert_broken_stream(text: &str, expected_code: &str) {
    let events = sse_events(text);
    let (last_kind, last_data) = events.last().unwrap();
    assert_eq!(last_kind.as_deref(), Some("error"), "{text}");
    let error: Value = serde_json::from_str(last_data).unwrap();
    assert_eq!(error["error"]["code"], expected_code, "{text}");
    assert!(!text.contains("[DONE]"), "{text}");
    assert!(!text.contains("\"finish_reason\":\"stop\""), "{text}");
}

#[tokio::test]
async fn a_stream_cut_upstream_ends_with_an_error_event() {
    let upstream = MockUpstream::start(&[]);
    let node = Node::start(&standard_config(&upstream)).await;
    let response = node
        .chat(&chat_body("fault-cut", true))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let text = response.text().await.unwrap();
    assert_eq!(
        sse_events(&text).len(),
        3 + 1,
        "three chunks then the error: {text}"
    );
    assert_broken_stream(&text, "upstream_broken");
}

#[tokio::test]
async fn a_garbage_chunk_ends_the_stream_with_an_error_event() {
    let upstream = MockUpstream::start(&[]);
    let node = Node::start(&standard_config(&upstream)).await;
    let text = node.chat_text(&chat_body("fault-garbage", true)).await;
    assert_broken_stream(&text, "upstream_malformed_response");
}

#[tokio::test]
async fn an_upstream_error_event_ends_the_stream_as_a_failure() {
    let upstream = MockUpstream::start(&[]);
    let node = Node::start(&standard_config(&upstream)).await;
    let text = node.chat_text(&chat_body("fault-error-event", true)).await;
    assert_broken_stream(&text, "upstream_stream_error");
    assert!(text.contains("injected overload mid-stream"), "{text}");
    node.wait_for_deployment("fault-error-event/gpt-4o-mini", |d| d["errors"] == 1)
        .await;
}

#[tokio::test]
async fn a_client_that_disconnects_cancels_the_upstream_stream() {
    let upstream = MockUpstream::start(&[]);
    let node = Node::start(&standard_config(&upstream)).await;
    let mut response = node.chat(&chat_body("glacial", true)).send().await.unwrap();
    response.chunk().await.unwrap().unwrap();
    assert_eq!(upstream.stats().await["streams_started"], 1);
    drop(response);
    // The stream would run ten more seconds and count as completed; the
    // upstream sees it dropped instead (at its next token), which no
    // timing on a busy machine has to tell apart.
    eventually(
        Duration::from_secs(5),
        "upstream stream cancelled",
        || async { (upstream.stats().await["streams_cancelled"] == 1).then_some(()) },
    )
    .await;
    let slow = node
        .wait_for_deployment("glacial/gpt-4o-mini", |d| d["cancelled"] == 1)
        .await;
    assert_eq!(slow["in_flight"], 0);
    assert_eq!(upstream.stats().await["streams_completed"], 0);
}

#[tokio::test]
async fn errors_are_counted_per_deployment() {
    let upstream = MockUpstream::start(&[]);
    let node = Node::start(&standard_config(&upstream)).await;
    for _ in 0..3 {
        node.chat(&chat_body("fault-500", false))
            .send()
            .await
            .unwrap();
    }
    node.wait_for_deployment("fault-500/gpt-4o-mini", |d| {
        d["errors"] == 3 && d["in_flight"] == 0
    })
    .await;
}
