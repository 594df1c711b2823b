//! The status page renders in a real browser (headless Chromium, which
//! `tests/run.sh` installs): it shows nothing without the admin token,
//! and with it names every node on every node, dead ones as dead, and no
//! secret.

use std::process::Command;
use std::time::Duration;

use chorus_tests::{eventually, scratch_dir, start_cluster, ADMIN_TOKEN, TEST_KEY};

const SECRET: &str = "status-page-secret-0123456789";

/// The DOM of `url` after Chromium has rendered it.
fn rendered_dom(url: &str) -> String {
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "chromium".to_owned());
    let profile = scratch_dir();
    let output = Command::new(&chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--virtual-time-budget=3000",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg("--dump-dom")
        .arg(url)
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run `{chromium}` ({e}): install Debian's chromium, as tests/run.sh does")
        });
    assert!(
        output.status.success(),
        "chromium failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

async fn render(url: String) -> String {
    tokio::task::spawn_blocking(move || rendered_dom(&url))
        .await
        .unwrap()
}

#[tokio::test]
async fn the_page_asks_for_the_token_then_shows_every_node_alive_or_dead() {
    let (mut nodes, _) = start_cluster(&["page-a", "page-b", "page-c"], SECRET).await;
    nodes[2].kill();
    for node in &nodes[..2] {
        eventually(Duration::from_secs(30), "page-c dead", || async {
            let cluster = node.cluster_view().await;
            cluster["members"]
                .as_array()?
                .iter()
                .any(|m| m["node_id"] == "page-c" && m["alive"] == false)
                .then_some(())
        })
        .await;
    }
    for node in &nodes[..2] {
        let locked = render(node.url("/status")).await;
        assert!(locked.contains("Admin token"), "{locked}");
        assert!(
            !locked.contains("page-a"),
            "no data without the token: {locked}"
        );

        let dom = render(node.url(&format!("/status#token={ADMIN_TOKEN}"))).await;
        assert!(dom.contains("<table id=\"members\">"), "{dom}");
        for name in ["page-a", "page-b", "page-c", "builtin/mock"] {
            assert!(dom.contains(name), "the page does not name {name}: {dom}");
        }
        assert_eq!(dom.matches("class=\"alive\"").count(), 2, "{dom}");
        assert_eq!(dom.matches("class=\"dead\"").count(), 1, "{dom}");
        for secret in [TEST_KEY, SECRET, ADMIN_TOKEN] {
            assert!(!dom.contains(secret), "the page shows a secret");
        }
    }
}
