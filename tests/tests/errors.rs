//! Bad input gets an OpenAI error object with the right status, never a
//! panic, a hang or a gateway 500.

use chorus_tests::{chat_body, standard_config, MockUpstream, Node, TEST_KEY};
use serde_json::Value;

/// Checks the OpenAI error shape and returns the error object.
async fn error_of(response: reqwest::Response, status: u16) -> Value {
    assert_eq!(response.status(), status);
    assert_eq!(response.headers()["content-type"], "application/json");
    let body: Value = response.json().await.unwrap();
    let error = body["error"].clone();
    assert!(
        error["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{body}"
    );
    assert!(error["type"].is_string(), "{body}");
    assert!(
        error.get("param").is_some() && error.get("code").is_some(),
        "{body}"
    );
    error
}

fn post_raw(node: &Node, body: impl Into<reqwest::Body>) -> reqwest::RequestBuilder {
    reqwest::Client::new()
        .post(node.url("/v1/chat/completions"))
        .bearer_auth(TEST_KEY)
        .header("content-type", "application/json")
        .body(body)
}

#[tokio::test]
async fn malformed_bodies_are_400_naming_the_parameter() {
    let upstream = MockUpstream::start(&[]);
    let node = Node::start(&standard_config(&upstream)).await;
    let cases: [(&[u8], Option<&str>); 6] = [
        (b"{\"model\": \"fast\", ", None),
        (b"\xff\xfe\x00garbage", None),
        (
            b"{\"messages\": [{\"role\": \"user\", \"content\": \"x\"}]}",
            Some("model"),
        ),
        (b"{\"model\": \"fast\"}", Some("messages")),
        (
            b"{\"model\": \"fast\", \"messages\": \"hello\"}",
            Some("messages"),
        ),
        (
            b"{\"model\": \"fast\", \"messages\": [{\"role\": \"user\"}], \"stream\": 1}",
            Some("stream"),
        ),
    ];
    for (body, param) in cases {
        let error = error_of(post_raw(&node, body.to_vec()).send().await.unwrap(), 400).await;
        assert_eq!(error["type"], "invalid_request_error");
        assert_eq!(error["param"].as_str(), param, "{error}");
    }
}

#[tokio::test]
async fn missing_or_unknown_keys_are_401_without_echoing_the_key() {
    let upstream = MockUpstream::start(&[]);
    let node = Node::start(&standard_config(&upstream)).await;
    let client = reqwest::Client::new();
    let missing = client
        .post(node.url("/v1/chat/completions"))
        .json(&chat_body("fast", false));
    let error = error_of(missing.send().await.unwrap(), 401).await;
    assert_eq!(error["code"], "missing_api_key");
    let wrong = client
        .post(node.url("/v1/chat/completions"))
        .bearer_auth("sk-not-a-real-key-555")
        .json(&chat_body("fast", false));
    let error = error_of(wrong.send().await.unwrap(), 401).await;
    assert_eq!(error["code"], "invalid_api_key");
    assert!(!error.to_string().contains("sk-not-a-real-key-555"));
    assert_eq!(
        upstream.stats().await["requests"],
        0,
        "nothing went upstream"
    );
}

#[tokio::test]
async fn unknown_models_are_404() {
    let upstream = MockUpstream::start(&[]);
    let node = Node::start(&standard_config(&upstream)).await;
    let error = error_of(
        node.chat(&chat_body("gpt-9", false)).send().await.unwrap(),
        404,
    )
    .await;
    assert_eq!(error["code"], "model_not_found");
    assert_eq!(error["param"], "model");
    assert!(error["message"].as_str().unwrap().contains("`gpt-9`"));
}

#[tokio::test]
async fn bodies_over_the_limit_are_413_with_or_without_content_length() {
    let upstream = MockUpstream::start(&[]);
    let node = Node::start(&standard_config(&upstream)).await;
    // The test config sets max_body_bytes = 65536.
    let big = format!(
        "{{\"model\":\"fast\",\"messages\":[{{\"role\":\"user\",\"content\":\"{}\"}}]}}",
        "x".repeat(70_000)
    );
    let error = error_of(post_raw(&node, big.clone()).send().await.unwrap(), 413).await;
    assert_eq!(error["code"], "request_too_large");
    // Chunked upload: no content-length to refuse early on.
    let chunks = futures::stream::iter(
        big.into_bytes()
            .chunks(8192)
            .map(|c| Ok::<_, std::io::Error>(c.to_vec()))
            .collect::<Vec<_>>(),
    );
    let response = post_raw(&node, reqwest::Body::wrap_stream(chunks))
        .send()
        .await
        .unwrap();
    error_of(response, 413).await;
    // Just under the limit is fine.
    let fits = format!(
        "{{\"model\":\"fast\",\"messages\":[{{\"role\":\"user\",\"content\":\"{}\"}}]}}",
        "x".repeat(60_000)
    );
    assert_eq!(post_raw(&node, fits).send().await.unwrap().status(), 200);
}

#[tokio::test]
async fn unknown_routes_and_methods_get_error_objects() {
    let upstream = MockUpstream::start(&[]);
    let node = Node::start(&standard_config(&upstream)).await;
    let client = reqwest::Client::new();
    error_of(client.get(node.url("/v1/nope")).send().await.unwrap(), 404).await;
    error_of(
        client
            .get(node.url("/v1/chat/completions"))
            .send()
            .await
            .unwrap(),
        405,
    )
    .await;
}

#[tokio::test]
async fn the_node_survives_a_burst_of_bad_requests() {
    let upstream = MockUpstream::start(&[]);
    let node = Node::start(&standard_config(&upstream)).await;
    let bodies: Vec<Vec<u8>> = vec![
        vec![],
        b"null".to_vec(),
        b"[]".to_vec(),
        b"{\"model\":null,\"messages\":null}".to_vec(),
        b"{\"model\":\"fast\",\"messages\":[{\"role\":\"user\"}],\"stream_options\":7}".to_vec(),
        (0..=255u8).collect(),
        b"{\"model\":\"fast\",\"messages\":[{\"role\":\"user\",\"content\":\"\\ud800\"}]}".to_vec(),
    ];
    for body in bodies {
        let status = post_raw(&node, body)
            .send()
            .await
            .unwrap()
            .status()
            .as_u16();
        assert!((400..500).contains(&status), "got {status}");
    }
    let ok = node.chat(&chat_body("fast", false)).send().await.unwrap();
    assert_eq!(ok.status(), 200);
}
