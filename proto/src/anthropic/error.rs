//! Errors both ways. Anthropic's envelope is
//! `{"type":"error","error":{"type","message"}}` with its own type names,
//! and it answers 529 when overloaded, a status OpenAI clients do not know.

use serde_json::{json, Value};

use crate::error::ErrorBody;

/// Anthropic's "overloaded" status.
pub const OVERLOADED: u16 = 529;

/// The status an OpenAI client gets for an Anthropic upstream's status:
/// 529 becomes 503, which every OpenAI client retries as it should.
pub fn openai_status(anthropic_status: u16) -> u16 {
    if anthropic_status == OVERLOADED {
        503
    } else {
        anthropic_status
    }
}

/// The status an Anthropic client gets: 529 for an overload, as the
/// Anthropic SDKs expect, whatever status carried it here.
pub fn anthropic_status(status: u16, error: &ErrorBody) -> u16 {
    if error.error.kind == "overloaded_error" {
        OVERLOADED
    } else {
        status
    }
}

/// An OpenAI error object in Anthropic's envelope. The status decides the
/// type, as it does for Anthropic; an overload keeps its own.
pub fn body(status: u16, error: &ErrorBody) -> Value {
    let kind = match status {
        _ if error.error.kind == "overloaded_error" => "overloaded_error",
        400 | 422 => "invalid_request_error",
        401 => "authentication_error",
        402 => "billing_error",
        403 => "permission_error",
        404 => "not_found_error",
        413 => "request_too_large",
        429 => "rate_limit_error",
        504 => "timeout_error",
        OVERLOADED => "overloaded_error",
        _ => "api_error",
    };
    json!({"type": "error", "error": {"type": kind, "message": error.error.message}})
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorType;

    #[test]
    fn errors_take_anthropic_types() {
        let kind = |status, error: ErrorBody| body(status, &error)["error"]["type"].clone();
        assert_eq!(
            kind(400, ErrorBody::new(ErrorType::InvalidRequest, "x")),
            "invalid_request_error"
        );
        assert_eq!(
            kind(404, ErrorBody::new(ErrorType::InvalidRequest, "x")),
            "not_found_error"
        );
        assert_eq!(
            kind(429, ErrorBody::new(ErrorType::RequestsLimit, "x")),
            "rate_limit_error"
        );
        assert_eq!(
            kind(402, ErrorBody::new(ErrorType::InsufficientQuota, "x")),
            "billing_error"
        );
        assert_eq!(
            kind(502, ErrorBody::new(ErrorType::Upstream, "x")),
            "api_error"
        );
        let overloaded = ErrorBody::parse_lenient(
            br#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#,
        )
        .unwrap();
        assert_eq!(kind(503, overloaded.clone()), "overloaded_error");
        assert_eq!(anthropic_status(503, &overloaded), 529);
        assert_eq!(openai_status(529), 503);
        assert_eq!(
            body(401, &ErrorBody::new(ErrorType::Authentication, "bad key")),
            json!({"type": "error", "error": {"type": "authentication_error", "message": "bad key"}})
        );
    }
}
