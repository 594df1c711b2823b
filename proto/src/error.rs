//! The OpenAI error object, `{"error":{"message","type","param","code"}}`, which
//! every failure a client sees is shaped as, whatever its origin.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The envelope OpenAI clients and SDKs parse on any non-2xx status.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorDetail {
    pub message: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub param: Option<String>,
    pub code: Option<String>,
}

/// The `type` values Chorus itself emits; upstream errors keep their own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorType {
    /// The client sent something wrong (400, 404, 413).
    InvalidRequest,
    /// Missing, unknown, revoked or expired gateway key (401).
    Authentication,
    /// The key may not do this: a model outside its list (403).
    Permission,
    /// Over a key's or team's requests-per-minute or parallel limit (429).
    RequestsLimit,
    /// Over a key's or team's tokens-per-minute limit (429).
    TokensLimit,
    /// A key's or team's budget is spent (402).
    InsufficientQuota,
    /// Chorus could not get a usable answer from the upstream (502, 504).
    Upstream,
    /// The gateway cannot take the request right now: its store failed (503).
    Unavailable,
}

impl ErrorType {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorType::InvalidRequest => "invalid_request_error",
            ErrorType::Authentication => "authentication_error",
            ErrorType::Permission => "permission_error",
            // OpenAI's own types for its rate limits and quota.
            ErrorType::RequestsLimit => "requests",
            ErrorType::TokensLimit => "tokens",
            ErrorType::InsufficientQuota => "insufficient_quota",
            ErrorType::Upstream | ErrorType::Unavailable => "api_error",
        }
    }
}

impl ErrorBody {
    pub fn new(kind: ErrorType, message: impl Into<String>) -> Self {
        ErrorBody {
            error: ErrorDetail {
                message: message.into(),
                kind: kind.as_str().to_owned(),
                param: None,
                code: None,
            },
        }
    }

    pub fn with_code(mut self, code: impl Into<String>) -> Self {
        self.error.code = Some(code.into());
        self
    }

    pub fn with_param(mut self, param: impl Into<String>) -> Self {
        self.error.param = Some(param.into());
        self
    }

    /// Reads an upstream's error body leniently: providers differ in whether
    /// `code` is a string or a number and whether `param` is present at all.
    /// Returns `None` when the body is not an error object.
    pub fn parse_lenient(body: &[u8]) -> Option<ErrorBody> {
        let value: Value = serde_json::from_slice(body).ok()?;
        let detail = value.get("error")?;
        let text = |field: &str| match detail.get(field)? {
            Value::String(s) => Some(s.clone()),
            Value::Null => None,
            other => Some(other.to_string()),
        };
        Some(ErrorBody {
            error: ErrorDetail {
                message: text("message")?,
                kind: text("type").unwrap_or_else(|| ErrorType::Upstream.as_str().to_owned()),
                param: text("param"),
                code: text("code"),
            },
        })
    }

    pub fn to_json(&self) -> Vec<u8> {
        // Serialising plain strings and options into a Vec cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serialises_in_openai_shape() {
        let body = ErrorBody::new(ErrorType::InvalidRequest, "bad")
            .with_param("model")
            .with_code("missing_field");
        let value: Value = serde_json::from_slice(&body.to_json()).unwrap();
        assert_eq!(
            value,
            serde_json::json!({"error":{"message":"bad","type":"invalid_request_error","param":"model","code":"missing_field"}})
        );
    }

    #[test]
    fn parses_upstream_errors_with_numeric_codes() {
        let body = br#"{"error":{"message":"slow down","type":"requests","code":429}}"#;
        let parsed = ErrorBody::parse_lenient(body).unwrap();
        assert_eq!(parsed.error.message, "slow down");
        assert_eq!(parsed.error.code.as_deref(), Some("429"));
        assert_eq!(parsed.error.param, None);
        assert!(ErrorBody::parse_lenient(b"<html>oops</html>").is_none());
        assert!(ErrorBody::parse_lenient(br#"{"detail":"x"}"#).is_none());
    }
}
