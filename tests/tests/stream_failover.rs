//! Streams and their failures: before the first content a failed stream is
//! retried where the client cannot see it (its role-only opening chunk
//! held back); after content a failure is an SSE error event with no
//! `[DONE]`, never a retry; time to first token, the idle time between
//! chunks and the request's total deadline each have their own timeout.

use chorus_tests::{chat_body, sse_events, standard_config, MockUpstream, Node};
use serde_json::Value;

/// A provider on the mock that breaks its streams after `after` chunks.
fn cutting_provider(name: &str, base_url: &str, after: u32) -> String {
    format!(
        "\n[[providers]]\nname = \"{name}\"\nformat = \"openai\"\nbase_url = \"{base_url}\"\n\
         headers = {{ \"x-mock-fault\" = \"cut\", \"x-mock-cut-after\" = \"{after}\" }}\n"
    )
}

/// An alias over `deployments` (provider names), taken in turn.
fn alias(name: &str, settings: &str, providers: &[&str]) -> String {
    let deployments: Vec<String> = providers
        .iter()
        .map(|provider| format!("{{ provider = \"{provider}\", model = \"m\" }}"))
        .collect();
    format!(
        "\n[[models]]\nalias = \"{name}\"\nstrategy = \"round-robin\"\n{settings}\
         deployments = [{}]\n",
        deployments.join(", ")
    )
}

async fn stream(node: &Node, alias: &str) -> (u16, u32, String) {
    let response = node.chat(&chat_body(alias, true)).send().await.unwrap();
    let status = response.status().as_u16();
    let attempts = response.headers()["x-chorus-attempts"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    (status, attempts, response.text().await.unwrap())
}

/// The stream's data chunks as JSON, and the error event's if it ended
/// with one.
fn chunks(text: &str) -> (Vec<Value>, Option<Value>) {
    let mut chunks = Vec::new();
    let mut error = None;
    for (kind, data) in sse_events(text) {
        match kind.as_deref() {
            Some("error") => error = Some(serde_json::from_str(&data).unwrap()),
            _ if data == "[DONE]" => {}
            _ => chunks.push(serde_json::from_str(&data).unwrap()),
        }
    }
    (chunks, error)
}

/// The standard config, `cut-early` (its streams break after the role
/// chunk) and `sluggish` (a second between tokens).
fn upstream_config(upstream: &MockUpstream) -> String {
    standard_config(upstream)
        + &cutting_provider("cut-early", &upstream.base_url(), 1)
        + &format!(
            "\n[[providers]]\nname = \"sluggish\"\nformat = \"openai\"\nbase_url = \"{}\"\n\
             headers = {{ \"x-mock-token-delay-ms\" = \"1000\", \"x-mock-output-tokens\" = \"3\" }}\n",
            upstream.base_url()
        )
}

#[tokio::test]
async fn a_stream_that_fails_before_content_is_retried_unseen() {
    let upstream = MockUpstream::start(&[]);
    let config = upstream_config(&upstream) + &alias("early", "", &["cut-early", "up"]);
    let node = Node::start(&config).await;
    let (status, attempts, text) = stream(&node, "early").await;
    assert_eq!((status, attempts), (200, 2), "{text}");
    assert!(text.ends_with("data: [DONE]\n\n"), "{text}");
    let (chunks, error) = chunks(&text);
    assert!(error.is_none(), "{text}");
    // The failed attempt's opening chunk never reached the client.
    let roles = chunks
        .iter()
        .filter(|chunk| chunk["choices"][0]["delta"]["role"] == "assistant")
        .count();
    assert_eq!(roles, 1, "{text}");
    assert_eq!(upstream.stats().await["streams_started"], 2);
}

#[tokio::test]
async fn after_content_a_failure_is_an_error_event_and_never_a_retry() {
    let upstream = MockUpstream::start(&[]);
    let config = upstream_config(&upstream) + &alias("late", "", &["fault-cut", "up"]);
    let node = Node::start(&config).await;
    let (status, attempts, text) = stream(&node, "late").await;
    assert_eq!((status, attempts), (200, 1), "{text}");
    assert!(!text.contains("[DONE]"), "{text}");
    let (chunks, error) = chunks(&text);
    assert!(chunks.len() >= 2, "content came first: {text}");
    let error = error.unwrap_or_else(|| panic!("no error event: {text}"));
    assert_eq!(error["error"]["code"], "upstream_broken", "{error}");
    assert_eq!(upstream.stats().await["requests"], 1);
    // Counted as a failed call, not a completed one.
    let view = node.cluster_view().await;
    let cut = view["deployments"]
        .as_array()
        .unwrap()
        .iter()
        .find(|deployment| deployment["name"] == "fault-cut/m")
        .cloned()
        .unwrap();
    assert_eq!(cut["cluster"]["errors"], 1, "{cut}");
}

#[tokio::test]
async fn a_slow_first_token_is_retried_elsewhere() {
    let upstream = MockUpstream::start(&[]);
    // `sluggish` sends its first content a second after the role chunk;
    // `up` at once, well within the 400 ms even on a busy machine.
    let config = upstream_config(&upstream)
        + &alias("impatient", "ttft_timeout_ms = 400\n", &["sluggish", "up"]);
    let node = Node::start(&config).await;
    let (status, attempts, text) = stream(&node, "impatient").await;
    assert_eq!((status, attempts), (200, 2), "{text}");
    assert!(text.ends_with("data: [DONE]\n\n"), "{text}");
}

#[tokio::test]
async fn a_stalled_stream_ends_at_the_idle_timeout() {
    let upstream = MockUpstream::start(&[]);
    // Its first content within the provider's timeout, the next 100 ms on.
    let config = upstream_config(&upstream) + &alias("stalls", "idle_timeout_ms = 50\n", &["slow"]);
    let node = Node::start(&config).await;
    let (status, attempts, text) = stream(&node, "stalls").await;
    assert_eq!((status, attempts), (200, 1), "{text}");
    let (chunks, error) = chunks(&text);
    assert!(!chunks.is_empty(), "{text}");
    let error = error.unwrap_or_else(|| panic!("no error event: {text}"));
    assert_eq!(error["error"]["code"], "upstream_timeout", "{error}");
    assert!(!text.contains("[DONE]"), "{text}");
}

#[tokio::test]
async fn a_stream_past_the_requests_deadline_ends_with_an_error() {
    let upstream = MockUpstream::start(&[]);
    // 20 tokens 100 ms apart: two seconds, against a deadline of 1.2 s.
    let config =
        upstream_config(&upstream) + &alias("hurried", "total_timeout_ms = 1200\n", &["slow"]);
    let node = Node::start(&config).await;
    let started = std::time::Instant::now();
    let (status, _, text) = stream(&node, "hurried").await;
    assert_eq!(status, 200, "{text}");
    assert!(started.elapsed() < std::time::Duration::from_millis(1_900));
    let (chunks, error) = chunks(&text);
    assert!(chunks.len() >= 2, "{text}");
    let error = error.unwrap_or_else(|| panic!("no error event: {text}"));
    assert_eq!(error["error"]["code"], "upstream_timeout", "{error}");
}
