//! Stored responses and conversations, cluster-wide: a response stored
//! through one node is continued through another after the first is
//! SIGKILLed, read from a node that holds no copy, and gone everywhere
//! once deleted; a conversation gathers the turns made through every
//! node; and only the key that made an item ever sees it.

use std::time::Duration;

use chorus_tests::{cluster_configs, scratch_dir, MockUpstream, Node, TEST_KEY};
use reqwest::Method;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

const SECRET: &str = "stored-responses-secret-0123456789";
const IDS: [&str; 3] = ["a", "b", "c"];

/// A chat-only upstream behind alias `chat`, so the thread reaches it
/// translated and what it received shows what the gateway read back; and
/// `native`, which speaks the Responses API and would take any id it is
/// passed.
fn extra(upstream: &MockUpstream) -> String {
    format!(
        r#"
[[providers]]
name = "up"
format = "openai"
base_url = "{0}"

[[providers]]
name = "native"
format = "openai"
responses = true
base_url = "{0}"

[[models]]
alias = "chat"
deployments = [{{ provider = "up", model = "gpt-5-chat" }}]

[[models]]
alias = "native"
deployments = [{{ provider = "native", model = "gpt-5" }}]
"#,
        upstream.base_url()
    )
}

/// The nodes holding `place`'s copies first: rendezvous ranking as in
/// `node/src/stored/placement.rs`, which the test must agree with to know
/// which node to kill.
fn ranked(place: &str, ids: &[&str]) -> Vec<String> {
    let weight = |id: &str| {
        let mut hash = Sha256::new();
        hash.update((place.len() as u64).to_be_bytes());
        hash.update(place.as_bytes());
        hash.update(id.as_bytes());
        <[u8; 32]>::from(hash.finalize())
    };
    let mut ids: Vec<&str> = ids.to_vec();
    ids.sort_by_key(|id| std::cmp::Reverse(weight(id)));
    ids.into_iter().map(str::to_owned).collect()
}

async fn call(
    node: &Node,
    method: Method,
    path: &str,
    key: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut request = reqwest::Client::new()
        .request(method, node.url(path))
        .bearer_auth(key)
        .timeout(Duration::from_secs(20));
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or_default())
}

async fn respond(node: &Node, body: Value) -> Value {
    let (status, answer) = call(node, Method::POST, "/v1/responses", TEST_KEY, Some(body)).await;
    assert_eq!(status, 200, "{answer}");
    answer
}

/// The status and error code of a `POST /v1/responses` of `body` through
/// `node` with `key`.
async fn refusal(node: &Node, key: &str, body: Value) -> (u16, Value) {
    let (status, error) = call(node, Method::POST, "/v1/responses", key, Some(body)).await;
    (status, error["error"]["code"].clone())
}

