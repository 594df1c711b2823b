//! The README's first command: `deploy/local.sh` starts N nodes behind
//! HAProxy, prints where everything is, serves requests through the
//! balancer as one cluster — without a failed request when a node is
//! stopped or killed — and stops everything when told to.

use std::io::{BufRead, BufReader};
use std::net::{TcpListener, TcpStream, UdpSocket};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use chorus_tests::{bin_dir, chat_body, eventually, scratch_dir};

/// A port with `count` free ports from it on, for TCP or UDP.
fn free_run(count: u16, free: impl Fn(u16) -> bool) -> u16 {
    (20_000..60_000)
        .step_by(97)
        .find(|&start| (start..start + count).all(&free))
        .expect("no free ports")
}

#[tokio::test]
async fn local_sh_starts_a_balanced_cluster_and_stops_it() {
    let http = free_run(4, |port| TcpListener::bind(("127.0.0.1", port)).is_ok());
    let gossip = free_run(3, |port| UdpSocket::bind(("127.0.0.1", port)).is_ok());
    let repository = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    // As a user without Rust runs it: no cargo on the PATH, nothing set
    // but a prebuilt binary, so the data goes to its default place.
    let home = scratch_dir();
    let mut script = Command::new("bash")
        .arg("deploy/local.sh")
        .args(["--nodes", "3"])
        .current_dir(&repository)
        .env(
            "PATH",
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        )
        .env("HOME", &*home)
        .env_remove("XDG_DATA_HOME")
        .env_remove("CARGO_TARGET_DIR")
        .env("CHORUS_BIN", bin_dir().join("chorus"))
        .env("CHORUS_PORT", http.to_string())
        .env("CHORUS_GOSSIP_PORT", gossip.to_string())
        .env("CHORUS_DEV_KEY", "sk-local-test")
        .env("CHORUS_ADMIN_TOKEN", "admin-local-test-0123")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|error| panic!("cannot start bash deploy/local.sh: {error:?}"));
    let mut banner = String::new();
    let mut stdout = BufReader::new(script.stdout.take().unwrap());
    loop {
        let mut line = String::new();
        assert!(
            stdout.read_line(&mut line).unwrap() > 0,
            "local.sh ended early:\n{banner}"
        );
        banner.push_str(&line);
        if line.contains("Ctrl-C stops the cluster") {
            break;
        }
    }
    std::thread::spawn(move || std::io::copy(&mut stdout, &mut std::io::sink()));
    // Stores and the cluster secret are user data, kept outside any build tree.
    let data = home.join(".local/share/chorus/local-cluster");
    for kept in ["cluster-secret", "node-1", "node-2", "node-3"] {
        assert!(
            data.join(kept).exists(),
            "{kept} is not in {}",
            data.display()
        );
    }
    for expected in [
        format!("http://127.0.0.1:{http}"),
        format!("http://127.0.0.1:{}/status", http + 1),
        format!("http://127.0.0.1:{}/status", http + 3),
        "curl -N".to_owned(),
    ] {
        assert!(
            banner.contains(&expected),
            "the banner lacks {expected}:\n{banner}"
        );
    }

    let client = reqwest::Client::new();
    let through_balancer = client
        .post(format!("http://127.0.0.1:{http}/v1/chat/completions"))
        .bearer_auth("sk-local-test")
        .json(&chat_body("fast", false))
        .send()
        .await
        .unwrap();
    assert_eq!(through_balancer.status(), 200);
    eventually(Duration::from_secs(30), "three live members", || async {
        let cluster: serde_json::Value = client
            .get(format!("http://127.0.0.1:{}/v1/cluster", http + 1))
            .bearer_auth("admin-local-test-0123")
            .send()
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        let alive = cluster["members"]
            .as_array()?
            .iter()
            .filter(|m| m["alive"] == true)
            .count();
        (alive == 3).then_some(())
    })
    .await;

    // Every request through the balancer succeeds, within a short wait,
    // each on a new connection: in TCP mode a connection is tied to its
    // node, and one open to a node that dies dies with it.
    let fresh = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    let all_answered = |what: &'static str| {
        let client = fresh.clone();
        async move {
            for _ in 0..6 {
                let status = client
                    .post(format!("http://127.0.0.1:{http}/v1/chat/completions"))
                    .bearer_auth("sk-local-test")
                    .timeout(Duration::from_secs(3))
                    .json(&chat_body("fast", false))
                    .send()
                    .await
                    .map(|response| response.status().as_u16());
                assert_eq!(status.ok(), Some(200), "{what}");
            }
        }
    };
    let signal = |name: &str, node: &str| {
        let config = data.join(format!("{node}.toml"));
        let sent = Command::new("pkill")
            .args([&format!("-{name}"), "-f", &config.display().to_string()])
            .status()
            .unwrap();
        assert!(sent.success(), "pkill -{name} {node}");
    };
    // A stopped node still takes connections: the health check must take
    // it out.
    signal("STOP", "node-3");
    tokio::time::sleep(Duration::from_secs(3)).await;
    all_answered("with node-3 stopped").await;
    signal("CONT", "node-3");
    // A killed node refuses them: the balancer must move each at once.
    signal("KILL", "node-2");
    all_answered("right after node-2 was killed").await;

    let terminated = Command::new("kill")
        .args(["-TERM", &script.id().to_string()])
        .status()
        .unwrap();
    assert!(terminated.success());
    script.wait().unwrap();
    for port in [http, http + 1, http + 3] {
        eventually(Duration::from_secs(10), "everything stopped", || async {
            TcpStream::connect(("127.0.0.1", port))
                .is_err()
                .then_some(())
        })
        .await;
    }
}
