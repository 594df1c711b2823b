//! `POST /v1/responses` counts like every other endpoint: a response that
//! passed through from an upstream speaking the Responses API, and one
//! translated to chat completions, put the tokens their usage reports,
//! at the deployment's prices, on the cluster's counters; a pass-through
//! stream cut before any content falls back without the client seeing it;
//! and one the upstream ends with `response.failed` reaches the client as
//! it came but counts as an error, with the tokens it used.

use std::time::Duration;

use chorus_tests::{eventually, sse_events, standard_config, MockUpstream, Node, TEST_KEY};
use serde_json::{json, Value};

/// The standard config plus `native` (an upstream that speaks the
/// Responses API, USD 2 in and 8 out per million tokens), `cut` (the same
/// upstream cutting its stream after the first frame, falling back to
/// `native`) and `translated` (a chat-only upstream at the same prices).
fn config(upstream: &MockUpstream) -> String {
    let base_url = upstream.base_url();
    standard_config(upstream)
        + &format!(
            r#"
[[providers]]
name = "native"
format = "openai"
responses = true
base_url = "{base_url}"

[[providers]]
name = "native-cut"
format = "openai"
responses = true
base_url = "{base_url}"
headers = {{ "x-mock-fault" = "cut", "x-mock-cut-after" = "1" }}

[[models]]
alias = "native"
deployments = [{{ provider = "native", model = "gpt-5", input_per_mtok = 2.0, output_per_mtok = 8.0 }}]

[[models]]
alias = "cut"
max_retries = 0
fallbacks = ["native"]
deployments = [{{ provider = "native-cut", model = "gpt-5" }}]

[[providers]]
name = "native-failing"
format = "openai"
responses = true
base_url = "{base_url}"
headers = {{ "x-mock-fault" = "failed" }}

[[models]]
alias = "failing"
max_retries = 0
deployments = [{{ provider = "native-failing", model = "gpt-5" }}]

[[models]]
alias = "translated"
deployments = [{{ provider = "up", model = "gpt-5-chat", input_per_mtok = 2.0, output_per_mtok = 8.0 }}]
"#
        )
}

async fn respond(node: &Node, body: Value) -> reqwest::Response {
    reqwest::Client::new()
        .post(node.url("/v1/responses"))
        .bearer_auth(TEST_KEY)
        .json(&body)
        .send()
        .await
        .unwrap()
}

/// The `usage` of a whole response, or of a stream's last event's.
async fn usage_of(response: reqwest::Response, stream: bool) -> Value {
    assert_eq!(response.status(), 200);
    if !stream {
        let body: Value = response.json().await.unwrap();
        return body["usage"].clone();
    }
    let events = sse_events(&response.text().await.unwrap());
    let (kind, data) = events.last().unwrap();
    assert_eq!(kind.as_deref(), Some("response.completed"));
    serde_json::from_str::<Value>(data).unwrap()["response"]["usage"].clone()
}

#[tokio::test]
async fn each_path_counts_the_tokens_its_usage_reports_at_the_deployments_prices() {
    let upstream = MockUpstream::start(&[]);
    let node = Node::start(&config(&upstream)).await;
    for (alias, deployment) in [("native", "native/gpt-5"), ("translated", "up/gpt-5-chat")] {
        let (mut input, mut output) = (0, 0);
        for stream in [false, true] {
            let body = json!({"model": alias, "input": "Count me", "instructions": "Be brief.",
                "stream": stream});
            let usage = usage_of(respond(&node, body).await, stream).await;
            input += usage["input_tokens"].as_u64().unwrap();
            output += usage["output_tokens"].as_u64().unwrap();
        }
        assert!(input > 0 && output > 0);
        let counted = eventually(Duration::from_secs(10), "both calls counted", || async {
            let calls = node.counter(deployment, "calls").await;
            (calls == 2).then_some((
                node.counter(deployment, "prompt_tokens").await,
                node.counter(deployment, "completion_tokens").await,
                node.counter(deployment, "cost_micros").await,
            ))
        })
        .await;
        let cost = (input * 2_000_000 + output * 8_000_000).div_ceil(1_000_000);
        assert_eq!(counted, (input, output, cost), "{alias}");
    }
}

#[tokio::test]
async fn a_passed_through_stream_cut_before_content_falls_back_unseen() {
    let upstream = MockUpstream::start(&[]);
    let node = Node::start(&config(&upstream)).await;
    let response = respond(
        &node,
        json!({"model": "cut", "input": "Hi", "stream": true}),
    )
    .await;
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["x-chorus-deployment"],
        "native/gpt-5",
        "the fallback answered"
    );
    let events = sse_events(&response.text().await.unwrap());
    let kinds: Vec<&str> = events
        .iter()
        .filter_map(|(kind, _)| kind.as_deref())
        .collect();
    let created = kinds.iter().filter(|kind| **kind == "response.created");
    assert_eq!(created.count(), 1, "{kinds:?}");
    assert_eq!(kinds.last(), Some(&"response.completed"), "{kinds:?}");
    assert!(!kinds.contains(&"error"), "{kinds:?}");
    let (_, first) = &events[0];
    let first: Value = serde_json::from_str(first).unwrap();
    assert_eq!(
        first["response"]["model"], "native",
        "named by the alias that answered"
    );
    assert_eq!(
        upstream.stats().await["requests"],
        2,
        "cut, then the fallback"
    );
}

#[tokio::test]
async fn an_upstreams_response_failed_counts_as_an_error_with_its_tokens() {
    let upstream = MockUpstream::start(&[]);
    let node = Node::start(&config(&upstream)).await;
    let response = respond(
        &node,
        json!({"model": "failing", "input": "Hi", "stream": true}),
    )
    .await;
    assert_eq!(response.status(), 200);
    let events = sse_events(&response.text().await.unwrap());
    let kinds: Vec<&str> = events
        .iter()
        .filter_map(|(kind, _)| kind.as_deref())
        .collect();
    assert!(kinds.contains(&"response.output_text.delta"), "{kinds:?}");
    assert_eq!(
        kinds.last(),
        Some(&"response.failed"),
        "as the upstream ended it"
    );
    assert!(!kinds.contains(&"error"), "nothing added: {kinds:?}");
    node.wait_for_deployment("native-failing/gpt-5", |deployment| {
        deployment["errors"] == 1
    })
    .await;
    let counted = eventually(Duration::from_secs(10), "the call counted", || async {
        let tokens = node.counter("native-failing/gpt-5", "prompt_tokens").await;
        (tokens > 0).then_some(tokens)
    })
    .await;
    assert_eq!(counted, 3, "the usage the failed response reported");
}
