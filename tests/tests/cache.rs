//! The response cache as clients meet it: a deterministic request is
//! answered once by the upstream and then from the node's store, marked
//! `x-chorus-cache: hit`; a streaming request gets the cached answer
//! replayed as SSE, and a streamed answer is kept for both kinds of
//! request; `cache-control` and the TTL header steer it; hits cost
//! nothing against a key's limits; answers are not shared across teams.

use std::time::Duration;

use chorus_tests::{scratch_dir, sse_events, standard_config, MockUpstream, Node, TEST_KEY};
use reqwest::Method;
use serde_json::{json, Value};

fn config(upstream: &MockUpstream, store: &std::path::Path) -> String {
    standard_config(upstream)
        + &format!(
            r#"
[storage]
path = "{}"

[[models]]
alias = "always"
cache = "always"
deployments = [{{ provider = "up", model = "gpt-4o-mini", input_per_mtok = 0.15, output_per_mtok = 0.60 }}]

[[models]]
alias = "falls-back"
deployments = [{{ provider = "fault-500", model = "gpt-4o-mini" }}]
max_retries = 0
fallbacks = ["fast"]

[[models]]
alias = "never"
cache = "off"
deployments = [{{ provider = "up", model = "gpt-4o-mini", input_per_mtok = 0.15, output_per_mtok = 0.60 }}]
"#,
            store.display()
        )
}

fn body(model: &str, extra: Value) -> Value {
    let mut body = json!({"model": model,
        "messages": [{"role": "user", "content": "What does a cache keep?"}]});
    if let (Some(body), Some(extra)) = (body.as_object_mut(), extra.as_object()) {
        body.extend(extra.clone());
    }
    body
}

async fn send(node: &Node, key: &str, body: &Value, headers: &[(&str, &str)]) -> reqwest::Response {
    let mut request = reqwest::Client::new()
        .post(node.url("/v1/chat/completions"))
        .bearer_auth(key)
        .json(body);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    request.send().await.expect("chat request")
}

fn cache_header(response: &reqwest::Response) -> String {
    let value = response.headers().get("x-chorus-cache");
    value
        .and_then(|value| value.to_str().ok())
        .unwrap_or("(none)")
        .to_owned()
}

/// `x-chorus-cache` and the body of a request.
async fn ask(node: &Node, body: &Value, headers: &[(&str, &str)]) -> (String, String) {
    let response = send(node, TEST_KEY, body, headers).await;
    assert_eq!(response.status(), 200);
    let cache = cache_header(&response);
    (cache, response.text().await.unwrap())
}

async fn upstream_requests(upstream: &MockUpstream) -> u64 {
    upstream.stats().await["requests"].as_u64().unwrap()
}

/// The content a stream carried, joined, and its chunks.
fn streamed(text: &str) -> (String, Vec<Value>) {
    let events = sse_events(text);
    assert_eq!(events.last().map(|(_, data)| data.as_str()), Some("[DONE]"));
    let chunks: Vec<Value> = events[..events.len() - 1]
        .iter()
        .map(|(kind, data)| {
            assert_eq!(*kind, None, "{data}");
            serde_json::from_str(data).unwrap()
        })
        .collect();
    let content = chunks
        .iter()
        .filter_map(|chunk| chunk["choices"][0]["delta"]["content"].as_str())
        .collect();
    (content, chunks)
}

