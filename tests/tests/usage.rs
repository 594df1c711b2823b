//! Every call's tokens are counted, and what they cost: a stream whose
//! client did not ask for usage (every SDK's default) is counted from the
//! upstream's usage, which the client never sees; a stream with no usage
//! from the upstream, or one the client cancels, is counted with a
//! tokenizer's estimate, marked as such.

use std::time::Duration;

use chorus_tests::{chat_body, eventually, sse_events, standard_config, MockUpstream, Node};
use serde_json::Value;

const FAST: &str = "up/gpt-4o-mini";

async fn wait_for(node: &Node, subject: &str, kind: &str, check: impl Fn(u64) -> bool) -> u64 {
    eventually(
        Duration::from_secs(10),
        &format!("{kind} of {subject}"),
        || async {
            let value = node.counter(subject, kind).await;
            check(value).then_some(value)
        },
    )
    .await
}

#[tokio::test]
async fn a_stream_without_include_usage_is_counted_and_looks_unchanged() {
    let upstream = MockUpstream::start(&[]);
    let node = Node::start(&standard_config(&upstream)).await;
    let text = node.chat_text(&chat_body("fast", true)).await;
    assert!(
        !text.contains("usage"),
        "the client did not ask for usage: {text}"
    );
    let events = sse_events(&text);
    assert_eq!(events.last().unwrap().1, "[DONE]");
    for (_, data) in &events[..events.len() - 1] {
        let chunk: Value = serde_json::from_str(data).unwrap();
        assert_eq!(chunk["choices"].as_array().map(Vec::len), Some(1), "{data}");
    }
    let sent = upstream.last_request().await;
    assert_eq!(sent["body"]["stream_options"]["include_usage"], true);

    let completion = wait_for(&node, FAST, "completion_tokens", |v| v > 0).await;
    assert_eq!(completion, 16, "the upstream's own figure");
    let prompt = node.counter(FAST, "prompt_tokens").await;
    assert!(prompt > 0);
    // USD 0.15 and 0.60 per million tokens, in micro-dollars, rounded up.
    let cost = (prompt * 150_000 + completion * 600_000).div_ceil(1_000_000);
    assert_eq!(node.counter(FAST, "cost_micros").await, cost);
    assert_eq!(node.counter(FAST, "cost_micros_day").await, cost);
    assert_eq!(node.counter(FAST, "calls_minute").await, 1);
}

#[tokio::test]
async fn a_stream_without_upstream_usage_is_counted_by_estimate() {
    let upstream = MockUpstream::start(&[]);
    let node = Node::start(&standard_config(&upstream)).await;
    let text = node.chat_text(&chat_body("no-usage", true)).await;
    assert!(text.ends_with("data: [DONE]\n\n"));
    let sent = upstream.last_request().await;
    assert!(
        sent["body"].get("stream_options").is_none(),
        "not asked: {sent}"
    );
    let subject = "no-usage/gpt-4o-mini";
    let completion = wait_for(&node, subject, "completion_tokens", |v| v > 0).await;
    // Sixteen words, one token each in o200k_base.
    assert_eq!(completion, 16);
    assert!(node.counter(subject, "prompt_tokens").await > 0);
    node.wait_for_log("usage_estimated=true").await;
}

#[tokio::test]
async fn a_cancelled_stream_is_counted_by_estimate() {
    let upstream = MockUpstream::start(&[]);
    let node = Node::start(&standard_config(&upstream)).await;
    let mut response = node.chat(&chat_body("slow", true)).send().await.unwrap();
    let mut received = String::new();
    while received.matches("data: ").count() < 4 {
        let chunk = response.chunk().await.unwrap().unwrap();
        received.push_str(&String::from_utf8_lossy(&chunk));
    }
    drop(response);
    let subject = "slow/gpt-4o-mini";
    let completion = wait_for(&node, subject, "completion_tokens", |v| v > 0).await;
    assert!(
        completion < 20,
        "only what was produced before the cancel: {completion}"
    );
    assert!(node.counter(subject, "prompt_tokens").await > 0);
    let log = node.wait_for_log("status=499").await;
    assert!(log.contains("usage_estimated=true"), "{log}");
}

#[tokio::test]
async fn a_stream_cut_upstream_is_counted_by_estimate() {
    let upstream = MockUpstream::start(&[]);
    let node = Node::start(&standard_config(&upstream)).await;
    let text = node.chat_text(&chat_body("fault-cut", true)).await;
    assert!(text.contains("event: error"), "{text}");
    let subject = "fault-cut/gpt-4o-mini";
    let completion = wait_for(&node, subject, "completion_tokens", |v| v > 0).await;
    // Three tokens went out before the cut, one word each.
    assert!(
        (1..16).contains(&completion),
        "only what came before the cut: {completion}"
    );
    assert!(node.counter(subject, "prompt_tokens").await > 0);
    assert_eq!(node.counter(subject, "errors").await, 1);
    let log = node.wait_for_log("usage_estimated=true").await;
    assert!(log.contains("fault-cut"), "{log}");
}
