//! Starting a node: bad config stops it with exit code 2 and a message
//! naming the file and the field; flags and `CHORUS_*` variables override
//! the file; logs are one structured line per request with no secrets;
//! and SIGHUP, which would stop a process by default, never stops a node.

use std::process::Command;
use std::time::Duration;

use chorus_tests::{
    bin_dir, chat_body, scratch_dir, standard_config, MockUpstream, Node, TEST_KEY, UPSTREAM_KEY,
};
use serde_json::{json, Value};

const GOOD_MODELS: &str = r#"
[[providers]]
name = "builtin"
format = "mock"

[[models]]
alias = "fast"
deployments = [{ provider = "builtin", model = "m" }]
"#;

/// Runs `chorus serve` on `config` and returns (exit code, stderr).
fn serve_fails(config: &str, env: &[(&str, &str)]) -> (Option<i32>, String) {
    let dir = scratch_dir();
    let path = dir.join("bad.toml");
    std::fs::write(&path, config).unwrap();
    let output = Command::new(bin_dir().join("chorus"))
        .args(["serve", "--config"])
        .arg(&path)
        .envs(env.iter().copied())
        .env_remove("CHORUS_LISTEN")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(
        stderr.contains(&path.display().to_string()),
        "names the file: {stderr}"
    );
    (output.status.code(), stderr)
}

#[test]
fn bad_configs_exit_2_naming_the_field() {
    let cases = [
        (
            format!("{GOOD_MODELS}\n[[models]]\nalias = \"x\"\ndeployments = [{{ provider = \"ghost\", model = \"m\" }}]"),
            ["models[1].deployments[0].provider", "unknown provider `ghost`"],
        ),
        (
            format!("{GOOD_MODELS}\n[[models]]\nalias = \"fast\"\ndeployments = [{{ provider = \"builtin\", model = \"m\" }}]"),
            ["models[1].alias", "defined twice"],
        ),
        (
            format!("{GOOD_MODELS}\n[[keys]]\nname = \"dev\"\nkey = \"${{CHORUS_TEST_UNSET_VARIABLE}}\""),
            ["keys[0].key", "`CHORUS_TEST_UNSET_VARIABLE` is not set"],
        ),
        (
            format!("{GOOD_MODELS}\n[[providers]]\nname = \"up\"\nformat = \"openai\"\nbase_url = \"ftp//nowhere\""),
            ["providers[1].base_url", "not a valid URL"],
        ),
        (
            format!("{GOOD_MODELS}\n[server]\nlisten = \"nowhere\""),
            ["server.listen", "not an address"],
        ),
        (format!("{GOOD_MODELS}\n[surprise]\nx = 1"), ["line 10", "unknown field `surprise`"]),
    ];
    for (config, [field, problem]) in cases {
        let (code, stderr) = serve_fails(&config, &[]);
        assert_eq!(code, Some(2), "{stderr}");
        assert!(stderr.contains(field), "names `{field}`: {stderr}");
        assert!(stderr.contains(problem), "says `{problem}`: {stderr}");
    }
    let missing = Command::new(bin_dir().join("chorus"))
        .args(["serve", "--config", "/nonexistent/chorus.toml"])
        .output()
        .unwrap();
    assert_eq!(missing.status.code(), Some(2));
}

#[tokio::test]
async fn the_example_config_starts_with_nothing_set() {
    let example =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/chorus.example.toml");
    let config = std::fs::read_to_string(example).unwrap();
    // Set but empty is the same as unset: the defaults apply.
    let unset = [
        ("CHORUS_DEV_KEY", ""),
        ("CHORUS_ADMIN_TOKEN", ""),
        ("OPENAI_API_KEY", ""),
        ("OPENAI_BASE_URL", ""),
        ("ANTHROPIC_API_KEY", ""),
    ];
    let node = Node::start_with(&config, &[], &unset).await;
    let response = reqwest::Client::new()
        .post(node.url("/v1/chat/completions"))
        .bearer_auth("sk-chorus-dev")
        .json(&chat_body("demo", false))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let status = reqwest::get(node.url("/status")).await.unwrap();
    assert_eq!(status.status(), 404, "no admin token, no status page");
    let body: Value = status.json().await.unwrap();
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("server.admin_token"));
}

#[test]
fn the_scripts_find_the_libclang_bindgen_loads_and_only_that() {
    let dir = scratch_dir();
    let loadable = |files: &[&str]| {
        let libs = dir.join(format!("libs-{}", files.len()));
        std::fs::create_dir_all(&libs).unwrap();
        for file in files {
            std::fs::write(libs.join(file), b"").unwrap();
        }
        let script = format!(
            "source deploy/prereqs.sh; LIBCLANG_PATH={} libclang_loadable",
            libs.display()
        );
        Command::new("bash")
            .args(["-c", &script])
            .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
            .status()
            .unwrap()
            .success()
    };
    assert!(!loadable(&[]));
    assert!(
        !loadable(&["libclang-cpp.so.14"]),
        "libclang-cpp is not libclang"
    );
    assert!(loadable(&["libclang-cpp.so.14", "libclang-14.so.1"]));
    assert!(loadable(&["a", "b", "libclang.so"]));
}

