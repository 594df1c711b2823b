//! An OpenAI request — chat completion, text completion or embeddings: the
//! few fields Chorus must understand, with every other field kept verbatim
//! so it reaches the upstream unchanged, and the response rewrite that puts
//! the client's alias back into `model`.

use bytes::Bytes;
use serde_json::{Map, Value};

use crate::endpoint::{input_text, Endpoint};
use crate::format::ApiFormat;
use crate::rewrite::set_members;

/// A request as the client sent it, to any [`Endpoint`] (chat completions
/// unless said otherwise). Only `model`, the input (`messages`, `prompt`
/// or `input`), `stream` and `stream_options` are interpreted; tools,
/// response_format, logprobs, seed and anything a provider adds tomorrow
/// pass through. Its `Debug` leaves the body out: it holds the prompt.
#[derive(Clone)]
pub struct ChatRequest {
    body: Map<String, Value>,
    pub endpoint: Endpoint,
    /// The alias the request routes by: the model the client asked for,
    /// or the pattern alias that matched it.
    pub model: String,
    pub stream: bool,
    /// `stream_options.include_usage`: whether the client wants the final usage chunk.
    pub include_usage: bool,
    /// The body as the client sent it, for an upstream of its format.
    sent: Option<SentBody>,
    /// Why the client's body cannot be translated to another format, when
    /// it cannot: then only upstreams of its own format can take it.
    untranslatable: Option<RequestError>,
    /// The client's headers that some API defines (`anthropic-beta`, …),
    /// lowercase, for the upstreams of that API.
    forwarded_headers: Vec<(String, String)>,
    /// When a pattern alias matched the client's model name.
    pattern: Option<PatternMatch>,
    /// What the gateway names the request's prompt-cache identity by,
    /// when it knows better than the body (a conversation).
    affinity: Option<String>,
}

/// A model name matched by a pattern alias (`claude-*`).
#[derive(Debug, Clone)]
struct PatternMatch {
    /// The name the client asked for, which its answer carries.
    asked: String,
    /// What the pattern's `*` matched, for its deployments' models.
    star: String,
}

/// A client's body, kept as the bytes that came.
#[derive(Clone)]
struct SentBody {
    format: ApiFormat,
    bytes: Bytes,
}

/// A request's body for one upstream.
#[derive(Debug)]
pub struct UpstreamBody {
    pub bytes: Vec<u8>,
    /// The format the body is in, and the upstream's answer will be: the
    /// client's own when the upstream speaks it (a pass-through), else
    /// OpenAI's, for a provider that speaks another to translate.
    pub format: ApiFormat,
}

/// Why a request body is not a chat completion request. Each variant maps to
/// a 400 with the offending parameter named.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    #[error("request body is not valid JSON: {0}")]
    InvalidJson(String),
    #[error("request body must be a JSON object")]
    NotAnObject,
    #[error("missing required parameter `{0}`")]
    MissingField(&'static str),
    #[error("parameter `{field}` must be {expected}")]
    WrongType {
        field: &'static str,
        expected: &'static str,
    },
    /// Valid, but with no equivalent in the format it must be translated to.
    #[error("parameter `{field}`: {reason}")]
    Untranslatable { field: &'static str, reason: String },
}

impl RequestError {
    /// The request parameter at fault, for the error object's `param`.
    pub fn param(&self) -> Option<&'static str> {
        match self {
            RequestError::InvalidJson(_) | RequestError::NotAnObject => None,
            RequestError::MissingField(field)
            | RequestError::WrongType { field, .. }
            | RequestError::Untranslatable { field, .. } => Some(field),
        }
    }

    /// The error object a client gets for it, with a 400.
    pub fn to_error_body(&self) -> crate::ErrorBody {
        let body = crate::ErrorBody::new(crate::ErrorType::InvalidRequest, self.to_string())
            .with_code(self.code());
        match self.param() {
            Some(param) => body.with_param(param),
            None => body,
        }
    }

    /// A stable machine-readable code for the error object's `code`.
    pub fn code(&self) -> &'static str {
        match self {
            RequestError::InvalidJson(_) | RequestError::NotAnObject => "invalid_json",
            RequestError::MissingField(_) => "missing_required_parameter",
            RequestError::WrongType { .. } => "invalid_type",
            RequestError::Untranslatable { .. } => "unsupported_parameter",
        }
    }
}

