use super::*;

fn check(text: &str) -> Result<Config, ConfigError> {
    let raw: RawConfig = toml::from_str(text).unwrap();
    validate(raw, Path::new("test.toml"), &|name| {
        (name == "SET").then(|| "secret".to_owned())
    })
}

const PROVIDERS: &str = r#"
    [[providers]]
    name = "up"
    format = "openai"
    base_url = "http://127.0.0.1:9001/v1/"
    api_key = "${SET}"
    [[providers]]
    name = "builtin"
    format = "mock"
"#;

const MODEL: &str =
    "[[models]]\nalias = \"a\"\ndeployments = [{ provider = \"up\", model = \"m\" }]";

fn with_models(models: &str) -> String {
    format!("{PROVIDERS}\n{models}")
}

#[test]
fn accepts_a_good_config_and_hashes_keys() {
    let config = check(&with_models(
        r#"
        [[models]]
        alias = "fast"
        deployments = [{ provider = "up", model = "gpt-4o-mini", input_per_mtok = 0.15 }]
        [[keys]]
        name = "dev"
        key = "${SET}"
        "#,
    ))
    .unwrap();
    assert_eq!(config.server.listen.to_string(), "127.0.0.1:4000");
    assert_eq!(config.keys[0].sha256, sha256("secret"));
    assert_eq!(
        config.models[0].deployments[0]
            .0
            .price
            .input_micros_per_mtok,
        150_000
    );
    match &config.providers[0].kind {
        ProviderKind::OpenAi {
            base_url,
            api_key,
            stream_usage,
            ..
        } => {
            assert_eq!(
                providers::endpoint_url(base_url.clone(), "chat/completions").as_str(),
                "http://127.0.0.1:9001/v1/chat/completions"
            );
            assert_eq!(api_key.as_deref(), Some("secret"));
            assert!(stream_usage);
        }
        other => panic!("unexpected {other:?}"),
    }
    assert!(!format!("{:?}", config.providers).contains("secret"));
}

#[test]
fn names_the_field_at_fault() {
    let cluster =
        |extra: &str| with_models(&format!("{MODEL}\n[cluster]\nnode_id = \"n\"\n{extra}"));
    let cases = [
        (with_models("[[models]]\nalias = \"a\"\ndeployments = [{ provider = \"nope\", model = \"m\" }]"), "models[0].deployments[0].provider", "unknown provider `nope`"),
        (with_models(&format!("{MODEL}\n{MODEL}")), "models[1].alias", "defined twice"),
        (with_models(&format!("{MODEL}\n[[keys]]\nname = \"k\"\nkey = \"${{MISSING}}\"")), "keys[0].key", "`MISSING` is not set"),
        ("[[providers]]\nname = \"p\"\nformat = \"openai\"\nbase_url = \"not a url\"\n[[models]]\nalias = \"a\"\ndeployments = [{ provider = \"p\", model = \"m\" }]".to_owned(), "providers[0].base_url", "not a valid URL"),
        ("[[providers]]\nname = \"p\"\nformat = \"grpc\"\n[[models]]\nalias = \"a\"\ndeployments = [{ provider = \"p\", model = \"m\" }]".to_owned(), "providers[0].format", "unknown format"),
        (PROVIDERS.to_owned(), "models", "at least one"),
        (cluster("secret = \"short\""), "cluster.secret", "at least 16"),
        (cluster("secret = \"0123456789abcdef\"\naccept_secrets = [\"old\"]"), "cluster.accept_secrets[0]", "at least 16"),
        (cluster("listen = \"0.0.0.0:7946\"\nsecret = \"0123456789abcdef\""), "cluster.advertise", "cannot reach"),
        (cluster("seeds = [\"nohost\"]\nsecret = \"0123456789abcdef\""), "cluster.seeds[0]", "needs a port"),
        (cluster("dead_node_grace_ms = 100\nsecret = \"0123456789abcdef\""), "cluster.dead_node_grace_ms", "ten gossip intervals"),
        (with_models("[[models]]\nalias = \"a\"\ndeployments = [{ provider = \"up\", model = \"m\", output_per_mtok = -1 }]"), "models[0].deployments[0].output_per_mtok", "price must be"),
        (with_models("[[models]]\nalias = \"a\"\nstrategy = \"fastest\"\ndeployments = [{ provider = \"up\", model = \"m\" }]"), "models[0].strategy", "use one of weighted, round-robin"),
        (with_models("[[models]]\nalias = \"a\"\nfallbacks = [\"b\"]\ndeployments = [{ provider = \"up\", model = \"m\" }]"), "models[0].fallbacks[0]", "unknown alias `b`"),
        (with_models("[[models]]\nalias = \"a\"\ncontext_window_fallbacks = [\"a\"]\ndeployments = [{ provider = \"up\", model = \"m\" }]"), "models[0].context_window_fallbacks[0]", "itself"),
        (with_models("[[models]]\nalias = \"a\"\ndeployments = [{ provider = \"up\", model = \"m\", weight = 0 }]"), "models[0].deployments[0].weight", "at least 1"),
        (with_models("[[models]]\nalias = \"a\"\nretry_backoff_ms = 9000\ndeployments = [{ provider = \"up\", model = \"m\" }]"), "models[0].retry_backoff_ms", "max_retry_wait_ms"),
        (with_models("[[models]]\nalias = \"a\"\ndeployments = [{ provider = \"up\", model = \"m\", rpm = 0 }]"), "models[0].deployments[0].rpm", "at least 1"),
        (with_models("[[models]]\nalias = \"a\"\ndeployments = [{ provider = \"up\", model = \"m\", tpm = 5 }]\n[[models]]\nalias = \"b\"\ndeployments = [{ provider = \"up\", model = \"m\" }]"), "models[1].deployments[0].model", "other prices or quotas"),
        (with_models("[[models]]\nalias = \"a-*-*\"\ndeployments = [{ provider = \"up\", model = \"m\" }]"), "models[0].alias", "one `*`"),
        (with_models("[[models]]\nalias = \"a\"\ndeployments = [{ provider = \"up\", model = \"m-*\" }]"), "models[0].deployments[0].model", "only a pattern alias"),
        (with_models("[[models]]\nalias = \"a\"\nfallbacks = [\"c-*\"]\ndeployments = [{ provider = \"up\", model = \"m\" }]\n[[models]]\nalias = \"c-*\"\ndeployments = [{ provider = \"up\", model = \"c-*\" }]"), "models[0].fallbacks[0]", "is a pattern"),
        (with_models("[[models]]\nalias = \"a\"\ndeployments = [{ provider = \"up\", model = \"m\", cache_read_per_mtok = -2 }]"), "models[0].deployments[0].cache_read_per_mtok", "price must be"),
    ];
    for (text, field, problem) in cases {
        let err = check(&text).unwrap_err();
        assert_eq!(err.problems.len(), 1, "{err}");
        assert_eq!(err.problems[0].field, field, "{err}");
        assert!(err.problems[0].problem.contains(problem), "{err}");
        assert!(err.to_string().starts_with("config `test.toml`: "));
    }
}

