//! Routing and resilience as a client sees them: a failed call retried on
//! another deployment, a client error not retried, a lone deployment
//! retried after a backoff, a 429 cooling its deployment down, a breaker
//! opened on one node avoided by the others. Every answer says which
//! deployment gave it and after how many calls.

use std::time::Duration;

use chorus_tests::{
    chat_body, cluster_config, eventually, free_udp_port, standard_config, MockUpstream, Node,
};
use serde_json::Value;

/// An alias over `first`, then the healthy `up` (at its prices in the
/// standard config), taken in turn: a fresh node's first request on it
/// goes to `first`.
fn alias_over(alias: &str, first: &str, extra: &str) -> String {
    format!(
        "\n[[models]]\nalias = \"{alias}\"\nstrategy = \"round-robin\"\n{extra}\
         deployments = [{{ provider = \"{first}\", model = \"gpt-4o-mini\" }}, \
         {{ provider = \"up\", model = \"gpt-4o-mini\", input_per_mtok = 0.15, output_per_mtok = 0.60 }}]\n"
    )
}

fn header<'a>(response: &'a reqwest::Response, name: &str) -> &'a str {
    response
        .headers()
        .get(name)
        .and_then(|value| value.to_str().ok())
        .unwrap_or_else(|| panic!("no `{name}` header"))
}

fn attempts(response: &reqwest::Response) -> u32 {
    header(response, "x-chorus-attempts").parse().unwrap()
}

#[tokio::test]
async fn a_failed_call_is_retried_on_another_deployment() {
    let upstream = MockUpstream::start(&[]);
    let mut config = standard_config(&upstream);
    for fault in ["500", "429", "reset"] {
        config += &alias_over(&format!("retry-{fault}"), &format!("fault-{fault}"), "");
    }
    config += &alias_over("retry-stream", "fault-500", "");
    let node = Node::start(&config).await;
    for fault in ["500", "429", "reset"] {
        let response = node
            .chat(&chat_body(&format!("retry-{fault}"), false))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{fault}");
        assert_eq!(attempts(&response), 2, "{fault}");
        assert_eq!(header(&response, "x-chorus-deployment"), "up/gpt-4o-mini");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["model"], format!("retry-{fault}"));
    }
    // A stream whose first call failed before any byte is retried too.
    let response = node
        .chat(&chat_body("retry-stream", true))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(attempts(&response), 2);
    assert!(response.text().await.unwrap().ends_with("data: [DONE]\n\n"));
    // Each retried request made two upstream calls, the stream included.
    assert_eq!(upstream.stats().await["requests"], 8);
}

#[tokio::test]
async fn a_429_cools_its_deployment_down_for_its_retry_after() {
    let upstream = MockUpstream::start(&[]);
    let config = standard_config(&upstream) + &alias_over("limited", "fault-429", "");
    let node = Node::start(&config).await;
    let first = node
        .chat(&chat_body("limited", false))
        .send()
        .await
        .unwrap();
    assert_eq!(attempts(&first), 2);
    // Its turn again, but it asked for a second's rest: `up` answers alone.
    let second = node
        .chat(&chat_body("limited", false))
        .send()
        .await
        .unwrap();
    let third = node
        .chat(&chat_body("limited", false))
        .send()
        .await
        .unwrap();
    assert_eq!((attempts(&second), attempts(&third)), (1, 1));
    assert_eq!(upstream.stats().await["requests"], 4);

    // With nothing else to go to, a client is told when to come back:
    // 503 while the deployment cools down, its 429 again once it is over.
    eventually(Duration::from_secs(3), "the cooldown over", || async {
        let lone = node
            .chat(&chat_body("fault-429", false))
            .send()
            .await
            .unwrap();
        (lone.status() == 429).then_some(())
    })
    .await;
    let cooling = node
        .chat(&chat_body("fault-429", false))
        .send()
        .await
        .unwrap();
    assert_eq!(cooling.status(), 503);
    assert_eq!(header(&cooling, "retry-after"), "1");
    assert_eq!(attempts(&cooling), 0);
    let error: Value = cooling.json().await.unwrap();
    assert_eq!(error["error"]["code"], "no_deployment_available", "{error}");
}

#[tokio::test]
async fn a_client_error_is_not_retried() {
    let upstream = MockUpstream::start(&[]);
    let config = standard_config(&upstream) + &alias_over("strict", "fault-400", "");
    let node = Node::start(&config).await;
    let response = node.chat(&chat_body("strict", false)).send().await.unwrap();
    assert_eq!(response.status(), 400);
    assert_eq!(attempts(&response), 1);
    assert_eq!(
        header(&response, "x-chorus-deployment"),
        "fault-400/gpt-4o-mini"
    );
    assert_eq!(upstream.stats().await["requests"], 1);
}

