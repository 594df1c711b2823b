//! Same format, same bytes: an Anthropic client's request to an
//! `anthropic` deployment reaches the upstream as it was sent but for
//! `model` — thinking and its signed blocks, every `cache_control`,
//! `context_management`, documents, images in tool results — with the
//! client's `anthropic-beta` and `anthropic-version`; the answer, whole or
//! streamed, comes back as the upstream wrote it but for `model`, thinking
//! and cache usage included; and the call is priced with its cache reads
//! and writes at the cache prices. An OpenAI client's body reaches an
//! `openai` upstream with its numbers as written.

use std::time::Duration;

use chorus_bench::mock_messages::{SIGNATURE, THINKING};
use chorus_tests::{
    eventually, scratch_dir, sse_events, standard_config, MockUpstream, Node, ScratchDir, TEST_KEY,
};
use serde_json::Value;

const UPSTREAM_MODEL: &str = "claude-sonnet-4-5-20250929";
const DEPLOYMENT: &str = "claude-up/claude-sonnet-4-5-20250929";
const BETA: &str = "interleaved-thinking-2025-05-14,context-management-2025-06-27";

/// The standard config plus an `anthropic` provider and alias `claude`
/// at USD 3 in and 15 out per million tokens (so cache reads at 0.30 and
/// writes at 3.75 by default), and `gpt-only`, an alias with no Anthropic
/// deployment.
fn config(upstream: &MockUpstream, store: &std::path::Path) -> String {
    let base_url = upstream.base_url();
    standard_config(upstream)
        + &format!(
            r#"
[storage]
path = "{}"

[[providers]]
name = "claude-up"
format = "anthropic"
base_url = "{base_url}"
api_key = "sk-ant-upstream"

[[providers]]
name = "claude-cut"
format = "anthropic"
base_url = "{base_url}"
headers = {{ "x-mock-fault" = "cut", "x-mock-cut-after" = "1" }}

[[models]]
alias = "claude"
deployments = [{{ provider = "claude-up", model = "{UPSTREAM_MODEL}", input_per_mtok = 3.0, output_per_mtok = 15.0 }}]

[[models]]
alias = "claude-cut"
max_retries = 0
fallbacks = ["claude"]
deployments = [{{ provider = "claude-cut", model = "{UPSTREAM_MODEL}" }}]

[[models]]
alias = "claude-*"
deployments = [{{ provider = "claude-up", model = "claude-*" }}]

[[models]]
alias = "anthropic/*"
deployments = [{{ provider = "claude-up", model = "*" }}]

[[models]]
alias = "gpt-only"
deployments = [{{ provider = "up", model = "gpt-4o" }}]
"#,
            store.display()
        )
}