#[test]
fn reports_every_problem_in_the_file_at_once() {
    let text = r#"
        [server]
        listen = "nowhere"
        [[providers]]
        name = "p/q"
        format = "openai"
        [[providers]]
        name = "m"
        format = "mock"
        output_tokens = 0
        [[models]]
        alias = "a"
        deployments = [{ provider = "ghost", model = "" }]
        [[keys]]
        name = "k"
        key = "${MISSING}"
        [cluster]
        node_id = "bad id"
        secret = "short"
    "#;
    let err = check(text).unwrap_err();
    let fields: Vec<&str> = err.problems.iter().map(|p| p.field.as_str()).collect();
    assert_eq!(
        fields,
        [
            "server.listen",
            "providers[0].name",
            "providers[0].base_url",
            "providers[1].output_tokens",
            "models[0].deployments[0].provider",
            "models[0].deployments[0].model",
            "keys[0].key",
            "cluster.node_id",
            "cluster.secret",
        ],
        "{err}"
    );
    let message = err.to_string();
    assert!(
        message.starts_with("config `test.toml`: 9 problems\n  server.listen: "),
        "{message}"
    );
}

#[test]
fn the_example_config_starts_with_nothing_set() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/chorus.example.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    let raw: RawConfig = toml::from_str(&text).unwrap();
    let config = validate(raw, &path, &|_| None).unwrap();
    assert!(config.server.admin_token_sha256.is_none());
    assert!(!config.keys.is_empty());
}

#[test]
fn the_local_cluster_config_is_valid() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/local.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    let raw: RawConfig = toml::from_str(&text).unwrap();
    validate(raw, &path, &|_| Some("127.0.0.1:4001".to_owned())).unwrap();
}

