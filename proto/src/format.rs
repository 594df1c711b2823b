//! The API formats Chorus speaks, with clients and with upstreams:
//! OpenAI's and Anthropic's. A request whose client speaks the format of
//! the deployment it goes to passes through as the client sent it; any
//! other is translated. This module holds what depends on the format
//! alone: the client headers each API defines, and how a stream that
//! broke is ended.

use bytes::Bytes;

use crate::error::ErrorBody;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ApiFormat {
    /// Chat completions, text completions, embeddings: OpenAI and every
    /// OpenAI-compatible server.
    OpenAi,
    /// Anthropic's Messages API.
    Anthropic,
}

/// Client headers that an API defines for its clients to choose features
/// with, and the format whose upstreams get them: a client's beta flags
/// and API version reach an upstream of that API, on every path.
const FORWARDED_HEADERS: [(&str, ApiFormat); 3] = [
    ("anthropic-beta", ApiFormat::Anthropic),
    ("anthropic-version", ApiFormat::Anthropic),
    ("openai-beta", ApiFormat::OpenAi),
];

impl ApiFormat {
    /// The format whose upstreams get the client header `name`
    /// (lowercase), if any.
    pub fn of_forwarded_header(name: &str) -> Option<ApiFormat> {
        FORWARDED_HEADERS
            .iter()
            .find(|(forwarded, _)| *forwarded == name)
            .map(|(_, format)| *format)
    }

    /// The names of the client headers an upstream of this format gets.
    pub fn forwarded_headers(self) -> impl Iterator<Item = &'static str> {
        FORWARDED_HEADERS
            .iter()
            .filter(move |(_, format)| *format == self)
            .map(|(name, _)| *name)
    }

    /// The SSE event that ends a stream of this format which broke after
    /// its client got content: OpenAI's `error` event, or Anthropic's,
    /// which its SDK raises as the error `status` maps to.
    pub fn error_frame(self, status: u16, error: &ErrorBody) -> Bytes {
        match self {
            ApiFormat::OpenAi => crate::sse::error_frame(error),
            ApiFormat::Anthropic => crate::anthropic::stream::error_event_for(status, error),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_api_gets_its_own_headers() {
        let anthropic: Vec<_> = ApiFormat::Anthropic.forwarded_headers().collect();
        assert_eq!(anthropic, ["anthropic-beta", "anthropic-version"]);
        assert_eq!(
            ApiFormat::of_forwarded_header("openai-beta"),
            Some(ApiFormat::OpenAi)
        );
        assert_eq!(ApiFormat::of_forwarded_header("authorization"), None);
    }
}
