//! The node's providers: each configured `[[providers]]` entry becomes an
//! implementation of the actors' `Provider` trait.

mod anthropic;
mod http;
mod mock;
mod openai;

use std::sync::Arc;

use chorus_actors::Provider;

use crate::config::{ProviderConfig, ProviderKind};

pub use anthropic::AnthropicProvider;
pub use mock::MockProvider;
pub use openai::{OpenAiProvider, Speaks};

/// Builds the provider for one config entry. `http` is shared by all HTTP
/// providers so they share one connection pool.
pub fn build(config: &ProviderConfig, http: &reqwest::Client) -> Arc<dyn Provider> {
    match &config.kind {
        ProviderKind::OpenAi {
            base_url,
            api_key,
            headers,
            stream_usage,
            responses,
        } => Arc::new(OpenAiProvider::new(
            http.clone(),
            base_url,
            api_key.as_deref(),
            headers,
            Speaks {
                stream_usage: *stream_usage,
                responses: *responses,
            },
        )),
        ProviderKind::Anthropic {
            messages_url,
            api_key,
            version,
            headers,
            default_max_tokens,
        } => Arc::new(AnthropicProvider::new(
            http.clone(),
            messages_url.clone(),
            api_key.as_deref(),
            version,
            headers,
            *default_max_tokens,
        )),
        ProviderKind::Mock {
            token_delay,
            output_tokens,
        } => Arc::new(MockProvider::new(*token_delay, *output_tokens)),
    }
}

/// The HTTP client for upstreams: no retries of its own (the gateway decides
/// what to retry), no redirects, no Nagle delay, and enough idle connections
/// kept per upstream for a busy node.
pub fn http_client() -> reqwest::Result<reqwest::Client> {
    reqwest::Client::builder()
        .tcp_nodelay(true)
        .retry(reqwest::retry::never())
        // A redirect would resend configured secret headers to another
        // host and turn the POST into a GET: treat it as an error instead.
        .redirect(reqwest::redirect::Policy::none())
        .pool_max_idle_per_host(1024)
        .connect_timeout(std::time::Duration::from_secs(10))
        .build()
}
