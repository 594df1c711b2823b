//! `[[providers]]`: the upstreams, each an OpenAI-compatible endpoint, an
//! Anthropic Messages endpoint, or the built-in mock.

use std::collections::BTreeMap;
use std::time::Duration;

use chorus_proto::mock::MAX_OUTPUT_TOKENS;
use chorus_proto::CacheRates;
use serde::Deserialize;

use super::checker::Checker;

const DEFAULT_TIMEOUT_MS: u64 = 60_000;
const DEFAULT_MOCK_OUTPUT_TOKENS: u64 = 16;
const MAX_MOCK_TOKEN_DELAY_MS: u64 = 60_000;
const ANTHROPIC_BASE_URL: &str = "https://api.anthropic.com/v1";
const DEFAULT_ANTHROPIC_MAX_TOKENS: u64 = 4096;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawProvider {
    /// Unique name that deployments refer to.
    pub name: String,
    /// `openai` (any OpenAI-compatible HTTP endpoint), `anthropic` (the
    /// Messages API) or `mock` (built in).
    pub format: String,
    /// HTTP formats: base URL up to and including `/v1`. Required for
    /// `openai`; `anthropic` defaults to `https://api.anthropic.com/v1`.
    pub base_url: Option<String>,
    /// HTTP formats: the upstream's key, sent as `Authorization: Bearer`
    /// (`openai`) or `x-api-key` (`anthropic`). Optional (empty means
    /// none); `${VAR}` allowed.
    pub api_key: Option<String>,
    /// HTTP formats: extra headers sent with every call (e.g. Azure's
    /// `api-key`, OpenRouter's `HTTP-Referer`, Anthropic's
    /// `anthropic-beta`). Values allow `${VAR}`.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// `anthropic` only: the `anthropic-version` header. Default `2023-06-01`.
    pub anthropic_version: Option<String>,
    /// `anthropic` only: `max_tokens` for requests that set none, which
    /// Anthropic requires. Default 4096.
    pub max_tokens: Option<u64>,
    /// `openai` only: ask for token usage on streams
    /// (`stream_options.include_usage`), removed again from what clients
    /// that did not ask receive. Set `false` for an upstream that refuses
    /// the option; usage is then estimated. Default true.
    pub stream_usage: Option<bool>,
    /// `openai` only: the upstream also speaks OpenAI's Responses API
    /// (`/v1/responses`), so Responses requests pass through to it as
    /// they came instead of being translated to chat completions. Default
    /// false.
    pub responses: Option<bool>,
    /// Wait for headers, a whole body, or the next stream event, in ms. Default 60000.
    pub timeout_ms: Option<u64>,
    /// `mock` only: delay before each streamed token, in ms. Default 0.
    pub token_delay_ms: Option<u64>,
    /// `mock` only: tokens per completion, capped by the request's max_tokens. Default 16.
    pub output_tokens: Option<u64>,
}

#[derive(Debug, Clone)]
pub struct ProviderConfig {
    pub name: String,
    pub timeout: Duration,
    pub kind: ProviderKind,
}

#[derive(Clone)]
pub enum ProviderKind {
    OpenAi {
        /// `base_url`, parsed once here; each endpoint's path is appended.
        base_url: reqwest::Url,
        api_key: Option<String>,
        /// Sent with every call; values may be secrets.
        headers: Vec<(String, String)>,
        stream_usage: bool,
        /// Speaks the Responses API too.
        responses: bool,
    },
    Anthropic {
        /// `base_url` + `/messages`, parsed once here.
        messages_url: reqwest::Url,
        api_key: Option<String>,
        version: String,
        /// Sent with every call; values may be secrets.
        headers: Vec<(String, String)>,
        default_max_tokens: u64,
    },
    Mock {
        token_delay: Duration,
        output_tokens: u64,
    },
}

/// Hand-written so the upstream key can never reach a log through `{:?}`.
impl std::fmt::Debug for ProviderKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ProviderKind::OpenAi {
                base_url,
                api_key,
                headers,
                stream_usage,
                responses,
            } => f
                .debug_struct("OpenAi")
                .field("host", &base_url.host_str())
                .field("api_key", &api_key.as_ref().map(|_| "<redacted>"))
                .field(
                    "headers",
                    &headers.iter().map(|(name, _)| name).collect::<Vec<_>>(),
                )
                .field("stream_usage", stream_usage)
                .field("responses", responses)
                .finish(),
            ProviderKind::Anthropic {
                messages_url,
                api_key,
                version,
                headers,
                default_max_tokens,
            } => f
                .debug_struct("Anthropic")
                .field("host", &messages_url.host_str())
                .field("api_key", &api_key.as_ref().map(|_| "<redacted>"))
                .field("version", version)
                .field(
                    "headers",
                    &headers.iter().map(|(name, _)| name).collect::<Vec<_>>(),
                )
                .field("default_max_tokens", default_max_tokens)
                .finish(),
            ProviderKind::Mock {
                token_delay,
                output_tokens,
            } => f
                .debug_struct("Mock")
                .field("token_delay", token_delay)
                .field("output_tokens", output_tokens)
                .finish(),
        }
    }
}