impl std::fmt::Debug for ChatRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChatRequest")
            .field("model", &self.model)
            .field("stream", &self.stream)
            .field("include_usage", &self.include_usage)
            .finish_non_exhaustive()
    }
}

impl ChatRequest {
    /// A chat completion request.
    pub fn parse(bytes: &[u8]) -> Result<Self, RequestError> {
        Self::parse_at(Endpoint::ChatCompletions, bytes)
    }

    /// A request to `endpoint`.
    pub fn parse_at(endpoint: Endpoint, bytes: &[u8]) -> Result<Self, RequestError> {
        let value: Value =
            serde_json::from_slice(bytes).map_err(|e| RequestError::InvalidJson(e.to_string()))?;
        let Value::Object(body) = value else {
            return Err(RequestError::NotAnObject);
        };
        Self::from_body_at(endpoint, body)
    }

    /// A chat completion request from a body already parsed, or translated
    /// from another format: the same checks as [`ChatRequest::parse`].
    pub fn from_body(body: Map<String, Value>) -> Result<Self, RequestError> {
        Self::from_body_at(Endpoint::ChatCompletions, body)
    }

    fn from_body_at(endpoint: Endpoint, body: Map<String, Value>) -> Result<Self, RequestError> {
        let model = match body.get("model") {
            None | Some(Value::Null) => return Err(RequestError::MissingField("model")),
            Some(Value::String(model)) if !model.is_empty() => model.clone(),
            Some(_) => return Err(wrong_type("model", "a non-empty string")),
        };
        endpoint.check_input(&body)?;
        let stream = match body.get("stream") {
            None | Some(Value::Null) => false,
            Some(Value::Bool(stream)) => *stream,
            Some(_) => return Err(wrong_type("stream", "a boolean")),
        };
        let include_usage = match body.get("stream_options") {
            None | Some(Value::Null) => false,
            Some(Value::Object(options)) => match options.get("include_usage") {
                None | Some(Value::Null) => false,
                Some(Value::Bool(include)) => *include,
                Some(_) => return Err(wrong_type("stream_options.include_usage", "a boolean")),
            },
            Some(_) => return Err(wrong_type("stream_options", "an object")),
        };
        Ok(ChatRequest {
            body,
            endpoint,
            model,
            stream,
            include_usage,
            sent: None,
            untranslatable: None,
            forwarded_headers: Vec::new(),
            pattern: None,
            affinity: None,
        })
    }

    /// The request, whose model name the pattern alias `alias` matched,
    /// its `*` standing for `star`: it routes by `alias`, and its answer
    /// carries the name the client asked for.
    pub fn matched_by(self, alias: String, star: String) -> Self {
        ChatRequest {
            pattern: Some(PatternMatch {
                asked: self.model,
                star,
            }),
            model: alias,
            ..self
        }
    }