#[tokio::test]
async fn a_deterministic_answer_is_served_from_the_cache_whole_and_streamed() {
    let upstream = MockUpstream::start(&[]);
    let store = scratch_dir();
    let node = Node::start(&config(&upstream, &store)).await;
    let request = body("fast", json!({"temperature": 0}));

    let (first, answer) = ask(&node, &request, &[]).await;
    assert_eq!(first, "miss");
    let response = send(&node, TEST_KEY, &request, &[]).await;
    assert_eq!(cache_header(&response), "hit");
    assert!(response.headers().get("age").is_some());
    assert_eq!(response.text().await.unwrap(), answer, "the same answer");
    assert_eq!(upstream_requests(&upstream).await, 1, "one upstream call");

    // The same request, streamed: the cached answer replayed as chunks,
    // usage only when asked for.
    let mut streaming = request.clone();
    streaming["stream"] = json!(true);
    let (cache, text) = ask(&node, &streaming, &[]).await;
    assert_eq!(cache, "hit");
    let (content, chunks) = streamed(&text);
    let whole: Value = serde_json::from_str(&answer).unwrap();
    assert_eq!(content, whole["choices"][0]["message"]["content"]);
    assert!(chunks.iter().all(|chunk| chunk["model"] == "fast"));
    assert!(chunks.iter().all(|chunk| chunk.get("usage").is_none()));
    assert_eq!(
        chunks.last().unwrap()["choices"][0]["finish_reason"],
        "stop"
    );
    streaming["stream_options"] = json!({"include_usage": true});
    let (_, text) = ask(&node, &streaming, &[]).await;
    let (_, chunks) = streamed(&text);
    assert_eq!(chunks.last().unwrap()["usage"], whole["usage"]);
    assert_eq!(upstream_requests(&upstream).await, 1);

    // An answer that could differ is not cached; a changed parameter is
    // another request.
    for request in [
        body("fast", json!({})),
        body("fast", json!({"temperature": 0, "max_tokens": 3})),
    ] {
        let (cache, _) = ask(&node, &request, &[]).await;
        assert_eq!(cache, "miss");
    }
    let (cache, _) = ask(&node, &body("fast", json!({})), &[]).await;
    assert_eq!(cache, "miss");
    assert_eq!(upstream_requests(&upstream).await, 4);

    let metrics = node.metrics().await;
    for line in [
        "chorus_cache_lookups_total{alias=\"fast\",result=\"hit\"} 3",
        "chorus_cache_lookups_total{alias=\"fast\",result=\"miss\"} 2",
        "chorus_requests_total{alias=\"fast\",deployment=\"\",outcome=\"cached\",status=\"200\"} 3",
    ] {
        assert!(metrics.contains(line), "no `{line}` in\n{metrics}");
    }
}

#[tokio::test]
async fn a_streamed_answer_is_kept_for_both_kinds_of_request_and_survives_a_restart() {
    let upstream = MockUpstream::start(&[]);
    let store = scratch_dir();
    let config = config(&upstream, &store);
    let mut node = Node::start(&config).await;
    let request = body("fast", json!({"seed": 42, "stream": true}));

    let (cache, text) = ask(&node, &request, &[]).await;
    assert_eq!(cache, "miss");
    let (content, chunks) = streamed(&text);
    assert!(
        chunks
            .iter()
            .all(|chunk| chunk["choices"].as_array().is_some_and(|c| !c.is_empty())),
        "the usage chunk the cache asked for is not the client's: {text}"
    );
    let sent = upstream.last_request().await;
    assert_eq!(sent["body"]["stream_options"]["include_usage"], true);

    // The whole answer, assembled from the stream, for a request that does
    // not stream: the same content and the upstream's usage.
    let mut whole_request = request.clone();
    whole_request["stream"] = json!(false);
    let (cache, answer) = ask(&node, &whole_request, &[]).await;
    assert_eq!(cache, "hit");
    let whole: Value = serde_json::from_str(&answer).unwrap();
    assert_eq!(whole["object"], "chat.completion");
    assert_eq!(whole["choices"][0]["message"]["content"], content.as_str());
    assert!(
        whole["usage"]["completion_tokens"].as_u64().unwrap() > 0,
        "{whole}"
    );
    assert_eq!(upstream_requests(&upstream).await, 1);

    node.kill();
    let node = Node::start(&config).await;
    let (cache, again) = ask(&node, &whole_request, &[]).await;
    assert_eq!(cache, "hit", "the cache is on disk");
    assert_eq!(again, answer);
    assert_eq!(upstream_requests(&upstream).await, 1);
}

