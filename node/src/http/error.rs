//! `ApiError`: a status and an OpenAI error object, and the one place that
//! turns either into an HTTP response.

use axum::response::{IntoResponse, Response};
use chorus_actors::routing::Unavailable;
use chorus_actors::{CallError, RequestError};
use chorus_proto::{anthropic, ErrorBody, ErrorType};
use http::header::{CONTENT_TYPE, RETRY_AFTER};
use http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};

/// The deployment that answered, or whose error is the answer.
pub const DEPLOYMENT_HEADER: &str = "x-chorus-deployment";
/// Upstream calls made for the request, retries included.
pub const ATTEMPTS_HEADER: &str = "x-chorus-attempts";

#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    /// Boxed: errors travel in `Result`s on the request path, kept small.
    pub body: Box<ErrorBody>,
    pub retry_after: Option<String>,
    /// More headers for the response: the `x-ratelimit-*` of a 429.
    pub headers: Option<Box<HeaderMap>>,
}

impl ApiError {
    pub fn new(
        status: StatusCode,
        kind: ErrorType,
        code: &str,
        message: impl Into<String>,
    ) -> Self {
        ApiError {
            status,
            body: Box::new(ErrorBody::new(kind, message).with_code(code)),
            retry_after: None,
            headers: None,
        }
    }

    /// A 400 with `body`.
    pub fn bad_request(body: ErrorBody) -> Self {
        ApiError {
            status: StatusCode::BAD_REQUEST,
            body: Box::new(body),
            retry_after: None,
            headers: None,
        }
    }

    pub fn with_headers(mut self, headers: HeaderMap) -> Self {
        self.headers = Some(Box::new(headers));
        self
    }

    pub fn with_param(mut self, param: impl Into<String>) -> Self {
        self.body.error.param = Some(param.into());
        self
    }
}

impl From<RequestError> for ApiError {
    /// The last attempt's error, or 503 when no deployment could take a
    /// call; either way with what happened in `x-chorus-*` headers.
    fn from(error: RequestError) -> Self {
        let mut headers = HeaderMap::new();
        let (error, attempts) = match error {
            RequestError::Upstream { error, attempts } => {
                if let Ok(deployment) = HeaderValue::from_str(&error.deployment) {
                    headers.insert(DEPLOYMENT_HEADER, deployment);
                }
                (ApiError::from(error), attempts)
            }
            RequestError::Unavailable(Unavailable {
                alias,
                retry_after_ms,
            }) => {
                let seconds = retry_after_ms.div_ceil(1_000).max(1);
                let mut error = ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    ErrorType::Upstream,
                    "no_deployment_available",
                    format!(
                        "no deployment of `{alias}` can take requests now (circuit breakers \
                         open, cooling down after a 429, or over the provider's quota); \
                         retry in {seconds} s"
                    ),
                );
                error.retry_after = Some(seconds.to_string());
                (error, 0)
            }
        };
        headers.insert(ATTEMPTS_HEADER, HeaderValue::from(attempts));
        error.with_headers(headers)
    }
}

impl From<CallError> for ApiError {
    fn from(error: CallError) -> Self {
        ApiError {
            status: StatusCode::from_u16(error.status()).unwrap_or(StatusCode::BAD_GATEWAY),
            retry_after: error.retry_after().map(str::to_owned),
            body: Box::new(error.to_error_body()),
            headers: None,
        }
    }
}

impl ApiError {
    /// The same error in Anthropic's envelope and with the status Anthropic
    /// would use, for clients of `POST /v1/messages`.
    pub fn into_anthropic_response(self) -> Response {
        let status = anthropic::error::anthropic_status(self.status.as_u16(), &self.body);
        let body = anthropic::error::body(self.status.as_u16(), &self.body).to_string();
        let status = StatusCode::from_u16(status).unwrap_or(self.status);
        self.respond(status, body.into_bytes())
    }

    fn respond(self, status: StatusCode, body: Vec<u8>) -> Response {
        let mut response = (status, body).into_response();
        let headers = response.headers_mut();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        if let Some(value) = self
            .retry_after
            .and_then(|v| HeaderValue::from_str(&v).ok())
        {
            headers.insert(RETRY_AFTER, value);
        }
        if let Some(extra) = self.headers {
            headers.extend(*extra);
        }
        response
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status;
        let body = self.body.to_json();
        self.respond(status, body)
    }
}

pub async fn unknown_route(method: Method, uri: Uri) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        ErrorType::InvalidRequest,
        "unknown_url",
        format!("unknown route `{method} {}`", uri.path()),
    )
}

pub async fn method_not_allowed(method: Method, uri: Uri) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        ErrorType::InvalidRequest,
        "method_not_allowed",
        format!("method `{method}` is not allowed on `{}`", uri.path()),
    )
}