/// The providers that check out; every problem of the others is noted.
/// What a provider of `format` bills for cached prompt tokens, as its
/// deployments' default cache prices: Anthropic's rates for `anthropic`,
/// OpenAI's for every OpenAI-compatible server and the mock.
pub fn cache_rates(format: &str) -> CacheRates {
    match format {
        "anthropic" => CacheRates::ANTHROPIC,
        _ => CacheRates::OPENAI,
    }
}

pub fn check(raw: &[RawProvider], checker: &mut Checker) -> Vec<ProviderConfig> {
    let mut providers = Vec::with_capacity(raw.len());
    let mut names = std::collections::HashSet::new();
    for (index, provider) in raw.iter().enumerate() {
        let at = |field: &str| format!("providers[{index}].{field}");
        let mut named = true;
        if provider.name.trim().is_empty() {
            checker.problem(at("name"), "must not be empty");
            named = false;
        } else if provider.name.contains('/') {
            // Deployments are named `provider/model`.
            checker.problem(at("name"), "must not contain `/`");
            named = false;
        } else if !names.insert(provider.name.as_str()) {
            checker.problem(
                at("name"),
                format!("provider `{}` is defined twice", provider.name),
            );
            named = false;
        }
        let timeout_ms = provider.timeout_ms.unwrap_or(DEFAULT_TIMEOUT_MS);
        if timeout_ms == 0 {
            checker.problem(at("timeout_ms"), "must be at least 1");
        }
        let kind = kind(provider, &at, checker);
        if let (true, Some(kind), true) = (named, kind, timeout_ms > 0) {
            providers.push(ProviderConfig {
                name: provider.name.clone(),
                timeout: Duration::from_millis(timeout_ms),
                kind,
            });
        }
    }
    providers
}

/// `base` with `endpoint` appended to its path, keeping any query
/// (Azure's `?api-version=`).
pub fn endpoint_url(mut base: reqwest::Url, endpoint: &str) -> reqwest::Url {
    let path = format!("{}/{endpoint}", base.path().trim_end_matches('/'));
    base.set_path(&path);
    base
}

fn kind(
    provider: &RawProvider,
    at: &dyn Fn(&str) -> String,
    checker: &mut Checker,
) -> Option<ProviderKind> {
    let only_for = |checker: &mut Checker, field: &str, set: bool, formats: &str| {
        if set {
            checker.problem(at(field), format!("`{field}` applies only to {formats}"));
        }
        !set
    };
    let not_mock = |checker: &mut Checker| {
        only_for(
            checker,
            "token_delay_ms",
            provider.token_delay_ms.is_some(),
            "format `mock`",
        ) & only_for(
            checker,
            "output_tokens",
            provider.output_tokens.is_some(),
            "format `mock`",
        )
    };
    let not_anthropic = |checker: &mut Checker| {
        let format = "format `anthropic`";
        only_for(
            checker,
            "anthropic_version",
            provider.anthropic_version.is_some(),
            format,
        ) & only_for(checker, "max_tokens", provider.max_tokens.is_some(), format)
    };
    let not_openai = |checker: &mut Checker| {
        let format = "format `openai`";
        only_for(
            checker,
            "stream_usage",
            provider.stream_usage.is_some(),
            format,
        ) & only_for(checker, "responses", provider.responses.is_some(), format)
    };
    match provider.format.as_str() {
        "openai" => {
            let fits = not_mock(checker) & not_anthropic(checker);
            let base_url = http_url(provider, None, at, checker);
            let api_key = api_key(provider, at, checker);
            let headers = http_headers(provider, at, checker);
            Some(ProviderKind::OpenAi {
                base_url: base_url?,
                api_key: api_key?,
                headers: headers?,
                stream_usage: provider.stream_usage.unwrap_or(true),
                responses: provider.responses.unwrap_or(false),
            })
            .filter(|_| fits)
        }
        "anthropic" => {
            let fits = not_mock(checker) & not_openai(checker);
            let messages_url = http_url(provider, Some(ANTHROPIC_BASE_URL), at, checker)
                .map(|base| endpoint_url(base, "messages"));
            let api_key = api_key(provider, at, checker);
            let headers = http_headers(provider, at, checker);
            let version = provider
                .anthropic_version
                .clone()
                .unwrap_or_else(|| chorus_proto::anthropic::DEFAULT_VERSION.to_owned());
            let mut valid = fits;
            if http::HeaderValue::from_str(&version).is_err() || version.is_empty() {
                checker.problem(
                    at("anthropic_version"),
                    "must be a version such as `2023-06-01`",
                );
                valid = false;
            }
            let default_max_tokens = provider.max_tokens.unwrap_or(DEFAULT_ANTHROPIC_MAX_TOKENS);
            if default_max_tokens == 0 {
                checker.problem(at("max_tokens"), "must be at least 1");
                valid = false;
            }
            Some(ProviderKind::Anthropic {
                messages_url: messages_url?,
                api_key: api_key?,
                version,
                headers: headers?,
                default_max_tokens,
            })
            .filter(|_| valid)
        }
        "mock" => {
            let http_only = "formats `openai` and `anthropic`";
            let fits = only_for(checker, "base_url", provider.base_url.is_some(), http_only)
                & only_for(checker, "api_key", provider.api_key.is_some(), http_only)
                & only_for(checker, "headers", !provider.headers.is_empty(), http_only)
                & not_openai(checker)
                & not_anthropic(checker);
            let output_tokens = provider.output_tokens.unwrap_or(DEFAULT_MOCK_OUTPUT_TOKENS);
            let mut valid = fits;
            if !(1..=MAX_OUTPUT_TOKENS).contains(&output_tokens) {
                checker.problem(
                    at("output_tokens"),
                    format!("must be between 1 and {MAX_OUTPUT_TOKENS}"),
                );
                valid = false;
            }
            let token_delay_ms = provider.token_delay_ms.unwrap_or(0);
            if token_delay_ms > MAX_MOCK_TOKEN_DELAY_MS {
                checker.problem(
                    at("token_delay_ms"),
                    format!("must be at most {MAX_MOCK_TOKEN_DELAY_MS}"),
                );
                valid = false;
            }
            valid.then(|| ProviderKind::Mock {
                token_delay: Duration::from_millis(token_delay_ms),
                output_tokens,
            })
        }
        other => {
            checker.problem(
                at("format"),
                format!("unknown format `{other}`: use `openai`, `anthropic` or `mock`"),
            );
            None
        }
    }
}

