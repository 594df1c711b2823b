//! The status page renders in a real browser (headless Chromium, which
//! `tests/run.sh` installs), names every live node on every node, and shows
//! no secret.

use std::process::Command;

use chorus_tests::{scratch_dir, start_cluster, TEST_KEY};

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
            "--virtual-time-budget=1000",
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

#[tokio::test]
async fn every_node_renders_a_page_naming_every_live_node() {
    let (nodes, _) = start_cluster(&["page-a", "page-b"], SECRET).await;
    for node in &nodes {
        let url = node.url("/status");
        let dom = tokio::task::spawn_blocking(move || rendered_dom(&url))
            .await
            .unwrap();
        assert!(dom.contains("<table id=\"members\">"), "{dom}");
        for name in ["page-a", "page-b", "builtin/mock"] {
            assert!(dom.contains(name), "the page does not name {name}: {dom}");
        }
        assert_eq!(dom.matches("class=\"alive\"").count(), 2, "{dom}");
        for secret in [TEST_KEY, SECRET] {
            assert!(!dom.contains(secret), "the page shows a secret");
        }
    }
}
