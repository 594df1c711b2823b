//! Anthropic upstreams under routing, as OpenAI and Anthropic clients see
//! them: an overloaded (529) call retried elsewhere, Anthropic's wording of
//! a prompt too long taking the context-window fallback, an upstream that
//! breaks mid-stream ending the stream with an error event in the client's
//! own format, and a malformed answer turned into a 502.
//! (The official SDKs' view is in `tests/sdk/test_anthropic_sdk.py`.)

use chorus_tests::{chat_body, sse_events, standard_config, MockUpstream, Node, TEST_KEY};
use serde_json::{json, Value};

/// The standard config plus `claude-<fault>` providers in Anthropic
/// format, `claude` without a fault, and the aliases the tests need.
fn config(upstream: &MockUpstream) -> String {
    let base_url = upstream.base_url();
    let mut config = standard_config(upstream);
    for fault in ["none", "overloaded", "context", "error-event", "garbage"] {
        config += &format!(
            "\n[[providers]]\nname = \"claude-{fault}\"\nformat = \"anthropic\"\n\
             base_url = \"{base_url}\"\napi_key = \"sk-ant-test\"\n\
             headers = {{ \"x-mock-fault\" = \"{fault}\" }}\n"
        );
    }
    config
        + r#"
[[models]]
alias = "claude"
deployments = [{ provider = "claude-none", model = "claude-sonnet-4-5" }]

[[models]]
alias = "claude-retried"
strategy = "round-robin"
deployments = [{ provider = "claude-overloaded", model = "claude-sonnet-4-5" }, { provider = "claude-none", model = "claude-sonnet-4-5" }]

[[models]]
alias = "claude-small"
context_window_fallbacks = ["claude"]
deployments = [{ provider = "claude-context", model = "claude-haiku" }]

[[models]]
alias = "claude-breaks"
max_retries = 0
deployments = [{ provider = "claude-error-event", model = "claude-sonnet-4-5" }]

[[models]]
alias = "claude-garbage"
max_retries = 0
deployments = [{ provider = "claude-garbage", model = "claude-sonnet-4-5" }]
"#
}

fn header<'a>(response: &'a reqwest::Response, name: &str) -> &'a str {
    response
        .headers()
        .get(name)
        .and_then(|value| value.to_str().ok())
        .unwrap_or("")
}

#[tokio::test]
async fn an_overloaded_anthropic_call_is_retried_on_another_deployment() {
    let upstream = MockUpstream::start(&[]);
    let node = Node::start(&config(&upstream)).await;
    let response = node
        .chat(&chat_body("claude-retried", false))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(header(&response, "x-chorus-attempts"), "2");
    assert_eq!(
        header(&response, "x-chorus-deployment"),
        "claude-none/claude-sonnet-4-5"
    );
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["model"], "claude-retried");
}

#[tokio::test]
async fn anthropic_wording_of_a_prompt_too_long_takes_the_context_fallback() {
    let upstream = MockUpstream::start(&[]);
    let node = Node::start(&config(&upstream)).await;
    let response = node
        .chat(&chat_body("claude-small", false))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        header(&response, "x-chorus-deployment"),
        "claude-none/claude-sonnet-4-5"
    );
}

#[tokio::test]
async fn an_anthropic_stream_that_breaks_ends_with_an_openai_error_event() {
    let upstream = MockUpstream::start(&[]);
    let node = Node::start(&config(&upstream)).await;
    let body = node.chat_text(&chat_body("claude-breaks", true)).await;
    let events = sse_events(&body);
    let (last_kind, last_data) = events.last().expect("events");
    assert_eq!(last_kind.as_deref(), Some("error"), "{body}");
    let error: Value = serde_json::from_str(last_data).unwrap();
    assert!(error["error"]["message"]
        .as_str()
        .unwrap()
        .contains("injected overload mid-stream"));
    let content: Vec<Value> = events[..events.len() - 1]
        .iter()
        .map(|(_, data)| serde_json::from_str(data).unwrap())
        .collect();
    assert!(content
        .iter()
        .any(|chunk| chunk["choices"][0]["delta"]["content"].is_string()));
    assert!(content
        .iter()
        .all(|chunk| chunk["choices"][0]["finish_reason"].is_null()));
}

#[tokio::test]
async fn a_malformed_anthropic_answer_is_a_502() {
    let upstream = MockUpstream::start(&[]);
    let node = Node::start(&config(&upstream)).await;
    let response = node
        .chat(&chat_body("claude-garbage", false))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 502);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "upstream_malformed_response");
}

/// `POST /v1/messages` with the test key in `x-api-key`.
fn messages(node: &Node, body: &Value) -> reqwest::RequestBuilder {
    reqwest::Client::new()
        .post(node.url("/v1/messages"))
        .header("x-api-key", TEST_KEY)
        .header("anthropic-version", "2023-06-01")
        .json(body)
}

#[tokio::test]
async fn a_messages_stream_that_breaks_ends_with_an_anthropic_error_event() {
    let upstream = MockUpstream::start(&[]);
    let node = Node::start(&config(&upstream)).await;
    let request = json!({"model": "fault-error-event", "max_tokens": 16, "stream": true,
        "messages": [{"role": "user", "content": "hi"}]});
    let body = messages(&node, &request)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let events = sse_events(&body);
    let kinds: Vec<&str> = events
        .iter()
        .map(|(kind, _)| kind.as_deref().unwrap_or(""))
        .collect();
    assert_eq!(
        kinds,
        [
            "message_start",
            "content_block_start",
            "content_block_delta",
            "error"
        ],
        "{body}"
    );
    let error: Value = serde_json::from_str(&events[3].1).unwrap();
    assert_eq!(error["type"], "error");
    assert_eq!(error["error"]["type"], "api_error");
}

#[tokio::test]
async fn messages_refusals_are_anthropic_errors_with_the_gateway_headers() {
    let upstream = MockUpstream::start(&[]);
    let node = Node::start(&config(&upstream)).await;
    let unlimited = json!({"model": "fault-429", "max_tokens": 4,
        "messages": [{"role": "user", "content": "hi"}]});
    let response = messages(&node, &unlimited).send().await.unwrap();
    assert_eq!(response.status(), 429);
    assert_eq!(header(&response, "retry-after"), "1");
    assert_eq!(header(&response, "x-chorus-attempts"), "1");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["type"], "error");
    assert_eq!(body["error"]["type"], "rate_limit_error");
    let not_json = reqwest::Client::new()
        .post(node.url("/v1/messages"))
        .header("x-api-key", TEST_KEY)
        .body("{")
        .send()
        .await
        .unwrap();
    assert_eq!(not_json.status(), 400);
    let body: Value = not_json.json().await.unwrap();
    assert_eq!(body["error"]["type"], "invalid_request_error");
}
