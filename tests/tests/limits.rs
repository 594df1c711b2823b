//! Rate limits and budgets of virtual keys and teams, as clients meet
//! them: 429 with `retry-after` and OpenAI's `x-ratelimit-*` headers, 402
//! once a budget is spent, the headers on every admitted response, and
//! limits that hold across three nodes, not three times over.

use std::time::Duration;

use chorus_tests::{chat_body, eventually, start_cluster, Node, ADMIN_TOKEN, TEST_KEY};
use reqwest::Method;
use serde_json::{json, Value};

const SECRET: &str = "limits-test-secret-0123456789";

/// One node with a priced built-in mock, `priced`: 1,000 and 2,000 USD per
/// million prompt and completion tokens, 16 completion tokens per reply;
/// and `slow`, a free mock streaming a token every 200 ms.
fn priced_config() -> String {
    format!(
        r#"
[server]
admin_token = "{ADMIN_TOKEN}"

[[providers]]
name = "builtin"
format = "mock"
output_tokens = 16

[[providers]]
name = "paced"
format = "mock"
token_delay_ms = 200

[[models]]
alias = "slow"
deployments = [{{ provider = "paced", model = "mock" }}]

[[models]]
alias = "priced"
default_max_tokens = 64
deployments = [{{ provider = "builtin", model = "mock", input_per_mtok = 1000, output_per_mtok = 2000 }}]

[[keys]]
name = "test"
key = "{TEST_KEY}"
"#
    )
}

async fn chat(node: &Node, key: &str, model: &str, max_tokens: Option<u64>) -> reqwest::Response {
    let mut body = chat_body(model, false);
    if let Some(max_tokens) = max_tokens {
        body["max_tokens"] = json!(max_tokens);
    }
    reqwest::Client::new()
        .post(node.url("/v1/chat/completions"))
        .bearer_auth(key)
        .json(&body)
        .send()
        .await
        .expect("chat request")
}