#[test]
fn an_anthropic_provider_defaults_its_url_version_and_max_tokens() {
    let config = check(
        "[[providers]]\nname = \"claude\"\nformat = \"anthropic\"\napi_key = \"${SET}\"\n\
         [[models]]\nalias = \"a\"\ndeployments = [{ provider = \"claude\", model = \"m\" }]",
    )
    .unwrap();
    match &config.providers[0].kind {
        ProviderKind::Anthropic {
            messages_url,
            api_key,
            version,
            default_max_tokens,
            ..
        } => {
            assert_eq!(
                messages_url.as_str(),
                "https://api.anthropic.com/v1/messages"
            );
            assert_eq!(api_key.as_deref(), Some("secret"));
            assert_eq!(version, "2023-06-01");
            assert_eq!(*default_max_tokens, 4096);
        }
        other => panic!("not an anthropic provider: {other:?}"),
    }
    assert!(!format!("{:?}", config.providers).contains("secret"));
    let wrong = [
        (
            "format = \"anthropic\"\nmax_tokens = 0",
            "providers[0].max_tokens",
            "at least 1",
        ),
        (
            "format = \"anthropic\"\nstream_usage = false",
            "providers[0].stream_usage",
            "only to format `openai`",
        ),
        (
            "format = \"mock\"\nresponses = true",
            "providers[0].responses",
            "only to format `openai`",
        ),
        (
            "format = \"openai\"\nbase_url = \"http://x/v1\"\nanthropic_version = \"1\"",
            "providers[0].anthropic_version",
            "only to format `anthropic`",
        ),
        (
            "format = \"mock\"\napi_key = \"k\"",
            "providers[0].api_key",
            "formats `openai` and `anthropic`",
        ),
    ];
    for (provider, field, message) in wrong {
        let text = format!(
            "[[providers]]\nname = \"p\"\n{provider}\n\
             [[models]]\nalias = \"a\"\ndeployments = [{{ provider = \"p\", model = \"m\" }}]"
        );
        let error = check(&text).unwrap_err().to_string();
        assert!(
            error.contains(field) && error.contains(message),
            "{provider}: {error}"
        );
    }
}

#[test]
fn the_cache_is_on_with_a_store_and_checked() {
    let storage = "[storage]\npath = \"/var/lib/chorus\"\n";
    let with_store = check(&format!("{storage}{}", with_models(MODEL))).unwrap();
    let cache = with_store.cache.expect("on by default with a store");
    assert_eq!(cache.ttl, std::time::Duration::from_secs(3600));
    assert_eq!(cache.max_bytes, 256 * 1024 * 1024);
    assert!(!cache.shared);
    assert_eq!(with_store.models[0].cache, CachePolicy::Deterministic);
    assert_eq!(check(&with_models(MODEL)).unwrap().cache, None, "no store");
    let off = format!("{storage}[cache]\nenabled = false\n{}", with_models(MODEL));
    assert_eq!(check(&off).unwrap().cache, None);
    let always = with_models(&format!("{MODEL}\ncache = \"always\""));
    assert_eq!(check(&always).unwrap().models[0].cache, CachePolicy::Always);

    let problems = check(&format!(
        "[cache]\nttl_s = 0\n{}\ncache = \"sometimes\"",
        with_models(MODEL)
    ))
    .unwrap_err()
    .problems;
    let fields: Vec<&str> = problems.iter().map(|p| p.field.as_str()).collect();
    assert_eq!(fields, ["models[0].cache", "cache"], "{problems:?}");
    let bad_size = check(&format!(
        "{storage}[cache]\nmax_mb = 0\n{}",
        with_models(MODEL)
    ));
    assert_eq!(bad_size.unwrap_err().problems[0].field, "cache.max_mb");
}

#[test]
fn the_request_log_keeps_a_week_unless_told() {
    let storage = |extra: &str| {
        check(&format!(
            "[storage]\npath = \"/var/lib/chorus\"\n{extra}\n{}",
            with_models(MODEL)
        ))
    };
    let week = std::time::Duration::from_secs(7 * 86_400);
    let kept = storage("").unwrap().storage.unwrap();
    assert_eq!(kept.request_log_retention, Some(week));
    let off = storage("request_log_days = 0").unwrap().storage.unwrap();
    assert_eq!(off.request_log_retention, None);
    let huge = storage("request_log_days = 1000000000000000").unwrap_err();
    assert_eq!(huge.problems[0].field, "storage.request_log_days");
}

#[test]
fn stored_responses_keep_thirty_days_with_a_store_and_none_without() {
    let storage = "[storage]\npath = \"/var/lib/chorus\"\n";
    let kept = |extra: &str| check(&format!("{extra}\n{}", with_models(MODEL)));
    let month = std::time::Duration::from_secs(30 * 86_400);
    assert_eq!(kept(storage).unwrap().responses_ttl, Some(month));
    assert_eq!(kept("").unwrap().responses_ttl, None, "no store");
    let day = kept(&format!("{storage}[responses]\nttl_days = 1"));
    assert_eq!(
        day.unwrap().responses_ttl,
        Some(std::time::Duration::from_secs(86_400))
    );
    let off = kept(&format!("{storage}[responses]\nttl_days = 0"));
    assert_eq!(off.unwrap().responses_ttl, None);
    let storeless = kept("[responses]\nttl_days = 2").unwrap_err();
    assert_eq!(storeless.problems[0].field, "responses.ttl_days");
}
