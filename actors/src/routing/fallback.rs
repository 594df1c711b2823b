//! Fallback chains: the aliases a request moves on to when its own alias
//! cannot answer. Which chain depends on what went wrong — the general one
//! once retries are used up (or nothing of the alias was usable), one for
//! a prompt too long for the model's context window, one for a reply the
//! provider's content filter refused — and is tried in order, each alias
//! once per request.

use std::sync::Arc;

use chorus_proto::ErrorBody;

use crate::provider::ProviderError;
use crate::routes::{AliasRoute, Routes};

/// What went wrong, as far as choosing a fallback chain goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FallbackKind {
    General,
    ContextWindow,
    ContentPolicy,
}

impl FallbackKind {
    const ALL: [FallbackKind; 3] = [
        FallbackKind::General,
        FallbackKind::ContextWindow,
        FallbackKind::ContentPolicy,
    ];

    fn index(self) -> usize {
        match self {
            FallbackKind::General => 0,
            FallbackKind::ContextWindow => 1,
            FallbackKind::ContentPolicy => 2,
        }
    }

    /// The chain an upstream 4xx calls for, if any: context-length and
    /// content-filter errors as OpenAI, Azure and Anthropic word them.
    pub fn of_request_error(cause: &ProviderError) -> Option<Self> {
        let ProviderError::Status { status, body, .. } = cause else {
            return None;
        };
        if !(400..=499).contains(status) {
            return None;
        }
        let upstream = ErrorBody::parse_lenient(body)?;
        let code = upstream.error.code.as_deref().unwrap_or_default();
        let message = upstream.error.message.to_ascii_lowercase();
        if code == "context_length_exceeded"
            || ["context length", "context window", "prompt is too long"]
                .iter()
                .any(|phrase| message.contains(phrase))
        {
            Some(FallbackKind::ContextWindow)
        } else if ["content_policy_violation", "content_filter"].contains(&code)
            || [
                "content management policy",
                "content policy",
                "content filter",
            ]
            .iter()
            .any(|phrase| message.contains(phrase))
        {
            Some(FallbackKind::ContentPolicy)
        } else {
            None
        }
    }
}

/// An alias's fallback chains by alias name, as configured.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FallbackNames {
    pub general: Vec<String>,
    pub context_window: Vec<String>,
    pub content_policy: Vec<String>,
}

impl FallbackNames {
    fn chain(&self, kind: FallbackKind) -> &[String] {
        match kind {
            FallbackKind::General => &self.general,
            FallbackKind::ContextWindow => &self.context_window,
            FallbackKind::ContentPolicy => &self.content_policy,
        }
    }

    pub fn is_empty(&self) -> bool {
        FallbackKind::ALL
            .iter()
            .all(|kind| self.chain(*kind).is_empty())
    }
}

/// The fallback aliases one request may use: its alias's chains, resolved,
/// less the aliases its key may not use.
#[derive(Debug, Default)]
pub struct Fallbacks {
    chains: [Vec<Arc<AliasRoute>>; 3],
    /// How far along each chain the request is.
    next: [usize; 3],
}

impl Fallbacks {
    pub fn resolve(route: &AliasRoute, routes: &Routes, allowed: impl Fn(&str) -> bool) -> Self {
        let names = &route.fallbacks;
        if names.is_empty() {
            return Fallbacks::default();
        }
        let resolve = |kind: FallbackKind| -> Vec<Arc<AliasRoute>> {
            names
                .chain(kind)
                .iter()
                .filter(|alias| allowed(alias))
                .filter_map(|alias| routes.get(alias).cloned())
                .collect()
        };
        Fallbacks {
            chains: FallbackKind::ALL.map(resolve),
            next: [0; 3],
        }
    }

    /// The next alias of the `kind` chain not in `visited`.
    pub fn next(&mut self, kind: FallbackKind, visited: &[String]) -> Option<Arc<AliasRoute>> {
        let index = kind.index();
        let chain = &self.chains[index];
        while let Some(route) = chain.get(self.next[index]) {
            self.next[index] += 1;
            if !visited.contains(&route.alias) {
                return Some(Arc::clone(route));
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn error(status: u16, body: &'static str) -> ProviderError {
        ProviderError::Status {
            status,
            body: Bytes::from_static(body.as_bytes()),
            retry_after: None,
        }
    }

    #[test]
    fn upstream_errors_are_classified_by_status_and_body() {
        let openai = error(
            400,
            r#"{"error":{"message":"This model's maximum context length is 8192 tokens","type":"invalid_request_error","code":"context_length_exceeded"}}"#,
        );
        let anthropic = error(
            400,
            r#"{"type":"error","error":{"type":"invalid_request_error","message":"prompt is too long: 210000 tokens > 200000 maximum"}}"#,
        );
        let azure = error(
            400,
            r#"{"error":{"message":"The response was filtered due to the prompt triggering Azure OpenAI's content management policy.","code":"content_filter"}}"#,
        );
        assert_eq!(
            FallbackKind::of_request_error(&openai),
            Some(FallbackKind::ContextWindow)
        );
        assert_eq!(
            FallbackKind::of_request_error(&anthropic),
            Some(FallbackKind::ContextWindow)
        );
        assert_eq!(
            FallbackKind::of_request_error(&azure),
            Some(FallbackKind::ContentPolicy)
        );
        let plain = error(400, r#"{"error":{"message":"bad temperature"}}"#);
        assert_eq!(FallbackKind::of_request_error(&plain), None);
        let server = error(500, r#"{"error":{"message":"context length"}}"#);
        assert_eq!(FallbackKind::of_request_error(&server), None);
    }
}