fn header(response: &reqwest::Response, name: &str) -> String {
    response
        .headers()
        .get(name)
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

/// Spend today on `subject`: what requests used, and what live nodes hold
/// reserved for requests under way.
async fn net_spend(node: &Node, subject: &str) -> u64 {
    let used = node.counter(subject, "spend_micros_day").await;
    let held = node.counter(subject, "spend_micros_day_held").await;
    (used + held).saturating_sub(node.counter(subject, "spend_micros_day_freed").await)
}

#[tokio::test]
async fn a_key_over_its_rpm_gets_429_with_openai_headers() {
    let node = Node::start(&priced_config()).await;
    let key = node
        .create_key(json!({"name": "rpm", "rpm": 3, "tpm": 100000}))
        .await;
    for remaining in ["2", "1", "0"] {
        let response = chat(&node, &key, "priced", Some(16)).await;
        assert_eq!(response.status(), 200);
        assert_eq!(header(&response, "x-ratelimit-limit-requests"), "3");
        assert_eq!(
            header(&response, "x-ratelimit-remaining-requests"),
            remaining
        );
        assert_eq!(header(&response, "x-ratelimit-limit-tokens"), "100000");
        assert!(!header(&response, "x-ratelimit-reset-requests").is_empty());
    }
    let refused = chat(&node, &key, "priced", Some(16)).await;
    assert_eq!(refused.status(), 429);
    let retry_after: u64 = header(&refused, "retry-after")
        .parse()
        .expect("retry-after");
    assert!((1..=120).contains(&retry_after), "{retry_after}");
    assert_eq!(header(&refused, "x-ratelimit-remaining-requests"), "0");
    let error: Value = refused.json().await.unwrap();
    assert_eq!(error["error"]["type"], "requests", "{error}");
    assert_eq!(error["error"]["code"], "rate_limit_exceeded");
    assert!(error["error"]["message"]
        .as_str()
        .unwrap()
        .contains("3 requests per minute"));

    // A bootstrap key has no limits.
    assert_eq!(chat(&node, TEST_KEY, "priced", None).await.status(), 200);
}

#[tokio::test]
async fn a_budget_is_reserved_then_settled_and_refuses_with_402_once_spent() {
    let node = Node::start(&priced_config()).await;
    // One reply: ~10 prompt tokens at 0.001 and 16 completion tokens at
    // 0.002 USD each, about USD 0.04. The alias reserves 64 output tokens
    // when max_tokens is not set: about USD 0.15.
    let key = node
        .create_key(json!({"name": "budget", "budget_daily_usd": 0.2}))
        .await;
    let reserved = chat(&node, &key, "priced", Some(500)).await;
    assert_eq!(
        reserved.status(),
        402,
        "500 tokens at USD 0.002 is over 0.2"
    );
    let error: Value = reserved.json().await.unwrap();
    assert_eq!(error["error"]["type"], "insufficient_quota", "{error}");

    let mut admitted = 0;
    loop {
        let response = chat(&node, &key, "priced", None).await;
        if response.status() == 402 {
            break;
        }
        assert_eq!(response.status(), 200);
        admitted += 1;
        assert!(admitted < 10, "the budget never ran out");
    }
    // Each request settled at its real cost (about 0.04), not the 0.15
    // reserved: more than one fits, and the spend ends within one
    // request's cost of the budget.
    assert!((2..=5).contains(&admitted), "{admitted} requests admitted");
    let (_, keys) = node.admin(Method::GET, "/admin/keys/budget", None).await;
    assert_eq!(keys["name"], "budget");
}

#[tokio::test]
async fn a_team_limit_holds_for_the_sum_of_its_keys() {
    let node = Node::start(&priced_config()).await;
    let (status, team) = node
        .admin(
            Method::POST,
            "/admin/teams",
            Some(json!({"name": "small", "rpm": 4})),
        )
        .await;
    assert_eq!(status, 201, "{team}");
    let first = node
        .create_key(json!({"name": "one", "team": "small"}))
        .await;
    let second = node
        .create_key(json!({"name": "two", "team": "small", "rpm": 3}))
        .await;
    let mut statuses = Vec::new();
    for key in [&first, &second, &first, &second, &first, &second] {
        statuses.push(chat(&node, key, "priced", Some(16)).await.status().as_u16());
    }
    assert_eq!(statuses, [200, 200, 200, 200, 429, 429]);
}

#[tokio::test]
async fn max_parallel_counts_requests_in_flight() {
    let node = Node::start(&priced_config()).await;
    let key = node
        .create_key(json!({"name": "par", "max_parallel": 1}))
        .await;
    // A stream held open keeps one request in flight.
    let mut body = chat_body("slow", true);
    // 50 tokens 200 ms apart: open for 10 s, long enough on a busy machine.
    body["max_tokens"] = json!(50);
    let open = reqwest::Client::new()
        .post(node.url("/v1/chat/completions"))
        .bearer_auth(&key)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(open.status(), 200);
    let refused = chat(&node, &key, "priced", Some(4)).await;
    assert_eq!(refused.status(), 429);
    let error: Value = refused.json().await.unwrap();
    assert_eq!(error["error"]["code"], "max_parallel_exceeded", "{error}");
    // The client goes away: the call is cancelled and its slot freed.
    drop(open);
    eventually(Duration::from_secs(5), "the slot freed", || async {
        (chat(&node, &key, "priced", Some(4)).await.status() == 200).then_some(())
    })
    .await;
}

#[tokio::test]
async fn a_limit_holds_across_three_nodes_not_three_times_over() {
    let (nodes, _) = start_cluster(&["lim-a", "lim-b", "lim-c"], SECRET).await;
    let key = nodes[0]
        .create_key(json!({"name": "shared", "rpm": 12}))
        .await;
    for node in &nodes[1..] {
        eventually(Duration::from_secs(5), "the key everywhere", || async {
            (chat(node, &key, "fast", Some(4)).await.status() != 401).then_some(())
        })
        .await;
    }
    // Those two probes counted too. Now a burst of 36 requests at once, 12
    // on each node, far faster than gossip, against what is left of 12.
    let burst = (0..36).map(|round| chat(&nodes[round % 3], &key, "fast", Some(4)));
    let statuses = futures::future::join_all(burst).await;
    let admitted = 2 + statuses
        .iter()
        .filter(|response| response.status() == 200)
        .count();
    // Each node may take its share of what was left at the last exchange,
    // rounded up, and a fresh share at each exchange that lands mid-burst.
    // On a busy two-core machine that came to 14 to 17; with no shares the
    // nodes took 32. Never the limit three times over.
    assert!(
        (12..=20).contains(&admitted),
        "{admitted} admitted against 12 rpm"
    );
    // And once gossip has caught up, every node refuses.
    tokio::time::sleep(Duration::from_millis(500)).await;
    for node in &nodes {
        assert_eq!(chat(node, &key, "fast", Some(4)).await.status(), 429);
    }
}

/// A node killed mid-request cannot settle what it reserved: its peers
/// stop counting the reservation once they see the node dead, and the
/// node, back from its store, does not count it either.
#[tokio::test]
async fn a_node_killed_mid_request_has_its_reservation_released_once_seen_dead() {
    let data = chorus_tests::scratch_dir();
    let ports = [chorus_tests::free_udp_port(), chorus_tests::free_udp_port()];
    let priced = "\n[[models]]\nalias = \"slow-priced\"\n\
        deployments = [{ provider = \"paced\", model = \"priced\", input_per_mtok = 1000, output_per_mtok = 2000 }]\n\
        \n[[models]]\nalias = \"fast-priced\"\n\
        deployments = [{ provider = \"builtin\", model = \"priced\", input_per_mtok = 1000, output_per_mtok = 2000 }]\n";
    let config = |index: usize, port: u16| {
        let id = format!("kill-{index}");
        let seed = ports[1 - index];
        chorus_tests::cluster_config(&id, port, &[seed], SECRET, Some(&data)) + priced
    };
    let survivor = Node::start(&config(0, ports[0])).await;
    let mut doomed = Node::start(&config(1, ports[1])).await;
    survivor.wait_for_live_members(2).await;
    // Room for one reservation of 100 output tokens (about USD 0.21), not two.
    let (status, created) = survivor
        .admin(
            Method::POST,
            "/admin/keys",
            Some(json!({"name": "spender", "budget_daily_usd": 0.3})),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    let key = created["key"].as_str().unwrap().to_owned();
    let subject = format!("key:{}", created["id"].as_str().unwrap());
    eventually(
        Duration::from_secs(5),
        "the key on the doomed node",
        || async { (chat(&doomed, &key, "fast", Some(4)).await.status() == 200).then_some(()) },
    )
    .await;

    // A 2 s stream, held open while the node dies.
    let mut body = chat_body("slow-priced", true);
    body["max_tokens"] = json!(100);
    let stream = reqwest::Client::new()
        .post(doomed.url("/v1/chat/completions"))
        .bearer_auth(&key)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), 200);
    let reserved = eventually(
        Duration::from_secs(5),
        "the reservation gossiped",
        || async { Some(net_spend(&survivor, &subject).await).filter(|spent| *spent >= 200_000) },
    )
    .await;
    assert_ne!(
        chat(&survivor, &key, "fast-priced", Some(100))
            .await
            .status(),
        200,
        "the doomed node's reservation holds the budget while it lives"
    );
    doomed.kill();
    drop(stream);
    eventually(
        Duration::from_secs(20),
        "the reservation released and the budget free again",
        || async {
            let answered = chat(&survivor, &key, "fast-priced", Some(100))
                .await
                .status()
                == 200;
            answered.then_some(())
        },
    )
    .await;
    let spent = net_spend(&survivor, &subject).await;
    assert!(
        spent < reserved,
        "{spent} spent: only the survivor's request"
    );
    // Back from its store (on a new gossip port: a parallel test may have
    // taken the old one), the node does not hold its dead run's reservation.
    let back = Node::start(&config(1, chorus_tests::free_udp_port())).await;
    back.wait_for_live_members(2).await;
    eventually(
        Duration::from_secs(10),
        "the restarted node agrees",
        || async { (net_spend(&back, &subject).await == spent).then_some(()) },
    )
    .await;
}

