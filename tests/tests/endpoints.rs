//! The rest of the OpenAI surface: `POST /v1/embeddings` and the legacy
//! `POST /v1/completions`, through the same aliases, limits and budgets as
//! chat: to an OpenAI-format upstream and to the built-in mock, `model`
//! rewritten both ways, usage counted (and hidden from a stream that did
//! not ask), tokens held to a key's `tpm` and cost to its budget.

use chorus_tests::{sse_events, standard_config, MockUpstream, Node, TEST_KEY};
use serde_json::{json, Value};

fn config(upstream: &MockUpstream) -> String {
    let base_url = upstream.base_url();
    standard_config(upstream)
        + &format!(
            r#"
[[providers]]
name = "claude"
format = "anthropic"
base_url = "{base_url}"

[[models]]
alias = "embed"
deployments = [{{ provider = "up", model = "text-embedding-3-small", input_per_mtok = 20 }}]

[[models]]
alias = "embed-builtin"
deployments = [{{ provider = "builtin", model = "mock-embed" }}]

[[models]]
alias = "instruct"
deployments = [{{ provider = "up", model = "gpt-3.5-turbo-instruct" }}]

[[models]]
alias = "claude"
deployments = [{{ provider = "claude", model = "claude-sonnet-4-5" }}]

[[models]]
alias = "mixed"
strategy = "round-robin"
deployments = [{{ provider = "claude", model = "claude-sonnet-4-5" }}, {{ provider = "up", model = "text-embedding-3-small", input_per_mtok = 20 }}]
"#
        )
}

