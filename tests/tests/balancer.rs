//! Requests through a real L4 balancer (HAProxy in TCP mode, which
//! `tests/run.sh` installs) keep succeeding while a node is killed with
//! SIGKILL: a client may retry once on a reset connection, and the retries
//! are counted.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use chorus_tests::{chat_body, scratch_dir, start_cluster, ScratchDir, TEST_KEY};

const SECRET: &str = "balancer-test-secret-0123456789";

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// HAProxy, and the directory of its config, kept while it runs.
struct Balancer {
    process: Child,
    _config_dir: ScratchDir,
}

impl Drop for Balancer {
    fn drop(&mut self) {
        let _ = self.process.kill();
        let _ = self.process.wait();
    }
}

/// HAProxy in TCP mode on `port`, round robin over `backends`, with health
/// checks every 200 ms so a dead node leaves the rotation quickly.
fn start_haproxy(port: u16, backends: &[&str]) -> Balancer {
    let servers: String = backends
        .iter()
        .enumerate()
        .map(|(i, address)| {
            format!("    server node{i} {address} check inter 200ms fall 1 rise 1\n")
        })
        .collect();
    let config = format!(
        "defaults\n    mode tcp\n    timeout connect 1s\n    timeout client 30s\n    timeout server 30s\n\
         frontend chorus\n    bind 127.0.0.1:{port}\n    default_backend nodes\n\
         backend nodes\n    balance roundrobin\n{servers}"
    );
    let dir = scratch_dir();
    let path = dir.join("haproxy.cfg");
    std::fs::write(&path, config).unwrap();
    let child = Command::new("haproxy")
        .arg("-db")
        .arg("-f")
        .arg(&path)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("cannot run haproxy: install Debian's haproxy, as tests/run.sh does");
    Balancer {
        process: child,
        _config_dir: dir,
    }
}

#[tokio::test]
async fn requests_through_the_balancer_survive_a_killed_node() {
    let (mut nodes, _) = start_cluster(&["lb-a", "lb-b", "lb-c"], SECRET).await;
    let addresses: Vec<String> = nodes.iter().map(|node| node.address.clone()).collect();
    let port = free_port();
    let _balancer = start_haproxy(
        port,
        &addresses.iter().map(String::as_str).collect::<Vec<_>>(),
    );
    let url = format!("http://127.0.0.1:{port}/v1/chat/completions");
    // A new connection per request, so every request is balanced afresh.
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    let send = || {
        client
            .post(&url)
            .bearer_auth(TEST_KEY)
            .json(&chat_body("fast", false))
            .send()
    };

    let deadline = Instant::now() + Duration::from_secs(30);
    while send().await.is_err() {
        assert!(Instant::now() < deadline, "the balancer never answered");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let (mut succeeded, mut retried) = (0, 0);
    for i in 0..300 {
        if i == 100 {
            nodes[1].kill();
        }
        let response = match send().await {
            Ok(response) => response,
            Err(_) => {
                retried += 1;
                send().await.expect("a request failed even after one retry")
            }
        };
        assert_eq!(response.status(), 200, "request {i}");
        succeeded += 1;
    }
    assert_eq!(succeeded, 300);
    // HAProxy checks every 200 ms: until it marks the node down, a request
    // sent there may be reset and retried; a node stuck in rotation would
    // need far more retries than that window allows.
    assert!(
        retried <= 50,
        "{retried} retries: the dead node stayed in rotation"
    );
    println!("300 requests through HAProxy with one node killed: {retried} retried once");
}