#[tokio::test]
async fn env_variables_fill_the_config_and_set_flags() {
    // The key comes from the environment; the log format from CHORUS_LOG_FORMAT.
    let config =
        format!("{GOOD_MODELS}\n[[keys]]\nname = \"env\"\nkey = \"${{CHORUS_TEST_KEY_FROM_ENV}}\"");
    let node = Node::start_with(
        &config,
        &[],
        &[
            ("CHORUS_TEST_KEY_FROM_ENV", "sk-from-env-1"),
            ("CHORUS_LOG_FORMAT", "json"),
        ],
    )
    .await;
    let response = reqwest::Client::new()
        .post(node.url("/v1/chat/completions"))
        .bearer_auth("sk-from-env-1")
        .json(&chat_body("fast", false))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let log = node.wait_for_log("request finished").await;
    assert!(
        log.lines()
            .all(|line| serde_json::from_str::<Value>(line).is_ok()),
        "{log}"
    );
}

#[tokio::test]
async fn one_json_log_line_per_request_without_secrets_or_prompts() {
    let upstream = MockUpstream::start(&[]);
    let node = Node::start_with(&standard_config(&upstream), &["--log-format", "json"], &[]).await;
    let secret_prompt = "my secret prompt text 4242";
    let body = json!({"model": "fast", "messages": [{"role": "user", "content": secret_prompt}]});
    let ok = node
        .chat(&body)
        .header("x-request-id", "log-test-ok")
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    let rejected = reqwest::Client::new()
        .post(node.url("/v1/chat/completions"))
        .header("x-request-id", "log-test-401")
        .bearer_auth("sk-wrong-key-777")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(rejected.status(), 401);
    node.chat(&chat_body("fault-500", false))
        .header("x-request-id", "log-test-500")
        .send()
        .await
        .unwrap();
    let mut stream = body.clone();
    stream["stream"] = json!(true);
    stream["stream_options"] = json!({"include_usage": true});
    node.chat(&stream)
        .header("x-request-id", "log-test-stream")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();

    let log = node.wait_for_log("log-test-stream").await;
    let lines: Vec<Value> = log
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    let for_request = |id: &str| -> Vec<&Value> {
        lines
            .iter()
            .filter(|line| line["request_id"] == id)
            .collect()
    };

    let ok_lines = for_request("log-test-ok");
    assert_eq!(ok_lines.len(), 1, "{log}");
    let line = ok_lines[0];
    assert_eq!(line["alias"], "fast");
    assert_eq!(line["deployment"], "up/gpt-4o-mini");
    assert_eq!(line["status"], 200);
    assert_eq!(line["completion_tokens"], 16);
    assert!(line["prompt_tokens"].as_u64().unwrap() > 0);
    assert!(line["latency_ms"].as_f64().unwrap() > 0.0);

    assert_eq!(for_request("log-test-401").len(), 1);
    assert_eq!(for_request("log-test-401")[0]["status"], 401);
    assert_eq!(for_request("log-test-500")[0]["status"], 500);
    let stream_line = for_request("log-test-stream");
    assert_eq!(stream_line.len(), 1);
    assert_eq!(stream_line[0]["completion_tokens"], 16);
    assert!(stream_line[0]["ttft_ms"].as_f64().is_some());

    for secret in [TEST_KEY, UPSTREAM_KEY, "sk-wrong-key-777", secret_prompt] {
        assert!(!log.contains(secret), "log leaks {secret:?}:\n{log}");
    }
}

#[tokio::test]
async fn listen_flag_and_env_override_the_file() {
    let port = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        probe.local_addr().unwrap().port()
    };
    let config = format!("[server]\nlisten = \"127.0.0.1:1\"\n{GOOD_MODELS}");
    let dir = scratch_dir();
    let path = dir.join("listen.toml");
    std::fs::write(&path, config).unwrap();
    let mut child = Command::new(bin_dir().join("chorus"))
        .arg("serve")
        .env("CHORUS_CONFIG", &path)
        .env("CHORUS_LISTEN", format!("127.0.0.1:{port}"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let url = format!("http://127.0.0.1:{port}/health/live");
    let live =
        chorus_tests::eventually(Duration::from_secs(10), "node on the env port", || async {
            reqwest::get(&url)
                .await
                .ok()
                .map(|response| response.status())
        })
        .await;
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(live, 200);
}

#[tokio::test]
async fn sighup_never_stops_a_node() {
    let mut node = Node::start(&chorus_tests::mock_config()).await;
    for _ in 0..3 {
        node.signal("HUP");
    }
    node.wait_for_log("SIGHUP received").await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!node.has_exited(), "the node stopped on SIGHUP");
    let answer = node.chat_json(&chat_body("fast", false)).await;
    assert_eq!(answer["model"], "fast");
}