#[tokio::test]
async fn a_lone_deployment_is_retried_after_a_backoff_until_retries_run_out() {
    let upstream = MockUpstream::start(&[]);
    let config = standard_config(&upstream)
        + "\n[[models]]\nalias = \"lone\"\nmax_retries = 2\nretry_backoff_ms = 200\n\
           deployments = [{ provider = \"fault-500\", model = \"gpt-4o-mini\" }]\n";
    let node = Node::start(&config).await;
    let started = std::time::Instant::now();
    let response = node.chat(&chat_body("lone", false)).send().await.unwrap();
    assert_eq!(response.status(), 500);
    assert_eq!(attempts(&response), 3);
    assert_eq!(upstream.stats().await["requests"], 3);
    // Backoffs of 100–200 ms, then 200–400 ms.
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn each_kind_of_failure_falls_back_along_its_own_chain() {
    let upstream = MockUpstream::start(&[]);
    let alias = |name: &str, provider: &str, extra: &str| {
        format!(
            "\n[[models]]\nalias = \"{name}\"\nmax_retries = 0\n{extra}\
             deployments = [{{ provider = \"{provider}\", model = \"gpt-4o-mini\" }}]\n"
        )
    };
    let config = standard_config(&upstream)
        + &alias(
            "main",
            "fault-500",
            "fallbacks = [\"fault-reset\", \"backup\"]\n",
        )
        + &alias("backup", "slow", "")
        + &alias(
            "short",
            "fault-context",
            "fallbacks = [\"backup\"]\ncontext_window_fallbacks = [\"long\"]\n",
        )
        + &alias("long", "laggy", "")
        + &alias(
            "filtered",
            "fault-content-filter",
            "content_policy_fallbacks = [\"backup\"]\n",
        )
        + &alias("no-chain", "fault-context", "fallbacks = [\"backup\"]\n");
    let node = Node::start(&config).await;
    let cases = [
        // Down its general chain, past a fallback that fails too.
        ("main", 200, 3, "slow/gpt-4o-mini", "backup"),
        ("short", 200, 2, "laggy/gpt-4o-mini", "long"),
        ("filtered", 200, 2, "slow/gpt-4o-mini", "backup"),
        // A prompt too long is not what the general chain is for.
        ("no-chain", 400, 1, "fault-context/gpt-4o-mini", ""),
    ];
    for (alias, status, tries, deployment, model) in cases {
        let response = node.chat(&chat_body(alias, false)).send().await.unwrap();
        assert_eq!(response.status(), status, "{alias}");
        assert_eq!(attempts(&response), tries, "{alias}");
        assert_eq!(
            header(&response, "x-chorus-deployment"),
            deployment,
            "{alias}"
        );
        let body: Value = response.json().await.unwrap();
        if status == 200 {
            // The answer names the alias that gave it.
            assert_eq!(body["model"], model, "{alias}");
        } else {
            assert_eq!(body["error"]["code"], "context_length_exceeded", "{body}");
        }
    }
}

/// This node's view of a deployment in `GET /v1/cluster`.
async fn deployment_view(node: &Node, name: &str) -> Value {
    let view = node.cluster_view().await;
    view["deployments"]
        .as_array()
        .and_then(|all| all.iter().find(|d| d["name"] == name).cloned())
        .unwrap_or_else(|| panic!("no deployment `{name}` in {view}"))
}

#[tokio::test]
async fn a_breaker_opened_on_one_node_is_avoided_by_the_others() {
    const SECRET: &str = "routing-secret-0123456789";
    let ports = [free_udp_port(), free_udp_port()];
    // `dead` (nothing listening) and the built-in mock, taken in turn.
    let flaky = "\n[[models]]\nalias = \"flaky\"\nstrategy = \"round-robin\"\n\
        deployments = [{ provider = \"nowhere\", model = \"m\" }, { provider = \"builtin\", model = \"mock\" }]\n";
    let a = Node::start(&(cluster_config("route-a", ports[0], &[ports[1]], SECRET, None) + flaky))
        .await;
    let b = Node::start(&(cluster_config("route-b", ports[1], &[ports[0]], SECRET, None) + flaky))
        .await;
    a.wait_for_live_members(2).await;
    b.wait_for_live_members(2).await;

    // Five failed calls on node a open its breaker; clients never notice.
    eventually(
        Duration::from_secs(10),
        "the breaker open on node a",
        || async {
            let response = a.chat(&chat_body("flaky", false)).send().await.unwrap();
            assert_eq!(response.status(), 200);
            (deployment_view(&a, "nowhere/m").await["breaker"] == "open").then_some(())
        },
    )
    .await;
    eventually(
        Duration::from_secs(5),
        "the breaker open on node b",
        || async { (deployment_view(&b, "nowhere/m").await["breaker"] == "open").then_some(()) },
    )
    .await;
    // Node b never tried the dead deployment, yet sends it nothing.
    for _ in 0..6 {
        let response = b.chat(&chat_body("flaky", false)).send().await.unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(attempts(&response), 1);
        assert_eq!(header(&response, "x-chorus-deployment"), "builtin/mock");
    }
}
