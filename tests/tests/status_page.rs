//! The status page renders in a real browser (headless Chromium, which
//! `tests/run.sh` installs): it shows nothing without the admin token,
//! and with it names every node on every node, dead ones as dead, and no
//! secret; it draws the last minutes of each alias and deployment as
//! inline SVG charts, and a screenshot of it is kept for a person to look
//! at (`$CHORUS_TEST_ARTIFACTS`, default `/tmp/chorus-test-artifacts`).

use std::process::Command;
use std::time::Duration;

use chorus_tests::{
    eventually, mock_config, scratch_dir, start_cluster, Node, ADMIN_TOKEN, TEST_KEY,
};
use serde_json::json;

const SECRET: &str = "status-page-secret-0123456789";

/// What headless Chromium prints for `url`, rendered, with `output_args`
/// (`--dump-dom`, `--screenshot=...`).
fn chromium(url: &str, output_args: &[&str]) -> String {
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
        .args(output_args)
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
    tokio::task::spawn_blocking(move || chromium(&url, &["--dump-dom"]))
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

#[tokio::test]
async fn the_page_charts_the_last_minutes_of_each_alias_and_deployment() {
    let node = Node::start(&mock_config()).await;
    let client = reqwest::Client::new();
    for i in 0..12 {
        let body = json!({"model": "fast", "stream": i % 2 == 0,
            "messages": [{"role": "user", "content": format!("chart {i}")}]});
        let response = client
            .post(node.url("/v1/chat/completions"))
            .bearer_auth(TEST_KEY)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        response.bytes().await.unwrap();
    }
    let limited = node
        .create_key(json!({"name": "one-a-minute", "rpm": 1}))
        .await;
    let statuses = [
        node.chat_status_with(&limited, "fast").await,
        node.chat_status_with(&limited, "fast").await,
    ];
    assert_eq!(statuses, [200, 429]);

    let page = node.url(&format!("/status#token={ADMIN_TOKEN}"));
    let dom = render(page.clone()).await;
    for table in ["recent-aliases", "recent-deployments"] {
        assert!(dom.contains(&format!("<table id=\"{table}\">")), "{dom}");
    }
    assert!(dom.contains("data-series=\"fast\""), "{dom}");
    assert!(dom.contains("data-series=\"builtin/mock\""), "{dom}");
    assert_eq!(
        dom.matches("class=\"chart\"").count(),
        10,
        "five charts a row: {dom}"
    );
    for line in ["rps", "p50", "p99", "errors", "rejections", "spend"] {
        assert!(
            dom.contains(&format!("data-line=\"{line}\"")),
            "no {line} line: {dom}"
        );
    }
    // The alias's traffic, spend and rejection are there, not flat zeros.
    let aliases = dom
        .split("<table id=\"recent-aliases\">")
        .nth(1)
        .and_then(|rest| rest.split("</table>").next())
        .expect("the aliases' charts");
    for flat in ["requests · 0.0/s", "spend · $0.0000<", "errors · 0 %"] {
        assert!(!aliases.contains(flat), "{flat} in {aliases}");
    }
    assert!(!dom.contains(&limited), "no key on the page");

    let artifacts = std::env::var("CHORUS_TEST_ARTIFACTS")
        .unwrap_or_else(|_| "/tmp/chorus-test-artifacts".to_owned());
    std::fs::create_dir_all(&artifacts).unwrap();
    let screenshot = format!("{artifacts}/status-page.png");
    let _ = std::fs::remove_file(&screenshot);
    let taken = screenshot.clone();
    tokio::task::spawn_blocking(move || {
        chromium(
            &page,
            &[&format!("--screenshot={taken}"), "--window-size=1300,900"],
        )
    })
    .await
    .unwrap();
    let png = std::fs::read(&screenshot).expect("the screenshot");
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 10_000,
        "{} bytes",
        png.len()
    );
    eprintln!("status page screenshot: {screenshot}");
}