    /// The model an upstream is asked for: a deployment's, with a `*` in
    /// it standing for what the request's pattern matched.
    pub fn upstream_model<'a>(&self, deployment_model: &'a str) -> std::borrow::Cow<'a, str> {
        match &self.pattern {
            Some(pattern) if deployment_model.contains('*') => {
                deployment_model.replace('*', &pattern.star).into()
            }
            _ => deployment_model.into(),
        }
    }

    /// The model an answer from `serving_alias` carries: the name the
    /// client asked for when that alias is the pattern that matched it,
    /// else the alias (the request's own, or a fallback).
    pub fn answer_model<'a>(&'a self, serving_alias: &'a str) -> &'a str {
        match &self.pattern {
            Some(pattern) if serving_alias == self.model => &pattern.asked,
            _ => serving_alias,
        }
    }

    /// The request, remembering the body the client sent in `format`:
    /// an upstream of that format gets those bytes with only `model` set.
    pub fn sent_as(self, format: ApiFormat, bytes: Bytes) -> Self {
        ChatRequest {
            sent: Some(SentBody { format, bytes }),
            ..self
        }
    }

    /// The request, which cannot be translated out of the client's format
    /// for this reason: its OpenAI body is only good for estimating
    /// tokens, and only upstreams of the client's format may take it.
    pub fn untranslatable(self, reason: RequestError) -> Self {
        ChatRequest {
            untranslatable: Some(reason),
            ..self
        }
    }

    /// The request, its prompt-cache identity named `name`.
    pub fn with_affinity(self, name: String) -> Self {
        ChatRequest {
            affinity: Some(name),
            ..self
        }
    }

    /// What requests sharing a prompt cache have in common: see
    /// [`crate::affinity`].
    pub fn cache_identity(&self) -> Option<[u8; 32]> {
        crate::affinity::identity(&self.body, self.affinity.as_deref())
    }

    /// The request with the client's headers that an API defines.
    pub fn with_forwarded_headers(self, headers: Vec<(String, String)>) -> Self {
        ChatRequest {
            forwarded_headers: headers,
            ..self
        }
    }

    /// The format the client spoke.
    pub fn client_format(&self) -> ApiFormat {
        self.sent
            .as_ref()
            .map_or(ApiFormat::OpenAi, |sent| sent.format)
    }

    /// The only format an upstream may speak to take the request, when it
    /// cannot be translated; `None` when any may.
    pub fn required_format(&self) -> Option<ApiFormat> {
        self.untranslatable.as_ref().map(|_| self.client_format())
    }

    /// Why the request cannot be translated out of the client's format.
    pub fn untranslatable_reason(&self) -> Option<&RequestError> {
        self.untranslatable.as_ref()
    }

    /// The body the client sent, in [`ChatRequest::client_format`], when
    /// it was kept.
    pub fn sent_body(&self) -> Option<&[u8]> {
        self.sent.as_ref().map(|sent| &sent.bytes[..])
    }

    /// The client's headers that upstreams of `format` get.
    pub fn forwarded_headers(&self, format: ApiFormat) -> impl Iterator<Item = &(String, String)> {
        self.forwarded_headers
            .iter()
            .filter(move |(name, _)| format.forwards(name))
    }

    /// Any field of the body as the client sent it.
    pub fn field(&self, name: &str) -> Option<&Value> {
        self.body.get(name)
    }

    /// The whole body as the client sent it (translated, for Anthropic
    /// clients), `model` the alias.
    pub fn body(&self) -> &Map<String, Value> {
        &self.body
    }

    pub fn messages(&self) -> &[Value] {
        match self.body.get("messages") {
            Some(Value::Array(messages)) => messages,
            _ => &[],
        }
    }

    /// The text of a text completion's `prompt` or an embedding's `input`
    /// (a chat's is in its [`messages`](ChatRequest::messages)), and how
    /// many tokens were given as token ids.
    pub fn input_text(&self, out: &mut String) -> u64 {
        let field = match self.endpoint {
            Endpoint::ChatCompletions => return 0,
            Endpoint::Completions => "prompt",
            Endpoint::Embeddings => "input",
        };
        input_text(self.body.get(field), out)
    }

    /// `max_completion_tokens`, or the older `max_tokens`, when the client
    /// set one; zero for embeddings, which produce no tokens.
    pub fn max_output_tokens(&self) -> Option<u64> {
        if self.endpoint == Endpoint::Embeddings {
            return Some(0);
        }
        ["max_completion_tokens", "max_tokens"]
            .iter()
            .find_map(|field| self.body.get(*field).and_then(Value::as_u64))
    }

    /// The body for an upstream that speaks `format`, with `model` set to
    /// its `upstream_model`. A client that spoke `format` has its own
    /// bytes sent with only `model` changed (and, for OpenAI, the stream
    /// options below); any other upstream gets the OpenAI body, for its
    /// provider to translate, or the reason the request cannot be.
    ///
    /// With `ask_for_usage`, an OpenAI upstream is also asked to end the
    /// stream with a usage chunk (`stream_options.include_usage`), keeping
    /// any other stream option; the client's own choice stays in
    /// [`ChatRequest::include_usage`], and the request itself is left as
    /// it was for an attempt on another upstream.
    pub fn upstream_body(
        &mut self,
        format: ApiFormat,
        upstream_model: &str,
        ask_for_usage: bool,
    ) -> Result<UpstreamBody, RequestError> {
        match &self.sent {
            Some(sent) if sent.format == format => {
                if let Some(bytes) = self.spliced(&sent.bytes, upstream_model, ask_for_usage) {
                    return Ok(UpstreamBody { bytes, format });
                }
            }
            Some(_) => {
                if let Some(reason) = &self.untranslatable {
                    return Err(reason.clone());
                }
            }
            None => {}
        }
        let bytes = match format {
            // Thinking blocks ride a translated body for Anthropic alone.
            ApiFormat::OpenAi => match without_thinking(&self.body) {
                Some(body) => {
                    let kept = std::mem::replace(&mut self.body, body);
                    let bytes = self.reserialised(upstream_model, ask_for_usage);
                    self.body = kept;
                    bytes
                }
                None => self.reserialised(upstream_model, ask_for_usage),
            },
            _ => self.reserialised(upstream_model, ask_for_usage),
        };
        Ok(UpstreamBody {
            bytes,
            format: ApiFormat::OpenAi,
        })
    }

    /// `sent` with `model` (and the stream options) set in place; `None`
    /// when the bytes do not read as one object, as they did when parsed.
    fn spliced(&self, sent: &[u8], upstream_model: &str, ask_for_usage: bool) -> Option<Vec<u8>> {
        let model = serde_json::to_vec(upstream_model).ok()?;
        let stream_options = ask_for_usage.then(|| {
            let mut options = match self.body.get("stream_options") {
                Some(Value::Object(options)) => options.clone(),
                _ => Map::new(),
            };
            options.insert("include_usage".to_owned(), Value::Bool(true));
            serde_json::to_vec(&options).unwrap_or_default()
        });
        let mut set: Vec<(&str, &[u8])> = vec![("model", &model)];
        if let Some(options) = &stream_options {
            set.push(("stream_options", options));
        }
        set_members(sent, &set)
    }

    /// The OpenAI body serialised afresh: for a request translated from
    /// another format, or made in code.
    fn reserialised(&mut self, upstream_model: &str, ask_for_usage: bool) -> Vec<u8> {
        let stream_options = ask_for_usage.then(|| self.body.get("stream_options").cloned());
        if ask_for_usage {
            let options = self
                .body
                .entry("stream_options")
                .or_insert_with(|| Value::Object(Map::new()));
            if let Value::Object(options) = options {
                options.insert("include_usage".to_owned(), Value::Bool(true));
            }
        }
        self.body
            .insert("model".to_owned(), Value::String(upstream_model.to_owned()));
        let body = serde_json::to_vec(&self.body).unwrap_or_default();
        self.body
            .insert("model".to_owned(), Value::String(self.model.clone()));
        match stream_options {
            Some(Some(options)) => {
                self.body.insert("stream_options".to_owned(), options);
            }
            Some(None) => {
                self.body.remove("stream_options");
            }
            None => {}
        }
        body
    }
}

