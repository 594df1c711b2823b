//! A failed upstream call as the client sees it: the status to answer with and
//! an OpenAI error object whose message names the deployment but never a key.

use chorus_proto::{ErrorBody, ErrorType};

use crate::provider::ProviderError;
use crate::routing::Unavailable;

/// Why a request got no completion.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    /// The last attempt failed, and the plan had no other.
    #[error("{error} (after {attempts} attempts)")]
    Upstream { error: CallError, attempts: u32 },
    /// No deployment of the alias could take a call.
    #[error("no deployment of `{}` is usable", .0.alias)]
    Unavailable(Unavailable),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("deployment `{deployment}`: {cause}")]
pub struct CallError {
    pub deployment: String,
    pub cause: ProviderError,
}

impl CallError {
    /// Upstream error statuses pass through, except those that describe the
    /// gateway's own setup rather than the client's request — credentials or
    /// access refused (401, 403), or the configured upstream model unknown
    /// (404) — and anything that is not an error status at all: those
    /// become 502, since the client asked for a model that is listed.
    pub fn status(&self) -> u16 {
        match &self.cause {
            ProviderError::Status { status, .. } if gateway_misconfigured(*status) => 502,
            ProviderError::Status { status, .. } => *status,
            ProviderError::Refused(_) => 400,
            ProviderError::Timeout(_) => 504,
            ProviderError::Unreachable(_)
            | ProviderError::Malformed(_)
            | ProviderError::Reported(_)
            | ProviderError::Broken(_) => 502,
        }
    }

    pub fn retry_after(&self) -> Option<&str> {
        match &self.cause {
            ProviderError::Status { retry_after, .. } => retry_after.as_deref(),
            _ => None,
        }
    }

    pub fn to_error_body(&self) -> ErrorBody {
        let deployment = &self.deployment;
        match &self.cause {
            // The upstream's own message is dropped here: for 401 and 403 it
            // may echo part of the gateway's key.
            ProviderError::Status { status, .. } if gateway_misconfigured(*status) => {
                ErrorBody::new(
                    ErrorType::Upstream,
                    format!(
                        "upstream `{deployment}` refused the gateway's request with status \
                         {status}: check the provider's key, access and model name"
                    ),
                )
                .with_code("upstream_misconfigured")
            }
            ProviderError::Status { status, body, .. } => match ErrorBody::parse_lenient(body) {
                Some(mut upstream) => {
                    upstream.error.message = format!(
                        "upstream `{deployment}` answered {status}: {}",
                        upstream.error.message
                    );
                    upstream
                }
                None => ErrorBody::new(
                    ErrorType::Upstream,
                    format!("upstream `{deployment}` answered {status}"),
                )
                .with_code("upstream_error"),
            },
            ProviderError::Refused(body) => {
                let mut refusal = ErrorBody::parse_lenient(body).unwrap_or_else(|| {
                    ErrorBody::new(
                        ErrorType::InvalidRequest,
                        "the request cannot be translated",
                    )
                });
                refusal.error.message = format!(
                    "deployment `{deployment}` cannot take this request: {}",
                    refusal.error.message
                );
                refusal
            }
            ProviderError::Unreachable(detail) => ErrorBody::new(
                ErrorType::Upstream,
                format!("upstream `{deployment}` is unreachable: {detail}"),
            )
            .with_code("upstream_unreachable"),
            ProviderError::Timeout(after) => ErrorBody::new(
                ErrorType::Upstream,
                format!(
                    "upstream `{deployment}` did not answer within {} ms",
                    after.as_millis()
                ),
            )
            .with_code("upstream_timeout"),
            ProviderError::Malformed(detail) => ErrorBody::new(
                ErrorType::Upstream,
                format!("upstream `{deployment}` sent a malformed response: {detail}"),
            )
            .with_code("upstream_malformed_response"),
            ProviderError::Reported(message) => ErrorBody::new(
                ErrorType::Upstream,
                format!("upstream `{deployment}` reported an error mid-stream: {message}"),
            )
            .with_code("upstream_stream_error"),
            ProviderError::Broken(detail) => ErrorBody::new(
                ErrorType::Upstream,
                format!("upstream `{deployment}` broke off mid-response: {detail}"),
            )
            .with_code("upstream_broken"),
        }
    }
}

fn gateway_misconfigured(status: u16) -> bool {
    matches!(status, 401 | 403 | 404) || !(400..=599).contains(&status)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use std::time::Duration;

    fn error(cause: ProviderError) -> CallError {
        CallError {
            deployment: "p/m".into(),
            cause,
        }
    }

    #[test]
    fn statuses() {
        let status = |code| ProviderError::Status {
            status: code,
            body: Bytes::new(),
            retry_after: None,
        };
        assert_eq!(error(status(429)).status(), 429);
        assert_eq!(error(status(500)).status(), 500);
        assert_eq!(error(status(401)).status(), 502);
        assert_eq!(error(status(404)).status(), 502);
        assert_eq!(error(status(302)).status(), 502);
        assert_eq!(
            error(ProviderError::Timeout(Duration::from_secs(1))).status(),
            504
        );
        assert_eq!(error(ProviderError::Unreachable("x".into())).status(), 502);
    }

    #[test]
    fn upstream_auth_messages_are_not_echoed() {
        let leaked = Bytes::from_static(
            br#"{"error":{"message":"Incorrect API key provided: sk-abc***xyz"}}"#,
        );
        let body = error(ProviderError::Status {
            status: 401,
            body: leaked,
            retry_after: None,
        })
        .to_error_body();
        assert!(!body.error.message.contains("sk-"));
    }

    #[test]
    fn upstream_error_objects_keep_type_and_code() {
        let upstream = Bytes::from_static(
            br#"{"error":{"message":"context too long","type":"invalid_request_error","param":"messages","code":"context_length_exceeded"}}"#,
        );
        let body = error(ProviderError::Status {
            status: 400,
            body: upstream,
            retry_after: None,
        })
        .to_error_body();
        assert_eq!(body.error.kind, "invalid_request_error");
        assert_eq!(body.error.code.as_deref(), Some("context_length_exceeded"));
        assert!(body.error.message.contains("context too long"));
        assert!(body.error.message.contains("`p/m`"));
    }
}
