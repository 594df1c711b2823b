//! Routing on the cluster-wide view, over real nodes gossiping on
//! 127.0.0.1: `latency-based` sends every node's traffic to the faster of
//! two upstreams, even on nodes that never called either; `least-busy`
//! counts the requests other nodes have in flight; a deployment's `rpm`
//! holds for the cluster, not per node; and an upstream killed under
//! steady load costs clients nothing.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use chorus_tests::{chat_body, eventually, start_cluster_with, MockUpstream, Node};
use serde_json::Value;

const SECRET: &str = "routing-cluster-secret-0123";

/// A provider named `name` on `upstream`, sending `headers` (TOML pairs).
fn provider(name: &str, upstream: &MockUpstream, headers: &str) -> String {
    format!(
        "\n[[providers]]\nname = \"{name}\"\nformat = \"openai\"\nbase_url = \"{}\"\n\
         timeout_ms = 2000\nheaders = {{ {headers} }}\n",
        upstream.base_url()
    )
}

/// The deployment that answered each of `count` requests for `alias` on
/// `node`, all of which must succeed.
async fn deployments_used(node: &Node, alias: &str, count: usize) -> HashMap<String, usize> {
    let mut used = HashMap::new();
    for _ in 0..count {
        let response = node.chat(&chat_body(alias, false)).send().await.unwrap();
        assert_eq!(response.status(), 200, "{alias}");
        let deployment = response.headers()["x-chorus-deployment"]
            .to_str()
            .unwrap()
            .to_owned();
        *used.entry(deployment).or_insert(0) += 1;
    }
    used
}

#[tokio::test]
async fn latency_based_moves_every_nodes_traffic_to_the_faster_upstream() {
    let upstream = MockUpstream::start(&[]);
    let extra = provider("quick", &upstream, "\"x-mock-latency-ms\" = \"5\"")
        + &provider("sluggish", &upstream, "\"x-mock-latency-ms\" = \"60\"")
        + "\n[[models]]\nalias = \"fastest\"\nstrategy = \"latency-based\"\n\
           deployments = [{ provider = \"quick\", model = \"m\" }, { provider = \"sluggish\", model = \"m\" }]\n";
    let (nodes, _) = start_cluster_with(&["lat-a", "lat-b", "lat-c"], SECRET, &extra).await;
    // Only node a calls at first: both deployments get samples there.
    let first = deployments_used(&nodes[0], "fastest", 20).await;
    assert!(
        first.contains_key("sluggish/m"),
        "no sample of the slow one: {first:?}"
    );
    // Nodes b and c never called either, yet send all to `quick` once
    // gossip has brought them node a's figures: left to their own, they
    // would first have to try `sluggish`.
    for node in &nodes[1..] {
        eventually(Duration::from_secs(5), "node a's latencies", || async {
            let view = node.cluster_view().await;
            let sampled = view["deployments"]
                .as_array()?
                .iter()
                .filter(|deployment| {
                    deployment["name"] == "quick/m" || deployment["name"] == "sluggish/m"
                })
                .filter(|deployment| deployment["cluster"]["ms_per_output_token"].is_number())
                .count();
            (sampled == 2).then_some(())
        })
        .await;
        let used = deployments_used(node, "fastest", 20).await;
        assert_eq!(used.get("quick/m"), Some(&20), "{used:?}");
    }
}

#[tokio::test]
async fn least_busy_counts_the_requests_in_flight_on_other_nodes() {
    // `glacial` streams (10 s each) hold `glacial/mock` busy on node a;
    // `either` balances between it and the instant `builtin/mock`.
    let extra = "\n[[providers]]\nname = \"glacial\"\nformat = \"mock\"\ntoken_delay_ms = 500\n\
        output_tokens = 20\n\
        \n[[models]]\nalias = \"glacial\"\ndeployments = [{ provider = \"glacial\", model = \"mock\" }]\n\
        \n[[models]]\nalias = \"either\"\nstrategy = \"least-busy\"\n\
        deployments = [{ provider = \"glacial\", model = \"mock\" }, { provider = \"builtin\", model = \"mock\" }]\n";
    let (nodes, _) = start_cluster_with(&["busy-a", "busy-b"], SECRET, extra).await;
    let (a, b) = (&nodes[0], &nodes[1]);
    let mut streams = Vec::new();
    for _ in 0..3 {
        let mut stream = a.chat(&chat_body("glacial", true)).send().await.unwrap();
        stream.chunk().await.unwrap();
        streams.push(stream);
    }
    eventually(
        Duration::from_secs(5),
        "node a's streams seen on node b",
        || async {
            let view = b.cluster_view().await;
            let glacial = view["deployments"]
                .as_array()?
                .iter()
                .find(|deployment| deployment["name"] == "glacial/mock")?
                .clone();
            (glacial["cluster"]["in_flight"] == 3).then_some(())
        },
    )
    .await;
    // Node b has nothing in flight itself: only node a's count tells it
    // that `glacial/mock` is busy.
    let used = deployments_used(b, "either", 10).await;
    assert_eq!(used.get("builtin/mock"), Some(&10), "{used:?}");
    drop(streams);
}