/// `body` without the thinking blocks its assistant turns carry for an
/// Anthropic upstream, and without the turns that held nothing else;
/// `None` when it has none, as nearly every body.
fn without_thinking(body: &Map<String, Value>) -> Option<Map<String, Value>> {
    let messages = body.get("messages")?.as_array()?;
    if !messages
        .iter()
        .any(|message| message.get("thinking_blocks").is_some())
    {
        return None;
    }
    let kept: Vec<Value> = messages
        .iter()
        .filter_map(|message| {
            let mut message = message.clone();
            let Some(fields) = message.as_object_mut() else {
                return Some(message);
            };
            if fields.remove("thinking_blocks").is_some()
                && fields.get("content").is_none_or(Value::is_null)
                && !fields.contains_key("tool_calls")
            {
                return None;
            }
            Some(message)
        })
        .collect();
    let mut body = body.clone();
    body.insert("messages".into(), Value::Array(kept));
    Some(body)
}

pub(crate) fn wrong_type(field: &'static str, expected: &'static str) -> RequestError {
    RequestError::WrongType { field, expected }
}

/// Appends the text of a message's `content`: a string, or the text parts
/// of an array of parts.
pub fn content_text(content: Option<&Value>, out: &mut String) {
    match content {
        Some(Value::String(text)) => out.push_str(text),
        Some(Value::Array(parts)) => {
            for part in parts {
                if let Some(text) = part.get("text").and_then(Value::as_str) {
                    out.push_str(text);
                }
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn an_openai_upstream_never_gets_the_thinking_blocks_carried_for_anthropic() {
        let block = json!({"type": "thinking", "thinking": "t", "signature": "s"});
        let body = json!({"model": "a", "messages": [
            {"role": "user", "content": "Weather?"},
            {"role": "assistant", "content": null, "thinking_blocks": [block],
                "tool_calls": [{"id": "c", "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
            {"role": "tool", "tool_call_id": "c", "content": "sunny"},
            {"role": "assistant", "content": null, "thinking_blocks": [block]},
            {"role": "user", "content": "Thanks"}
        ]});
        let mut request = ChatRequest::from_body(body.as_object().unwrap().clone()).unwrap();
        let upstream = |request: &mut ChatRequest, format| {
            let sent = request.upstream_body(format, "m", false).unwrap();
            serde_json::from_slice::<Value>(&sent.bytes).unwrap()
        };
        let openai = upstream(&mut request, ApiFormat::OpenAi);
        let messages = openai["messages"].as_array().unwrap();
        assert_eq!(messages.len(), 4, "the turn of thinking alone is gone");
        assert!(messages.iter().all(|m| m.get("thinking_blocks").is_none()));
        assert_eq!(messages[1]["tool_calls"][0]["id"], "c");
        let anthropic = upstream(&mut request, ApiFormat::Anthropic);
        assert_eq!(
            anthropic["messages"][1]["thinking_blocks"],
            json!([block]),
            "kept for Anthropic"
        );
    }

    fn parse(value: Value) -> Result<ChatRequest, RequestError> {
        ChatRequest::parse(value.to_string().as_bytes())
    }

    fn body(request: &mut ChatRequest, model: &str, ask_for_usage: bool) -> Vec<u8> {
        let body = request.upstream_body(ApiFormat::OpenAi, model, ask_for_usage);
        body.unwrap().bytes
    }

    #[test]
    fn a_client_of_the_upstreams_format_is_sent_its_own_bytes() {
        let sent = br#"{"model": "fast", "temperature": 1.10, "top_p": 1e-1,
            "messages": [{"role": "user", "content": "hi"}], "stream": true}"#;
        let mut request = ChatRequest::parse(sent)
            .unwrap()
            .sent_as(ApiFormat::OpenAi, Bytes::from_static(sent));
        let out = request
            .upstream_body(ApiFormat::OpenAi, "gpt-4o", false)
            .unwrap();
        assert_eq!(out.format, ApiFormat::OpenAi);
        let expected = String::from_utf8_lossy(sent).replace("\"fast\"", "\"gpt-4o\"");
        assert_eq!(String::from_utf8(out.bytes).unwrap(), expected);
        let out = request
            .upstream_body(ApiFormat::OpenAi, "gpt-4o", true)
            .unwrap();
        let out = String::from_utf8(out.bytes).unwrap();
        assert!(out.contains("1.10") && out.contains("1e-1"), "{out}");
        assert!(
            out.ends_with(r#","stream_options":{"include_usage":true}}"#),
            "{out}"
        );
    }

    #[test]
    fn a_pattern_routes_by_its_alias_and_answers_with_the_asked_name() {
        let request = parse(json!({"model": "claude-sonnet-4-5", "messages": [{"role": "user"}]}))
            .unwrap()
            .matched_by("claude-*".into(), "sonnet-4-5".into());
        assert_eq!(request.model, "claude-*");
        assert_eq!(request.upstream_model("claude-*"), "claude-sonnet-4-5");
        assert_eq!(
            request.upstream_model("anthropic.claude-*-v1"),
            "anthropic.claude-sonnet-4-5-v1"
        );
        assert_eq!(request.upstream_model("fixed"), "fixed");
        assert_eq!(request.answer_model("claude-*"), "claude-sonnet-4-5");
        assert_eq!(request.answer_model("fallback"), "fallback");
    }

    #[test]
    fn an_untranslatable_request_goes_only_to_its_own_format() {
        let sent = br#"{"model": "fast", "max_tokens": 5, "messages": []}"#;
        let reason = RequestError::Untranslatable {
            field: "messages",
            reason: "documents".into(),
        };
        let mut request = parse(json!({"model": "fast", "messages": [{"role": "user"}]}))
            .unwrap()
            .sent_as(ApiFormat::Anthropic, Bytes::from_static(sent))
            .untranslatable(reason.clone());
        assert_eq!(request.required_format(), Some(ApiFormat::Anthropic));
        let own = request
            .upstream_body(ApiFormat::Anthropic, "claude", false)
            .unwrap();
        assert_eq!(own.format, ApiFormat::Anthropic);
        assert_eq!(
            own.bytes,
            br#"{"model": "claude", "max_tokens": 5, "messages": []}"#
        );
        let other = request.upstream_body(ApiFormat::OpenAi, "gpt", false);
        assert_eq!(other.unwrap_err(), reason);
    }

    #[test]
    fn keeps_unknown_fields_and_replaces_only_model() {
        let original = json!({
            "model": "fast",
            "messages": [{"role": "user", "content": "hi"}],
            "tools": [{"type": "function", "function": {"name": "f"}}],
            "response_format": {"type": "json_object"},
            "seed": 7,
            "logprobs": true
        });
        let mut request = parse(original.clone()).unwrap();
        let sent: Value =
            serde_json::from_slice(&body(&mut request, "gpt-4o-mini", false)).unwrap();
        let mut expected = original;
        expected["model"] = json!("gpt-4o-mini");
        assert_eq!(sent, expected);
        assert_eq!(request.model, "fast");
    }

    #[test]
    fn reads_stream_flags() {
        let request = parse(
            json!({"model":"m","messages":[{"role":"user","content":"x"}],
            "stream": true, "stream_options": {"include_usage": true}}),
        )
        .unwrap();
        assert!(request.stream && request.include_usage);
    }

    #[test]
    fn names_the_field_at_fault() {
        let cases = [
            (json!({"messages":[{"role":"user"}]}), Some("model")),
            (json!({"model":"m"}), Some("messages")),
            (json!({"model":"m","messages":[]}), Some("messages")),
            (json!({"model":"m","messages":["hi"]}), Some("messages")),
            (
                json!({"model":3,"messages":[{"role":"user"}]}),
                Some("model"),
            ),
            (
                json!({"model":"m","messages":[{"role":"user"}],"stream":"yes"}),
                Some("stream"),
            ),
            (json!([1, 2]), None),
        ];
        for (body, param) in cases {
            let err = parse(body.clone()).unwrap_err();
            assert_eq!(err.param(), param, "{body}");
        }
        let err = ChatRequest::parse(b"{\"model\": ").unwrap_err();
        assert_eq!(err.code(), "invalid_json");
        assert!(ChatRequest::parse(&[0xff, 0xfe]).is_err());
    }

    #[test]
    fn asks_for_stream_usage_keeping_other_options() {
        let mut request = parse(
            json!({"model":"m","messages":[{"role":"user"}],"stream":true,
            "stream_options":{"continuous_usage_stats":true}}),
        )
        .unwrap();
        let sent: Value = serde_json::from_slice(&body(&mut request, "up", true)).unwrap();
        assert_eq!(
            sent["stream_options"],
            json!({"continuous_usage_stats":true,"include_usage":true})
        );
        assert!(!request.include_usage, "the client's own choice is kept");
        // The next attempt may go to an upstream that is not asked.
        let sent: Value = serde_json::from_slice(&body(&mut request, "up", false)).unwrap();
        assert_eq!(
            sent["stream_options"],
            json!({"continuous_usage_stats":true})
        );
    }
}
