//! The seam between the actors and the outside world: a provider takes an
//! upstream call and answers with a complete body or a stream of SSE events.
//! `node` implements it for OpenAI-compatible HTTP upstreams and for the
//! built-in mock; tests implement it in-process.

use std::time::Duration;

use bytes::Bytes;
use chorus_proto::sse::SseEvent;
use chorus_proto::{ApiFormat, ChatRequest, Endpoint};
use futures::future::BoxFuture;
use futures::stream::BoxStream;

/// One call to an upstream, already in the upstream's terms. No `Debug`:
/// the body holds the prompt.
#[derive(Clone)]
pub struct UpstreamCall {
    pub request_id: String,
    /// Which API the body is for: the provider's URL for it.
    pub endpoint: Endpoint,
    /// The request body with `model` set to the upstream model.
    pub body: Vec<u8>,
    /// The format `body` is in, and the answer must come back in: the
    /// provider's own for a client that spoke it (passed through as it
    /// is), otherwise OpenAI's (for the provider to translate, both ways).
    pub format: ApiFormat,
    /// The client's headers that the provider's API defines
    /// (`anthropic-beta`, …), lowercase, to send along.
    pub client_headers: Vec<(String, String)>,
    pub stream: bool,
}

/// The SSE events the upstream sends, in order, in the call's format:
/// each kept as it came, so all but `model` can be forwarded byte for
/// byte.
pub type EventStream = BoxStream<'static, Result<SseEvent, ProviderError>>;

/// A successful (2xx) upstream answer, in the call's format.
pub enum UpstreamReply {
    /// The whole JSON body of a non-streaming answer.
    Complete(Bytes),
    /// The events of a streaming answer, as they arrive.
    Stream(EventStream),
}

impl std::fmt::Debug for UpstreamReply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            UpstreamReply::Complete(body) => f.debug_tuple("Complete").field(body).finish(),
            UpstreamReply::Stream(_) => f.write_str("Stream(..)"),
        }
    }
}

/// What went wrong talking to an upstream. Each variant says what the client
/// gets: the upstream's own status, 502 or 504.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProviderError {
    /// The upstream answered with a non-2xx status.
    #[error("upstream answered with status {status}")]
    Status {
        status: u16,
        body: Bytes,
        retry_after: Option<String>,
    },
    /// The provider cannot express the request in its API (a parameter
    /// with no equivalent), so nothing was sent: a 400 with this OpenAI
    /// error object, not retried.
    #[error("the provider cannot take the request")]
    Refused(Bytes),
    /// No connection, or the connection closed before a response arrived.
    #[error("upstream unreachable: {0}")]
    Unreachable(String),
    /// No response (or no next stream event) within the deployment's timeout.
    #[error("upstream did not answer within {} ms", .0.as_millis())]
    Timeout(Duration),
    /// The upstream answered 2xx with a body that is not what OpenAI sends.
    #[error("upstream sent a malformed response: {0}")]
    Malformed(String),
    /// The upstream sent an SSE `error` event mid-stream, with this message.
    #[error("upstream reported an error mid-stream: {0}")]
    Reported(String),
    /// The response body broke off while it was being read.
    #[error("upstream connection broke mid-response: {0}")]
    Broken(String),
}

/// An upstream that chat completions can be sent to.
pub trait Provider: Send + Sync + 'static {
    /// The API format the upstream speaks; a call in another format is
    /// sent in OpenAI's, for the provider to translate.
    fn format(&self) -> ApiFormat {
        ApiFormat::OpenAi
    }

    /// Whether the upstream takes requests in `format` as they are: its
    /// own, and for some OpenAI upstreams the Responses API too.
    fn speaks(&self, format: ApiFormat) -> bool {
        format == self.format()
    }

    fn send(&self, call: UpstreamCall) -> BoxFuture<'static, Result<UpstreamReply, ProviderError>>;

    /// Whether the provider's API has `endpoint`: routing only sends it
    /// requests it can take.
    fn serves(&self, endpoint: Endpoint) -> bool {
        let _ = endpoint;
        true
    }

    /// Whether a stream may be asked to end with a usage chunk
    /// (`stream_options.include_usage`). Without it, a stream's tokens are
    /// estimated.
    fn reports_stream_usage(&self) -> bool {
        false
    }
}

/// What a request asks of a provider: the endpoint, and the format when
/// the request cannot be translated out of its client's. Routing only
/// chooses deployments whose provider meets it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fit {
    pub endpoint: Endpoint,
    pub format: Option<ApiFormat>,
}

impl Fit {
    pub fn of(request: &ChatRequest) -> Self {
        Fit {
            endpoint: request.endpoint,
            format: request.required_format(),
        }
    }

    pub fn met_by(&self, provider: &dyn Provider) -> bool {
        provider.serves(self.endpoint) && self.format.is_none_or(|format| provider.speaks(format))
    }
}