/// The text of every message the upstream received last, in order.
async fn received(upstream: &MockUpstream) -> Vec<String> {
    let request = upstream.last_request().await;
    request["body"]["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|message| message["content"].as_str().unwrap_or_default().to_owned())
        .collect()
}

fn output_text(response: &Value) -> String {
    response["output"][0]["content"][0]["text"]
        .as_str()
        .unwrap()
        .to_owned()
}

async fn start(upstream: &MockUpstream, data: &std::path::Path) -> Vec<Node> {
    let (configs, _) = cluster_configs(&IDS, SECRET, data, "");
    let mut nodes = Vec::new();
    for config in configs {
        nodes.push(Node::start(&(config + &extra(upstream))).await);
    }
    for node in &nodes {
        node.wait_for_live_members(IDS.len()).await;
    }
    nodes
}

#[tokio::test]
async fn a_response_stored_on_a_node_is_continued_through_another_after_it_is_killed() {
    let upstream = MockUpstream::start(&[]);
    let data = scratch_dir();
    let mut nodes = start(&upstream, &data).await;
    let other_key = nodes[1].create_key(json!({"name": "other"})).await;
    // A response through node a that a holds the first copy of: losing a
    // then loses the copy every node would ask for first.
    let (first, holders) = loop {
        let first = respond(
            &nodes[0],
            json!({"model": "chat", "input": "My name is Ada.", "store": true}),
        )
        .await;
        let id = first["id"].as_str().unwrap().to_owned();
        let holders = ranked(&id, &IDS);
        if holders[0] == "a" {
            break (first, holders);
        }
    };
    let id = first["id"].as_str().unwrap().to_owned();
    // Every node reads it, the one that holds no copy through a peer.
    for node in &nodes {
        let (status, read) = call(
            node,
            Method::GET,
            &format!("/v1/responses/{id}"),
            TEST_KEY,
            None,
        )
        .await;
        assert_eq!((status, &read), (200, &first), "{}", node.address);
    }
    nodes[0].kill();
    // Continued through the node that is not the surviving holder, so the
    // thread comes from the survivor over the peer API.
    let survivor = &holders[1];
    let through = IDS
        .iter()
        .position(|id| id != survivor && *id != "a")
        .unwrap();
    let second = respond(
        &nodes[through],
        json!({"model": "chat", "input": "What is my name?", "previous_response_id": id}),
    )
    .await;
    assert_eq!(second["previous_response_id"], id);
    assert_eq!(
        received(&upstream).await,
        [
            "My name is Ada.".to_owned(),
            output_text(&first),
            "What is my name?".to_owned()
        ],
        "the upstream got the whole thread"
    );
    // Another key never sees it, here or through a peer, nor reaches an
    // upstream with it.
    for node in &nodes[1..] {
        let (status, error) = call(
            node,
            Method::GET,
            &format!("/v1/responses/{id}"),
            &other_key,
            None,
        )
        .await;
        assert_eq!(status, 404, "{error}");
        for model in ["chat", "native"] {
            let continued = json!({"model": model, "input": "?", "previous_response_id": id});
            assert_eq!(
                refusal(node, &other_key, continued).await,
                (404, json!("previous_response_not_found")),
                "{model}"
            );
        }
    }
    // Deleted through one node, gone through the other.
    let (status, deleted) = call(
        &nodes[1],
        Method::DELETE,
        &format!("/v1/responses/{id}"),
        TEST_KEY,
        None,
    )
    .await;
    assert_eq!(
        (status, &deleted["deleted"]),
        (200, &json!(true)),
        "{deleted}"
    );
    let (status, _) = call(
        &nodes[2],
        Method::GET,
        &format!("/v1/responses/{id}"),
        TEST_KEY,
        None,
    )
    .await;
    assert_eq!(status, 404);
    let continued = json!({"model": "native", "input": "?", "previous_response_id": id});
    assert_eq!(
        refusal(&nodes[2], TEST_KEY, continued).await,
        (404, json!("previous_response_not_found")),
        "deleted"
    );
}

#[tokio::test]
async fn a_conversation_gathers_the_turns_made_through_every_node() {
    let upstream = MockUpstream::start(&[]);
    let data = scratch_dir();
    let nodes = start(&upstream, &data).await;
    let made = json!({"items": [{"type": "message", "role": "user", "content": "I live in Lyon."}],
        "metadata": {"topic": "travel"}});
    let (status, conversation) = call(
        &nodes[0],
        Method::POST,
        "/v1/conversations",
        TEST_KEY,
        Some(made),
    )
    .await;
    assert_eq!(status, 200, "{conversation}");
    let id = conversation["id"].as_str().unwrap().to_owned();
    assert_eq!(conversation["metadata"]["topic"], "travel");
    let mut answers = Vec::new();
    for (node, question) in [
        (&nodes[1], "Where do I live?"),
        (&nodes[2], "And the weather?"),
    ] {
        let answer = respond(
            node,
            json!({"model": "chat", "input": question, "conversation": id}),
        )
        .await;
        assert_eq!(answer["conversation"]["id"], id);
        answers.push(output_text(&answer));
    }
    assert_eq!(
        received(&upstream).await,
        [
            "I live in Lyon.",
            "Where do I live?",
            &answers[0],
            "And the weather?"
        ],
        "the second turn starts from the whole conversation"
    );
    for node in &nodes {
        let (status, listed) = call(
            node,
            Method::GET,
            &format!("/v1/conversations/{id}/items?order=asc"),
            TEST_KEY,
            None,
        )
        .await;
        assert_eq!(status, 200, "{listed}");
        let roles: Vec<&str> = listed["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|item| item["role"].as_str().unwrap())
            .collect();
        assert_eq!(
            roles,
            ["user", "user", "assistant", "user", "assistant"],
            "{listed}"
        );
    }
    let (status, listed) = call(
        &nodes[0],
        Method::GET,
        &format!("/v1/conversations/{id}/items?limit=2"),
        TEST_KEY,
        None,
    )
    .await;
    assert_eq!((status, listed["has_more"].as_bool()), (200, Some(true)));
    assert_eq!(listed["data"][0]["role"], "assistant", "newest first");
    let other_key = nodes[0].create_key(json!({"name": "other"})).await;
    let (status, _) = call(
        &nodes[1],
        Method::GET,
        &format!("/v1/conversations/{id}"),
        &other_key,
        None,
    )
    .await;
    assert_eq!(status, 404);
    let (status, _) = call(
        &nodes[2],
        Method::DELETE,
        &format!("/v1/conversations/{id}"),
        TEST_KEY,
        None,
    )
    .await;
    assert_eq!(status, 200);
    let continued = json!({"model": "chat", "input": "?", "conversation": id});
    assert_eq!(
        refusal(&nodes[0], TEST_KEY, continued).await,
        (404, json!("conversation_not_found")),
        "a deleted conversation"
    );
}

#[tokio::test]
async fn peers_answer_only_calls_sealed_with_the_cluster_secret() {
    let upstream = MockUpstream::start(&[]);
    let data = scratch_dir();
    let nodes = start(&upstream, &data).await;
    let scan = json!({"op": "scan", "prefix": ""});
    for seal in [
        None,
        Some("a 1 00"),
        Some(&*format!("a {} {}", 0, "ab".repeat(32))),
    ] {
        let mut request = reqwest::Client::new()
            .post(nodes[0].url("/peer/items"))
            .json(&scan);
        if let Some(seal) = seal {
            request = request.header("x-chorus-peer", seal);
        }
        let response = request.bearer_auth(TEST_KEY).send().await.unwrap();
        assert_eq!(response.status(), 401, "{seal:?}");
    }
}
