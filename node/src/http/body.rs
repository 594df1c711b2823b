//! Reading a request body: within a size limit, checked before anything
//! is read when `content-length` already says, and within a time limit.

use std::time::Duration;

use axum::body::{Body, Bytes};
use chorus_proto::ErrorType;
use futures::StreamExt;
use http::header::CONTENT_LENGTH;
use http::{HeaderMap, StatusCode};

use super::ApiError;

/// Most bytes reserved for a body before they arrive.
const INITIAL_BODY_CAPACITY: u64 = 64 * 1024;

/// A client that has not sent its whole body by then is cut off with 408.
const BODY_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// Reads the body, refusing it as soon as it passes `limit` bytes — before
/// reading anything when `content-length` already says so.
pub async fn read_body(body: Body, headers: &HeaderMap, limit: usize) -> Result<Bytes, ApiError> {
    let too_large = || {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            ErrorType::InvalidRequest,
            "request_too_large",
            format!("request body is larger than the limit of {limit} bytes"),
        )
    };
    let declared = headers
        .get(CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<u64>().ok());
    if declared.is_some_and(|length| length > limit as u64) {
        return Err(too_large());
    }
    let read = async {
        // The declared length only sizes the first allocation, up to a
        // bound: a client that declares 10 MiB and stalls holds no more.
        let capacity = declared.map_or(0, |length| length.min(INITIAL_BODY_CAPACITY) as usize);
        let mut collected = Vec::with_capacity(capacity);
        let mut chunks = body.into_data_stream();
        while let Some(chunk) = chunks.next().await {
            let chunk = chunk.map_err(|e| {
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    ErrorType::InvalidRequest,
                    "unreadable_body",
                    format!("could not read the request body: {e}"),
                )
            })?;
            if collected.len() + chunk.len() > limit {
                return Err(too_large());
            }
            collected.extend_from_slice(&chunk);
        }
        Ok(Bytes::from(collected))
    };
    tokio::time::timeout(BODY_READ_TIMEOUT, read)
        .await
        .unwrap_or_else(|_| {
            Err(ApiError::new(
                StatusCode::REQUEST_TIMEOUT,
                ErrorType::InvalidRequest,
                "body_timeout",
                format!(
                    "the request body did not arrive within {} s",
                    BODY_READ_TIMEOUT.as_secs()
                ),
            ))
        })
}