#[tokio::test]
async fn requests_steer_the_cache_and_aliases_set_its_policy() {
    let upstream = MockUpstream::start(&[]);
    let store = scratch_dir();
    let node = Node::start(&config(&upstream, &store)).await;
    let deterministic = body("fast", json!({"temperature": 0}));

    // no-store: answered, not kept.
    let (cache, _) = ask(&node, &deterministic, &[("cache-control", "no-store")]).await;
    assert_eq!(cache, "miss");
    let (cache, _) = ask(&node, &deterministic, &[]).await;
    assert_eq!(cache, "miss", "nothing was stored");
    let (cache, _) = ask(&node, &deterministic, &[]).await;
    assert_eq!(cache, "hit");
    // no-cache: a fresh answer even though one is stored.
    let before = upstream_requests(&upstream).await;
    let (cache, _) = ask(&node, &deterministic, &[("cache-control", "no-cache")]).await;
    assert_eq!(cache, "miss");
    assert_eq!(upstream_requests(&upstream).await, before + 1);
    // max-age=0: only an answer stored this very second will do.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (cache, _) = ask(&node, &deterministic, &[("cache-control", "max-age=0")]).await;
    assert_eq!(cache, "miss");

    // The TTL header opts an answer that could differ in, for that long.
    let sampled = body("fast", json!({"temperature": 0.9}));
    let ttl = [("x-chorus-cache-ttl", "1")];
    assert_eq!(ask(&node, &sampled, &ttl).await.0, "miss");
    assert_eq!(ask(&node, &sampled, &ttl).await.0, "hit");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(ask(&node, &sampled, &ttl).await.0, "miss", "expired");

    let refused = send(&node, TEST_KEY, &sampled, &[("x-chorus-cache-ttl", "soon")]).await;
    assert_eq!(refused.status(), 400);
    assert_eq!(cache_header(&refused), "miss");
    let error: Value = refused.json().await.unwrap();
    assert_eq!(error["error"]["code"], "invalid_cache_header", "{error}");

    // `always` caches what could differ; `off` never caches.
    let always = body("always", json!({"temperature": 1}));
    assert_eq!(ask(&node, &always, &[]).await.0, "miss");
    assert_eq!(ask(&node, &always, &[]).await.0, "hit");
    let never = body("never", json!({"temperature": 0}));
    assert_eq!(ask(&node, &never, &ttl).await.0, "miss");
    assert_eq!(ask(&node, &never, &ttl).await.0, "miss");
}

#[tokio::test]
async fn hits_cost_nothing_against_limits_and_stay_within_a_team() {
    let upstream = MockUpstream::start(&[]);
    let store = scratch_dir();
    let node = Node::start(&config(&upstream, &store)).await;
    for team in ["red", "blue"] {
        let (status, created) = node
            .admin(Method::POST, "/admin/teams", Some(json!({"name": team})))
            .await;
        assert_eq!(status, 201, "{created}");
    }
    let red = node
        .create_key(json!({"name": "red-1", "team": "red", "rpm": 1}))
        .await;
    let red_too = node
        .create_key(json!({"name": "red-2", "team": "red"}))
        .await;
    let blue = node
        .create_key(json!({"name": "blue-1", "team": "blue"}))
        .await;
    let request = body("fast", json!({"temperature": 0}));

    let first = send(&node, &red, &request, &[]).await;
    assert_eq!(
        (first.status().as_u16(), cache_header(&first).as_str()),
        (200, "miss")
    );
    // The key's one request a minute is spent: a hit is still served.
    let hit = send(&node, &red, &request, &[]).await;
    assert_eq!(
        (hit.status().as_u16(), cache_header(&hit).as_str()),
        (200, "hit")
    );
    let other = body("fast", json!({"temperature": 0, "max_tokens": 2}));
    assert_eq!(send(&node, &red, &other, &[]).await.status(), 429);

    let teammate = send(&node, &red_too, &request, &[]).await;
    assert_eq!(cache_header(&teammate), "hit", "the team shares answers");
    let stranger = send(&node, &blue, &request, &[]).await;
    assert_eq!(cache_header(&stranger), "miss", "another team does not");
    assert_eq!(upstream_requests(&upstream).await, 2);
}