#[tokio::test]
async fn a_deployments_rpm_holds_across_the_cluster() {
    // `capped` (rpm 4) is the cheaper, so chosen while it has room;
    // `spare` takes the rest.
    let extra = "\n[[models]]\nalias = \"quota\"\nstrategy = \"cost-based\"\n\
        deployments = [{ provider = \"builtin\", model = \"capped\", rpm = 4 }, \
        { provider = \"builtin\", model = \"spare\", input_per_mtok = 1 }]\n";
    let (nodes, _) = start_cluster_with(&["rpm-a", "rpm-b"], SECRET, extra).await;
    let mut capped = 0;
    for round in 0..10 {
        let node = &nodes[round % 2];
        let response = node.chat(&chat_body("quota", false)).send().await.unwrap();
        assert_eq!(response.status(), 200);
        if response.headers()["x-chorus-deployment"] == "builtin/capped" {
            capped += 1;
        }
        // Gossip carries each call to the other node before the next.
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    // Exactly 4 when gossip keeps up; one more if a busy machine delays a
    // round past the pause. Counting per node would give 8.
    assert!(
        (4..=5).contains(&capped),
        "the two nodes together called it {capped} times"
    );
}

#[tokio::test]
async fn an_upstream_killed_under_load_costs_clients_nothing() {
    let doomed = MockUpstream::start(&[]);
    let survivor = MockUpstream::start(&[]);
    let extra = provider("doomed", &doomed, "\"x-mock-latency-ms\" = \"20\"")
        + &provider("survivor", &survivor, "\"x-mock-latency-ms\" = \"20\"")
        + "\n[[models]]\nalias = \"ha\"\n\
           deployments = [{ provider = \"doomed\", model = \"m\" }, { provider = \"survivor\", model = \"m\" }]\n";
    let (nodes, _) = start_cluster_with(&["ha-a", "ha-b", "ha-c"], SECRET, &extra).await;
    let nodes = std::sync::Arc::new(nodes);
    // Steady load: four clients, each sending to the nodes in turn for 3 s;
    // the doomed upstream dies after the first second.
    let started = Instant::now();
    let clients: Vec<_> = (0..4)
        .map(|client| {
            let nodes = nodes.clone();
            tokio::spawn(async move {
                let mut sent = Vec::new();
                let mut turn = client;
                while started.elapsed() < Duration::from_secs(3) {
                    let node = &nodes[turn % nodes.len()];
                    let at = Instant::now();
                    let response = node.chat(&chat_body("ha", false)).send().await.unwrap();
                    let status = response.status().as_u16();
                    let body: Value = response.json().await.unwrap_or_default();
                    sent.push((at, status, body));
                    turn += 1;
                }
                sent
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_secs(1)).await;
    drop(doomed);
    let killed = Instant::now();
    let mut after_the_kill = 0;
    for client in clients {
        for (at, status, body) in client.await.unwrap() {
            assert_eq!(status, 200, "{body}");
            after_the_kill += u64::from(at >= killed);
        }
    }
    // However busy the machine, the load went on after the kill.
    assert!(
        after_the_kill >= 8,
        "only {after_the_kill} requests after the kill"
    );
    let served = survivor.stats().await["requests"].as_u64().unwrap();
    assert!(served >= after_the_kill, "{served} of {after_the_kill}");
}

#[tokio::test]
async fn cache_affinity_sends_one_sessions_requests_to_one_deployment_on_every_node() {
    // Two deployments of the built-in mock, `left` and `right`, balanced
    // round-robin: without affinity a session's requests alternate.
    let extra = "\n[[models]]\nalias = \"sticky\"\nstrategy = \"round-robin\"\ncache_affinity = true\n\
        deployments = [{ provider = \"builtin\", model = \"left\" }, { provider = \"builtin\", model = \"right\" }]\n\
        \n[[models]]\nalias = \"loose\"\nstrategy = \"round-robin\"\n\
        deployments = [{ provider = \"builtin\", model = \"left\" }, { provider = \"builtin\", model = \"right\" }]\n";
    let (nodes, _) = start_cluster_with(&["aff-a", "aff-b"], SECRET, extra).await;
    let answered_by = |node: &Node, alias: &str, body: Value| {
        let request = node.chat(&body);
        let alias = alias.to_owned();
        async move {
            let response = request.send().await.unwrap();
            assert_eq!(response.status(), 200, "{alias}");
            response.headers()["x-chorus-deployment"]
                .to_str()
                .unwrap()
                .to_owned()
        }
    };
    let mut homes = HashMap::new();
    for session in 0..8 {
        // A session by its key, and one by its conversation's first turn.
        let keyed = serde_json::json!({"model": "sticky", "prompt_cache_key": format!("s-{session}"),
            "messages": [{"role": "user", "content": "hi"}]});
        let mut turns = vec![
            serde_json::json!({"role": "system", "content": "You are terse."}),
            serde_json::json!({"role": "user", "content": format!("Task {session}")}),
        ];
        for turn in 0..4 {
            let node = &nodes[turn % 2];
            let by_key = answered_by(node, "sticky", keyed.clone()).await;
            let by_prefix = answered_by(
                node,
                "sticky",
                serde_json::json!({"model": "sticky", "messages": turns}),
            )
            .await;
            let home = homes
                .entry(session)
                .or_insert_with(|| (by_key.clone(), by_prefix.clone()));
            assert_eq!(
                (&by_key, &by_prefix),
                (&home.0, &home.1),
                "session {session}, turn {turn}"
            );
            turns.push(serde_json::json!({"role": "assistant", "content": "ok"}));
            turns.push(serde_json::json!({"role": "user", "content": format!("more {turn}")}));
        }
    }
    let used: std::collections::HashSet<&String> = homes.values().map(|home| &home.0).collect();
    assert_eq!(used.len(), 2, "sessions spread over both: {homes:?}");
    // The same traffic on an alias without affinity alternates.
    let loose = serde_json::json!({"model": "loose", "prompt_cache_key": "s-0",
        "messages": [{"role": "user", "content": "hi"}]});
    let first = answered_by(&nodes[0], "loose", loose.clone()).await;
    let second = answered_by(&nodes[0], "loose", loose).await;
    assert_ne!(first, second);
}