/// Milliseconds into the current UTC minute.
fn into_minute_ms() -> u64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    (now.as_millis() % 60_000) as u64
}

/// Sleeps until `at_ms` into a UTC minute: this one's, or the next's.
async fn until_into_minute(at_ms: u64) {
    let now = into_minute_ms();
    let wait = (at_ms + 60_000 - now) % 60_000;
    tokio::time::sleep(Duration::from_millis(wait)).await;
}

/// Requests on every node in turn, three at a time, until `enough` are
/// admitted or `rounds` rounds have gone; returns how many were.
async fn admitted_of(nodes: &[Node], key: &str, rounds: usize, enough: usize) -> usize {
    let mut admitted = 0;
    for _ in 0..rounds {
        let round = nodes.iter().map(|node| chat(node, key, "fast", Some(4)));
        admitted += futures::future::join_all(round)
            .await
            .iter()
            .filter(|response| response.status() == 200)
            .count();
        if admitted >= enough {
            break;
        }
    }
    admitted
}

/// The adversarial timing for a per-minute limit: a key idle, its whole
/// limit taken in the last seconds of a UTC minute, then more asked for
/// 25 s later. A sliding-window estimate that weighs the previous minute
/// by how much of it the last 60 s cover lets about a third of the limit
/// more through then (the burst counts as if spread over its minute); the
/// limit must hold over those 60 s, give or take one request per other
/// node (the cluster slack the README states).
#[tokio::test]
async fn a_limit_holds_in_any_60_s_not_only_per_minute() {
    let (nodes, _) = start_cluster(&["win-a", "win-b", "win-c"], SECRET).await;
    let rpm = 30;
    let key = nodes[0]
        .create_key(json!({"name": "bursty", "rpm": rpm}))
        .await;
    for node in &nodes {
        eventually(Duration::from_secs(5), "the key everywhere", || async {
            let response = reqwest::Client::new()
                .get(node.url("/v1/models"))
                .bearer_auth(&key)
                .send()
                .await
                .ok()?;
            (response.status() == 200).then_some(())
        })
        .await;
    }
    until_into_minute(54_000).await;
    let at_the_end_of_a_minute = admitted_of(&nodes, &key, 20, rpm).await;
    assert!(
        into_minute_ms() >= 54_000,
        "the burst spilled into the next minute"
    );
    until_into_minute(20_000).await;
    let twenty_five_s_later = admitted_of(&nodes, &key, 10, rpm).await;
    let within_60_s = at_the_end_of_a_minute + twenty_five_s_later;
    assert!(
        (rpm - 2..=rpm + 2).contains(&within_60_s),
        "{at_the_end_of_a_minute} admitted at the end of a minute and \
         {twenty_five_s_later} 25 s later, against {rpm} rpm"
    );
}
