//! The OpenAI-compatible surface end to end: pass-through of bodies, the
//! alias in responses, streaming, request ids, models and health endpoints.

use std::time::Duration;

use chorus_tests::{
    chat_body, sse_events, standard_config, MockUpstream, Node, TEST_KEY, UPSTREAM_KEY,
};
use serde_json::{json, Value};

#[tokio::test]
async fn request_reaches_upstream_unchanged_except_model_and_response_carries_alias() {
    let upstream = MockUpstream::start(&[]);
    let node = Node::start(&standard_config(&upstream)).await;
    let body = json!({
        "model": "fast",
        "messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}],
        "tools": [{"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}],
        "tool_choice": "none",
        "response_format": {"type": "json_object"},
        "logprobs": true,
        "seed": 42,
        "temperature": 0.2,
        "x_vendor_extension": {"nested": [1, 2, 3]}
    });
    let response = node.chat(&body).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/json");
    let completion: Value = response.json().await.unwrap();
    assert_eq!(completion["model"], "fast");
    assert_eq!(completion["object"], "chat.completion");
    assert_eq!(completion["usage"]["completion_tokens"], 16);

    let last = upstream.last_request().await;
    let mut expected = body.clone();
    expected["model"] = json!("gpt-4o-mini");
    assert_eq!(last["body"], expected);
    assert_eq!(last["authorization"], format!("Bearer {UPSTREAM_KEY}"));
}

#[tokio::test]
async fn the_overhead_header_counts_the_gateway_not_the_upstream() {
    let upstream = MockUpstream::start(&[]);
    let node = Node::start(&standard_config(&upstream)).await;
    let started = std::time::Instant::now();
    let response = node.chat(&chat_body("laggy", false)).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert!(started.elapsed() >= Duration::from_millis(300));
    let overhead: f64 = response.headers()["x-chorus-overhead-ms"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        (0.0..100.0).contains(&overhead),
        "the upstream's 300 ms are not the gateway's: {overhead} ms"
    );
}

#[tokio::test]
async fn the_response_is_the_upstream_response_except_model() {
    let upstream = MockUpstream::start(&[]);
    let node = Node::start(&standard_config(&upstream)).await;
    let mut direct_body = chat_body("gpt-4o-mini", false);
    let direct: Value = reqwest::Client::new()
        .post(format!("{}/chat/completions", upstream.base_url()))
        .json(&direct_body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    direct_body["model"] = json!("fast");
    let through: Value = node.chat_json(&direct_body).await;
    let mut expected = direct;
    expected["model"] = json!("fast");
    expected["created"] = through["created"].clone();
    assert_eq!(through, expected);
}

#[tokio::test]
async fn streams_chunks_with_usage_and_done() {
    let upstream = MockUpstream::start(&[]);
    let node = Node::start(&standard_config(&upstream)).await;
    let mut body = chat_body("fast", true);
    body["stream_options"] = json!({"include_usage": true});
    let response = node.chat(&body).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let text = response.text().await.unwrap();
    let events = sse_events(&text);
    assert_eq!(events.last().unwrap().1, "[DONE]");
    let chunks: Vec<Value> = events[..events.len() - 1]
        .iter()
        .map(|(kind, data)| {
            assert!(kind.is_none(), "unexpected event type in {text}");
            serde_json::from_str(data).unwrap()
        })
        .collect();
    assert!(chunks.iter().all(|chunk| chunk["model"] == "fast"));
    let content: String = chunks
        .iter()
        .filter_map(|chunk| chunk["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(content.split_whitespace().count(), 16);
    let usage = &chunks.last().unwrap()["usage"];
    assert_eq!(usage["completion_tokens"], 16);
    assert_eq!(
        chunks[chunks.len() - 2]["choices"][0]["finish_reason"],
        "stop"
    );

    // Without include_usage the client gets no usage chunk, as from OpenAI.
    let text = node.chat_text(&chat_body("fast", true)).await;
    assert!(!text.contains("\"usage\""), "{text}");
    assert!(text.ends_with("data: [DONE]\n\n"));
}

#[tokio::test]
async fn chunks_are_forwarded_as_they_arrive() {
    let upstream = MockUpstream::start(&[]);
    let node = Node::start(&standard_config(&upstream)).await;
    // `slow` streams 20 tokens 100 ms apart: about 2.1 s in all.
    let started = std::time::Instant::now();
    let mut response = node.chat(&chat_body("slow", true)).send().await.unwrap();
    let first = response.chunk().await.unwrap().unwrap();
    let first_at = started.elapsed();
    assert!(String::from_utf8_lossy(&first).starts_with("data: "));
    assert!(
        first_at < Duration::from_millis(900),
        "first chunk after {first_at:?}: buffered?"
    );
    let mut frames = 1;
    while let Some(chunk) = response.chunk().await.unwrap() {
        frames += String::from_utf8_lossy(&chunk).matches("data: ").count();
    }
    assert!(started.elapsed() >= Duration::from_millis(1900));
    assert_eq!(frames, 20 + 3);
}

#[tokio::test]
async fn request_ids_are_echoed_or_generated() {
    let upstream = MockUpstream::start(&[]);
    let node = Node::start(&standard_config(&upstream)).await;
    let response = node
        .chat(&chat_body("fast", false))
        .header("x-request-id", "client-chosen-id-1")
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["x-request-id"], "client-chosen-id-1");

    let generated = node.chat(&chat_body("fast", false)).send().await.unwrap();
    let id = generated.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    assert_eq!(id.len(), 36, "expected a UUID, got {id}");

    // Errors carry one too.
    let unauthorized = reqwest::Client::new()
        .post(node.url("/v1/chat/completions"))
        .json(&chat_body("fast", false))
        .send()
        .await
        .unwrap();
    assert_eq!(unauthorized.status(), 401);
    assert!(unauthorized.headers().contains_key("x-request-id"));
}

#[tokio::test]
async fn models_lists_aliases_and_needs_a_key() {
    let upstream = MockUpstream::start(&[]);
    let node = Node::start(&standard_config(&upstream)).await;
    let client = reqwest::Client::new();
    let listed: Value = client
        .get(node.url("/v1/models"))
        .bearer_auth(TEST_KEY)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(listed["object"], "list");
    let ids: Vec<&str> = listed["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(&ids[..5], ["fast", "no-usage", "slow", "laggy", "demo"]);
    assert!(ids.contains(&"fault-500"));
    let response = client.get(node.url("/v1/models")).send().await.unwrap();
    assert_eq!(response.status(), 401);
}

#[tokio::test]
async fn health_endpoints_need_no_key_and_show_deployment_figures() {
    let upstream = MockUpstream::start(&[]);
    let node = Node::start(&standard_config(&upstream)).await;
    for path in ["/health/live", "/health/ready", "/v1/health"] {
        let response = reqwest::get(node.url(path)).await.unwrap();
        assert_eq!(response.status(), 200, "{path}");
    }
    node.chat(&chat_body("fast", false)).send().await.unwrap();
    let health = node
        .wait_for_deployment("up/gpt-4o-mini", |d| d["finished"] == 1)
        .await;
    assert_eq!(health["in_flight"], 0);
    assert_eq!(health["running"], true);
    assert!(health["latency_ms"].as_f64().unwrap() > 0.0);
}

#[tokio::test]
async fn the_builtin_mock_provider_completes_and_streams() {
    let upstream = MockUpstream::start(&[]);
    let node = Node::start(&standard_config(&upstream)).await;
    let completion: Value = node.chat_json(&chat_body("demo", false)).await;
    assert_eq!(completion["model"], "demo");
    assert_eq!(completion["usage"]["completion_tokens"], 8);
    let again: Value = node.chat_json(&chat_body("demo", false)).await;
    assert_eq!(
        completion["choices"][0]["message"]["content"], again["choices"][0]["message"]["content"],
        "the mock is deterministic"
    );
    let mut body = chat_body("demo", true);
    body["max_tokens"] = json!(3);
    let text = node.chat_text(&body).await;
    let events = sse_events(&text);
    assert_eq!(events.len(), 3 + 2 + 1);
    assert_eq!(events.last().unwrap().1, "[DONE]");
}

#[tokio::test]
async fn a_stream_passes_every_byte_but_the_model() {
    let upstream = MockUpstream::start(&[]);
    let config = standard_config(&upstream)
        + &format!(
            "\n[[providers]]\nname = \"extras\"\nformat = \"openai\"\nbase_url = \"{}\"\n\
             headers = {{ \"x-mock-sse-extras\" = \"1\" }}\n\
             [[models]]\nalias = \"extras\"\ndeployments = [{{ provider = \"extras\", model = \"gpt-4o-mini\" }}]\n",
            upstream.base_url()
        );
    let node = Node::start(&config).await;
    let mut request = chat_body("extras", true);
    request["stream_options"] = json!({"include_usage": true});
    let body = node.chat_text(&request).await;
    // What the upstream sent, with only the model changed.
    assert!(
        body.starts_with(
            "id: 0\ndata: {\"x_big\":123456789012345678901234567890,\"id\":\"chatcmpl-mock"
        ),
        "{body}"
    );
    assert!(
        body.contains(
            "\n\n: keep-alive\n\nid: 2\ndata: {\"x_big\":123456789012345678901234567890,"
        ),
        "{body}"
    );
    assert!(body.contains("\"model\":\"extras\""), "{body}");
    assert!(!body.contains("gpt-4o-mini"), "{body}");
    assert!(body.ends_with("\n\ndata: [DONE]\n\n"), "{body}");
}