async fn post(node: &Node, path: &str, key: &str, body: &Value) -> reqwest::Response {
    reqwest::Client::new()
        .post(node.url(path))
        .bearer_auth(key)
        .json(body)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn embeddings_reach_the_upstream_and_come_back_under_the_alias() {
    let upstream = MockUpstream::start(&[]);
    let node = Node::start(&config(&upstream)).await;
    for alias in ["embed", "embed-builtin"] {
        let request = json!({"model": alias, "input": ["first text", "second"], "dimensions": 4});
        let response = post(&node, "/v1/embeddings", TEST_KEY, &request).await;
        assert_eq!(response.status(), 200, "{alias}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["model"], alias);
        assert_eq!(body["object"], "list");
        let data = body["data"].as_array().unwrap();
        assert_eq!(data.len(), 2);
        assert_eq!(data[1]["index"], 1);
        assert_eq!(data[0]["embedding"].as_array().unwrap().len(), 4);
        assert!(body["usage"]["prompt_tokens"].as_u64().unwrap() > 0);
    }
    let sent = upstream.last_request().await;
    assert_eq!(sent["body"]["model"], "text-embedding-3-small");
    assert_eq!(sent["body"]["dimensions"], 4, "other fields pass through");
    let counted = node
        .wait_for_deployment("up/text-embedding-3-small", |d| d["finished"] == 1)
        .await;
    assert_eq!(counted["errors"], 0);
}

#[tokio::test]
async fn embeddings_are_held_to_tpm_and_charged_to_the_budget() {
    let upstream = MockUpstream::start(&[]);
    let node = Node::start(&config(&upstream)).await;
    // Each request: 200 characters, about 50 tokens.
    let request = json!({"model": "embed", "input": "x".repeat(200)});
    let limited = node.create_key(json!({"name": "tpm", "tpm": 120})).await;
    let mut statuses = Vec::new();
    for _ in 0..4 {
        statuses.push(
            post(&node, "/v1/embeddings", &limited, &request)
                .await
                .status()
                .as_u16(),
        );
    }
    assert_eq!(statuses[..2], [200, 200], "{statuses:?}");
    assert_eq!(statuses[3], 429, "{statuses:?}");
    // USD 0.02 per thousand tokens: about USD 0.001 a request.
    let budgeted = node
        .create_key(json!({"name": "budget", "budget_daily_usd": 0.0035}))
        .await;
    let mut admitted = 0;
    while post(&node, "/v1/embeddings", &budgeted, &request)
        .await
        .status()
        == 200
    {
        admitted += 1;
        assert!(admitted < 10, "the budget never ran out");
    }
    assert!((2..=4).contains(&admitted), "{admitted} admitted");
}

#[tokio::test]
async fn legacy_completions_pass_through_streamed_or_not() {
    let upstream = MockUpstream::start(&[]);
    let node = Node::start(&config(&upstream)).await;
    let request = json!({"model": "instruct", "prompt": "Once upon a time", "max_tokens": 5});
    let whole: Value = post(&node, "/v1/completions", TEST_KEY, &request)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(whole["object"], "text_completion");
    assert_eq!(whole["model"], "instruct");
    assert_eq!(whole["usage"]["completion_tokens"], 5);
    let text = whole["choices"][0]["text"].as_str().unwrap().to_owned();
    assert_eq!(
        upstream.last_request().await["body"]["model"],
        "gpt-3.5-turbo-instruct"
    );

    let mut streamed = request.clone();
    streamed["stream"] = json!(true);
    let body = post(&node, "/v1/completions", TEST_KEY, &streamed)
        .await
        .text()
        .await
        .unwrap();
    let events = sse_events(&body);
    assert_eq!(events.last().unwrap().1, "[DONE]");
    let chunks: Vec<Value> = events[..events.len() - 1]
        .iter()
        .map(|(_, data)| serde_json::from_str(data).unwrap())
        .collect();
    let joined: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["text"].as_str())
        .collect();
    assert_eq!(joined, text);
    assert!(
        chunks
            .iter()
            .all(|c| c["model"] == "instruct" && c.get("usage").is_none()),
        "{body}"
    );
    // Usage was asked of the upstream all the same, and counted.
    assert_eq!(
        upstream.last_request().await["body"]["stream_options"]["include_usage"],
        true
    );
    node.wait_for_deployment("up/gpt-3.5-turbo-instruct", |d| d["finished"] == 2)
        .await;
}

#[tokio::test]
async fn what_an_endpoint_cannot_take_is_a_400() {
    let upstream = MockUpstream::start(&[]);
    let node = Node::start(&config(&upstream)).await;
    let cases = [
        (
            "/v1/embeddings",
            json!({"model": "embed", "input": "x", "stream": true}),
            "stream",
        ),
        ("/v1/embeddings", json!({"model": "embed"}), "input"),
        (
            "/v1/completions",
            json!({"model": "instruct", "messages": []}),
            "prompt",
        ),
        (
            "/v1/embeddings",
            json!({"model": "claude", "input": "x"}),
            "model",
        ),
    ];
    for (path, body, param) in cases {
        let response = post(&node, path, TEST_KEY, &body).await;
        assert_eq!(response.status(), 400, "{body}");
        let error: Value = response.json().await.unwrap();
        assert_eq!(error["error"]["param"], param, "{error}");
    }
    // An alias with an Anthropic deployment among others: embeddings go
    // to the others, every time.
    for _ in 0..3 {
        let response = post(
            &node,
            "/v1/embeddings",
            TEST_KEY,
            &json!({"model": "mixed", "input": "x"}),
        )
        .await;
        assert_eq!(response.status(), 200);
        assert_eq!(
            response.headers()["x-chorus-deployment"],
            "up/text-embedding-3-small"
        );
    }
    let only_claude = post(
        &node,
        "/v1/embeddings",
        TEST_KEY,
        &json!({"model": "claude", "input": "x"}),
    )
    .await;
    let error: Value = only_claude.json().await.unwrap();
    assert_eq!(error["error"]["code"], "unsupported_endpoint", "{error}");
    // Nothing was sent upstream, and the message says so.
    let two = json!({"model": "claude", "n": 2, "messages": [{"role": "user", "content": "x"}]});
    let error: Value = post(&node, "/v1/chat/completions", TEST_KEY, &two)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(error["error"]["param"], "n", "{error}");
    let message = error["error"]["message"].as_str().unwrap();
    assert!(
        message.starts_with("deployment `claude/claude-sonnet-4-5` cannot take this request"),
        "{message}"
    );
    assert_eq!(
        upstream.stats().await["requests"],
        3,
        "the three embeddings of `mixed`"
    );
}