/// A Claude Code turn after a tool call: extended thinking on, the signed
/// thinking block and tool use of the turn before, a tool result holding
/// an image, a PDF document, cache breakpoints on the tools, the system
/// prompt and the tool result, and fields Chorus has no use for. Written
/// as text, so its bytes can be compared.
fn claude_code_turn(model: &str, stream: bool) -> String {
    let system = "You are Claude Code, a coding agent. ".repeat(40);
    format!(
        r#"{{"model": "{model}", "max_tokens": 4096, "stream": {stream},
  "thinking": {{"type": "enabled", "budget_tokens": 2048}},
  "context_management": {{"edits": [{{"type": "clear_tool_uses_20250919"}}]}},
  "metadata": {{"user_id": "user_abc_account_def_session_ghi"}},
  "system": [{{"type": "text", "text": "{system}", "cache_control": {{"type": "ephemeral"}}}}],
  "tools": [{{"name": "read_file", "description": "Reads a file.", "cache_control": {{"type": "ephemeral"}},
    "input_schema": {{"type": "object", "properties": {{"path": {{"type": "string"}}, "ratio": {{"type": "number", "maximum": 1.10}}}}}}}}],
  "messages": [
    {{"role": "user", "content": [{{"type": "text", "text": "What is in the chart?"}},
      {{"type": "document", "source": {{"type": "base64", "media_type": "application/pdf", "data": "JVBERi0xLjQK"}}}}]}},
    {{"role": "assistant", "content": [
      {{"type": "thinking", "thinking": "I should read it.", "signature": "EqQBCkYIBxgCKkDz1e2"}},
      {{"type": "redacted_thinking", "data": "EmwKAhgBEgy3va3pzix"}},
      {{"type": "tool_use", "id": "toolu_01", "name": "read_file", "input": {{"path": "chart.png", "ratio": 1.10}}}}]}},
    {{"role": "user", "content": [{{"type": "tool_result", "tool_use_id": "toolu_01", "cache_control": {{"type": "ephemeral"}},
      "content": [{{"type": "image", "source": {{"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}}}}]}}]}}
  ]}}"#
    )
}

/// A node on [`config`], and its store, removed when dropped.
async fn start(upstream: &MockUpstream) -> (Node, ScratchDir) {
    let store = scratch_dir();
    let node = Node::start(&config(upstream, &store)).await;
    (node, store)
}

fn messages(node: &Node, body: String) -> reqwest::RequestBuilder {
    reqwest::Client::new()
        .post(node.url("/v1/messages"))
        .header("x-api-key", TEST_KEY)
        .header("anthropic-version", "2023-06-01")
        .header("anthropic-beta", BETA)
        .header("content-type", "application/json")
        .body(body)
}

/// What a call with this usage costs at the alias's prices, in µ$.
fn cost(usage: &Value) -> u64 {
    let count = |field: &str| usage[field].as_u64().unwrap_or(0);
    let pico = count("input_tokens") * 3_000_000
        + count("cache_read_input_tokens") * 300_000
        + count("cache_creation_input_tokens") * 3_750_000
        + count("output_tokens") * 15_000_000;
    pico.div_ceil(1_000_000)
}

#[tokio::test]
async fn a_claude_code_turn_passes_through_both_ways_and_is_priced_with_its_cache() {
    let upstream = MockUpstream::start(&[]);
    let (node, _store) = start(&upstream).await;
    let sent = claude_code_turn("claude", false);

    let response = messages(&node, sent.clone()).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let first: Value = response.json().await.unwrap();
    let received = upstream.last_request().await;
    assert_eq!(
        received["body_text"],
        sent.replace(
            r#""model": "claude""#,
            &format!(r#""model": "{UPSTREAM_MODEL}""#)
        ),
        "the upstream gets the client's bytes but for the model"
    );
    assert_eq!(received["headers"]["anthropic-beta"], BETA);
    assert_eq!(received["headers"]["anthropic-version"], "2023-06-01");
    assert_eq!(received["x-api-key"], "sk-ant-upstream");

    assert_eq!(first["model"], "claude");
    assert_eq!(first["content"][0]["type"], "thinking");
    assert_eq!(first["content"][0]["thinking"], THINKING);
    assert_eq!(first["content"][0]["signature"], SIGNATURE);
    let written = first["usage"]["cache_creation_input_tokens"]
        .as_u64()
        .unwrap();
    assert!(written > 300, "the prefix is written: {}", first["usage"]);

    // The next turn sends the same prefix: read from the cache.
    let second: Value = messages(&node, sent)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(second["usage"]["cache_read_input_tokens"], written);
    assert_eq!(second["usage"]["cache_creation_input_tokens"], 0);

    let expected = cost(&first["usage"]) + cost(&second["usage"]);
    let counted = eventually(Duration::from_secs(10), "the calls' cost", || async {
        let calls = node.counter(DEPLOYMENT, "calls").await;
        (calls == 2).then_some(node.counter(DEPLOYMENT, "cost_micros").await)
    })
    .await;
    assert_eq!(counted, expected, "cache reads and writes at their prices");
    let prompt = |usage: &Value| {
        [
            "input_tokens",
            "cache_read_input_tokens",
            "cache_creation_input_tokens",
        ]
        .iter()
        .map(|field| usage[*field].as_u64().unwrap_or(0))
        .sum::<u64>()
    };
    assert_eq!(
        node.counter(DEPLOYMENT, "prompt_tokens").await,
        prompt(&first["usage"]) + prompt(&second["usage"])
    );

    // The request log, `/v1/stats` and the metrics count cached tokens by kind.
    let stats = eventually(
        Duration::from_secs(10),
        "both calls in the stats",
        || async {
            let (_, stats) = node.admin(reqwest::Method::GET, "/v1/stats", None).await;
            (stats["totals"]["requests"] == 2).then_some(stats)
        },
    )
    .await;
    assert_eq!(stats["totals"]["cache_write_tokens"], written);
    assert_eq!(stats["totals"]["cache_read_tokens"], written);
    assert_eq!(stats["totals"]["cost_micros"], expected);
    let metrics = node.metrics().await;
    for kind in ["cache_read", "cache_write"] {
        let line = format!(
            "chorus_tokens_total{{alias=\"claude\",deployment=\"{DEPLOYMENT}\",type=\"{kind}\"}} {written}"
        );
        assert!(metrics.contains(&line), "no {line} in\n{metrics}");
    }
}

#[tokio::test]
async fn a_streamed_turn_comes_back_byte_for_byte_but_the_model() {
    let upstream = MockUpstream::start(&[]);
    let (node, _store) = start(&upstream).await;
    let response = messages(&node, claude_code_turn("claude", true))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let through_chorus = response.text().await.unwrap();
    let received = upstream.last_request().await;
    assert_eq!(received["body"]["thinking"]["budget_tokens"], 2048);

    // The same request straight to the upstream, which has now seen the
    // prefix: only the cache figures and the model may differ.
    let direct = reqwest::Client::new()
        .post(format!("{}/messages", upstream.base_url()))
        .header("anthropic-version", "2023-06-01")
        .header("content-type", "application/json")
        .body(claude_code_turn(UPSTREAM_MODEL, true))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let events = sse_events(&through_chorus);
    let direct_events = sse_events(&direct);
    assert_eq!(events.len(), direct_events.len());
    for ((kind, data), (direct_kind, direct_data)) in events.iter().zip(&direct_events) {
        assert_eq!(kind, direct_kind);
        if kind.as_deref() == Some("message_start") || kind.as_deref() == Some("message_delta") {
            continue;
        }
        assert_eq!(
            data, direct_data,
            "every other event as the upstream sent it"
        );
    }
    let kinds: Vec<&str> = events
        .iter()
        .filter_map(|(kind, _)| kind.as_deref())
        .collect();
    assert_eq!(kinds.first(), Some(&"message_start"));
    assert_eq!(kinds.last(), Some(&"message_stop"));
    let deltas: Vec<Value> = events
        .iter()
        .filter(|(kind, _)| kind.as_deref() == Some("content_block_delta"))
        .map(|(_, data)| serde_json::from_str::<Value>(data).unwrap()["delta"].clone())
        .collect();
    assert!(deltas.iter().any(|delta| delta["type"] == "thinking_delta"));
    assert!(deltas
        .iter()
        .any(|delta| delta["type"] == "signature_delta" && delta["signature"] == SIGNATURE));
    let start: Value = serde_json::from_str(&events[0].1).unwrap();
    assert_eq!(start["message"]["model"], "claude");
    let usage = &start["message"]["usage"];
    assert!(usage["input_tokens"].as_u64().unwrap() > 0, "{usage}");
    assert!(
        usage["cache_creation_input_tokens"].as_u64().unwrap() > 300,
        "{usage}"
    );
    let counted = eventually(Duration::from_secs(10), "the stream's tokens", || async {
        let completion = node.counter(DEPLOYMENT, "completion_tokens").await;
        (completion > 0).then_some(completion)
    })
    .await;
    let end = events
        .iter()
        .find(|(kind, _)| kind.as_deref() == Some("message_delta"))
        .map(|(_, data)| serde_json::from_str::<Value>(data).unwrap())
        .unwrap();
    assert_eq!(counted, end["usage"]["output_tokens"].as_u64().unwrap());
}

#[tokio::test]
async fn a_stream_cut_before_content_falls_back_unseen() {
    let upstream = MockUpstream::start(&[]);
    let (node, _store) = start(&upstream).await;
    // Without thinking, the first frame is `message_start` and `ping`
    // alone: held back, so the cut after it is not the client's to see.
    let body = r#"{"model": "claude-cut", "max_tokens": 16, "stream": true,
        "messages": [{"role": "user", "content": "Hello"}]}"#;
    let response = messages(&node, body.to_owned()).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let events = sse_events(&response.text().await.unwrap());
    let kinds: Vec<&str> = events
        .iter()
        .filter_map(|(kind, _)| kind.as_deref())
        .collect();
    assert_eq!(
        kinds
            .iter()
            .filter(|kind| **kind == "message_start")
            .count(),
        1,
        "{kinds:?}"
    );
    assert_eq!(kinds.last(), Some(&"message_stop"), "{events:?}");
    assert!(!kinds.contains(&"error"), "{kinds:?}");
    assert_eq!(
        upstream.stats().await["requests"],
        2,
        "cut, then the fallback"
    );
}

#[tokio::test]
async fn what_only_anthropic_can_take_is_refused_where_no_anthropic_deployment_is() {
    let upstream = MockUpstream::start(&[]);
    let (node, _store) = start(&upstream).await;
    let response = messages(&node, claude_code_turn("gpt-only", false))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let error: Value = response.json().await.unwrap();
    assert_eq!(error["type"], "error");
    assert_eq!(error["error"]["type"], "invalid_request_error");
    let message = error["error"]["message"].as_str().unwrap();
    assert!(message.contains("document"), "{message}");
    assert_eq!(upstream.stats().await["requests"], 0, "nothing was sent");
}

#[tokio::test]
async fn an_openai_body_reaches_an_openai_upstream_with_its_numbers_as_written() {
    let upstream = MockUpstream::start(&[]);
    let (node, _store) = start(&upstream).await;
    let sent = r#"{"model": "fast", "temperature": 1.10, "top_p": 1e-1, "seed": 12345678901234567890123,
        "messages": [{"role": "user", "content": "Hi"}], "openai_future_field": {"x": 1.50}}"#;
    let response = reqwest::Client::new()
        .post(node.url("/v1/chat/completions"))
        .bearer_auth(TEST_KEY)
        .header("content-type", "application/json")
        .header("openai-beta", "assistants=v2")
        .body(sent)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let received = upstream.last_request().await;
    assert_eq!(
        received["body_text"],
        sent.replace(r#""model": "fast""#, r#""model": "gpt-4o-mini""#)
    );
    assert_eq!(received["headers"]["openai-beta"], "assistants=v2");
    assert!(
        received["headers"].get("anthropic-beta").is_none(),
        "an OpenAI upstream gets OpenAI's headers only"
    );
}

#[tokio::test]
async fn dated_model_names_route_through_patterns_and_come_back_as_asked() {
    let upstream = MockUpstream::start(&[]);
    let (node, _store) = start(&upstream).await;
    for (asked, upstream_model) in [
        ("claude-opus-4-1-20250805", "claude-opus-4-1-20250805"),
        ("anthropic/claude-haiku-4-5", "claude-haiku-4-5"),
    ] {
        for stream in [false, true] {
            let body = format!(
                r#"{{"model": "{asked}", "max_tokens": 16, "stream": {stream},
                "messages": [{{"role": "user", "content": "Hello"}}]}}"#
            );
            let response = messages(&node, body).send().await.unwrap();
            assert_eq!(response.status(), 200, "{asked}");
            let text = response.text().await.unwrap();
            let model = if stream {
                let start: Value = serde_json::from_str(&sse_events(&text)[0].1).unwrap();
                start["message"]["model"].clone()
            } else {
                serde_json::from_str::<Value>(&text).unwrap()["model"].clone()
            };
            assert_eq!(model, asked, "the answer carries the name asked for");
            let received = upstream.last_request().await;
            assert_eq!(received["body"]["model"], upstream_model);
        }
    }
    // An exact alias wins over a pattern that also matches it.
    let exact =
        r#"{"model": "claude", "max_tokens": 16, "messages": [{"role": "user", "content": "Hi"}]}"#;
    messages(&node, exact.to_owned()).send().await.unwrap();
    assert_eq!(
        upstream.last_request().await["body"]["model"],
        UPSTREAM_MODEL
    );
    // Patterns are not model names: the list leaves them out, and what no
    // pattern matches is unknown.
    let models = node.get_v1("/v1/models").await;
    let ids: Vec<&str> = models["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|m| m["id"].as_str())
        .collect();
    assert!(
        ids.contains(&"claude") && !ids.iter().any(|id| id.contains('*')),
        "{ids:?}"
    );
    let unknown = r#"{"model": "gemini-2.5-pro", "max_tokens": 16, "messages": [{"role": "user", "content": "Hi"}]}"#;
    let response = messages(&node, unknown.to_owned()).send().await.unwrap();
    assert_eq!(response.status(), 404);
    // Metrics and the request log name the pattern, never the client's name.
    let metrics = node.metrics().await;
    assert!(metrics.contains("alias=\"claude-*\""), "{metrics}");
    assert!(
        !metrics.contains("claude-opus-4-1-20250805"),
        "labels stay bounded"
    );
}
