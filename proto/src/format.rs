//! The API formats Chorus speaks, with clients and with upstreams:
//! OpenAI's chat completions and Responses, and Anthropic's Messages. A request whose client speaks the format of
//! the deployment it goes to passes through as the client sent it; any
//! other is translated. This module holds what depends on the format
//! alone: the client headers each API defines, and how a stream that
//! broke is ended.

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ApiFormat {
    /// Chat completions, text completions, embeddings: OpenAI and every
    /// OpenAI-compatible server.
    OpenAi,
    /// Anthropic's Messages API.
    Anthropic,
    /// OpenAI's Responses API (`/v1/responses`), which some `openai`
    /// upstreams also speak.
    Responses,
}

/// Client headers that an API defines for its clients to choose features
/// with, and the format whose upstreams get them: a client's beta flags
/// and API version reach an upstream of that API, on every path.
/// An upstream's own format decides, not the call's: an `openai` upstream
/// that speaks Responses too is an OpenAI one.
const FORWARDED_HEADERS: [(&str, ApiFormat); 3] = [
    ("anthropic-beta", ApiFormat::Anthropic),
    ("anthropic-version", ApiFormat::Anthropic),
    ("openai-beta", ApiFormat::OpenAi),
];

impl ApiFormat {
    /// Whether upstreams of this format get the client header `name`
    /// (lowercase).
    pub fn forwards(self, name: &str) -> bool {
        FORWARDED_HEADERS.contains(&(name, self))
    }

    /// Whether upstreams of some format get the client header `name`.
    pub fn is_forwarded(name: &str) -> bool {
        FORWARDED_HEADERS
            .iter()
            .any(|(forwarded, _)| *forwarded == name)
    }

    /// The names of the client headers an upstream of this format gets.
    pub fn forwarded_headers(self) -> impl Iterator<Item = &'static str> {
        FORWARDED_HEADERS
            .iter()
            .filter(move |(_, format)| *format == self)
            .map(|(name, _)| *name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_api_gets_its_own_headers() {
        let anthropic: Vec<_> = ApiFormat::Anthropic.forwarded_headers().collect();
        assert_eq!(anthropic, ["anthropic-beta", "anthropic-version"]);
        assert!(ApiFormat::OpenAi.forwards("openai-beta"));
        assert!(!ApiFormat::Anthropic.forwards("openai-beta"));
        assert!(!ApiFormat::is_forwarded("authorization"));
    }
}