#[tokio::test]
async fn anthropic_clients_get_cached_answers_in_their_own_format() {
    let upstream = MockUpstream::start(&[]);
    let store = scratch_dir();
    let node = Node::start(&config(&upstream, &store)).await;
    let message = |stream: bool| {
        json!({"model": "fast", "max_tokens": 40, "temperature": 0, "stream": stream,
            "messages": [{"role": "user", "content": "Say something cached."}]})
    };
    let post = |body: Value| {
        reqwest::Client::new()
            .post(node.url("/v1/messages"))
            .header("x-api-key", TEST_KEY)
            .json(&body)
            .send()
    };
    let first = post(message(false)).await.unwrap();
    assert_eq!(cache_header(&first), "miss");
    let first: Value = first.json().await.unwrap();
    let again = post(message(false)).await.unwrap();
    assert_eq!(cache_header(&again), "hit");
    let again: Value = again.json().await.unwrap();
    assert_eq!(again["content"], first["content"]);
    assert_eq!(again["type"], "message");

    let streamed = post(message(true)).await.unwrap();
    assert_eq!(cache_header(&streamed), "hit");
    let events = sse_events(&streamed.text().await.unwrap());
    let kinds: Vec<&str> = events
        .iter()
        .filter_map(|(kind, _)| kind.as_deref())
        .collect();
    assert_eq!(kinds.first(), Some(&"message_start"));
    assert_eq!(kinds.last(), Some(&"message_stop"));
    let text: String = events
        .iter()
        .filter(|(kind, _)| kind.as_deref() == Some("content_block_delta"))
        .map(|(_, data)| {
            serde_json::from_str::<Value>(data).unwrap()["delta"]["text"]
                .as_str()
                .unwrap_or("")
                .to_owned()
        })
        .collect();
    assert_eq!(text, first["content"][0]["text"].as_str().unwrap());
    assert_eq!(upstream_requests(&upstream).await, 1);
}

#[tokio::test]
async fn only_the_alias_own_finished_answers_are_kept() {
    let upstream = MockUpstream::start(&[]);
    let store = scratch_dir();
    let node = Node::start(&config(&upstream, &store)).await;

    // A fallback's answer is not the alias's.
    let fell_back = body("falls-back", json!({"temperature": 0}));
    for _ in 0..2 {
        let (cache, answer) = ask(&node, &fell_back, &[]).await;
        assert_eq!(cache, "miss", "{answer}");
    }
    // A stream that broke, or carried an error, is no answer.
    for alias in ["fault-cut", "fault-error-event"] {
        let broken = body(alias, json!({"temperature": 0, "stream": true}));
        for _ in 0..2 {
            let (cache, text) = ask(&node, &broken, &[]).await;
            assert_eq!(cache, "miss", "{alias}");
            assert!(text.contains("event: error"), "{alias}: {text}");
        }
    }
    // An upstream that is never asked for stream usage is not asked for
    // the cache's sake either; its answer is kept all the same.
    let no_usage = body("no-usage", json!({"temperature": 0, "stream": true}));
    let (cache, _) = ask(&node, &no_usage, &[]).await;
    assert_eq!(cache, "miss");
    let sent = upstream.last_request().await;
    assert!(sent["body"].get("stream_options").is_none(), "{sent}");
    let (cache, _) = ask(&node, &no_usage, &[]).await;
    assert_eq!(cache, "hit");
}

#[tokio::test]
async fn a_shared_cache_answers_every_team() {
    let upstream = MockUpstream::start(&[]);
    let store = scratch_dir();
    let node = Node::start(&(config(&upstream, &store) + "\n[cache]\nshared = true\n")).await;
    let (status, team) = node
        .admin(Method::POST, "/admin/teams", Some(json!({"name": "green"})))
        .await;
    assert_eq!(status, 201, "{team}");
    let green = node
        .create_key(json!({"name": "green-1", "team": "green"}))
        .await;
    let request = body("fast", json!({"temperature": 0}));
    assert_eq!(
        cache_header(&send(&node, TEST_KEY, &request, &[]).await),
        "miss"
    );
    let other_team = send(&node, &green, &request, &[]).await;
    assert_eq!(cache_header(&other_team), "hit", "shared across teams");
    assert_eq!(upstream_requests(&upstream).await, 1);
}