/// The upstream's key, `${VAR}` expanded; empty means none.
fn api_key(
    provider: &RawProvider,
    at: &dyn Fn(&str) -> String,
    checker: &mut Checker,
) -> Option<Option<String>> {
    match &provider.api_key {
        Some(key) => checker
            .expand(&at("api_key"), key)
            .map(|key| Some(key).filter(|key| !key.is_empty())),
        None => Some(None),
    }
}

/// `base_url`, or `default` when none is written.
fn http_url(
    provider: &RawProvider,
    default: Option<&str>,
    at: &dyn Fn(&str) -> String,
    checker: &mut Checker,
) -> Option<reqwest::Url> {
    let Some(written) = provider.base_url.as_deref().or(default) else {
        checker.problem(
            at("base_url"),
            format!(
                "required for format `{}`, e.g. `https://api.openai.com/v1`",
                provider.format
            ),
        );
        return None;
    };
    // Messages quote the value as written, so an expanded secret (a key
    // in the URL, say) is never printed.
    let base_url = checker.expand(&at("base_url"), written)?;
    match reqwest::Url::parse(&base_url) {
        Ok(url) if matches!(url.scheme(), "http" | "https") && url.host().is_some() => Some(url),
        Ok(_) => {
            checker.problem(
                at("base_url"),
                format!("`{written}` must be an http:// or https:// URL"),
            );
            None
        }
        Err(e) => {
            checker.problem(
                at("base_url"),
                format!("`{written}` is not a valid URL: {e}"),
            );
            None
        }
    }
}

fn http_headers(
    provider: &RawProvider,
    at: &dyn Fn(&str) -> String,
    checker: &mut Checker,
) -> Option<Vec<(String, String)>> {
    let mut headers = Vec::with_capacity(provider.headers.len());
    let mut valid = true;
    for (name, value) in &provider.headers {
        let field = at(&format!("headers.{name}"));
        let Some(value) = checker.expand(&field, value) else {
            valid = false;
            continue;
        };
        if http::HeaderName::from_bytes(name.as_bytes()).is_err() {
            checker.problem(field, format!("`{name}` is not a valid header name"));
            valid = false;
        } else if http::HeaderValue::from_str(&value).is_err() {
            checker.problem(field, "the value is not a valid header value");
            valid = false;
        } else {
            headers.push((name.clone(), value));
        }
    }
    valid.then_some(headers)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_query_of_the_base_url() {
        let url =
            reqwest::Url::parse("https://x.example/openai/deployments/d/?api-version=2024-06-01")
                .unwrap();
        assert_eq!(
            endpoint_url(url, "chat/completions").as_str(),
            "https://x.example/openai/deployments/d/chat/completions?api-version=2024-06-01"
        );
    }
}
