//! An OpenAI request — chat completion, text completion or embeddings: the
//! few fields Chorus must understand, with every other field kept verbatim
//! so it reaches the upstream unchanged, and the response rewrite that puts
//! the client's alias back into `model`.

use serde_json::{Map, Value};

use crate::endpoint::{input_text, Endpoint};
use crate::usage::Usage;

/// A request as the client sent it, to any [`Endpoint`] (chat completions
/// unless said otherwise). Only `model`, the input (`messages`, `prompt`
/// or `input`), `stream` and `stream_options` are interpreted; tools,
/// response_format, logprobs, seed and anything a provider adds tomorrow
/// pass through. Its `Debug` leaves the body out: it holds the prompt.
#[derive(Clone)]
pub struct ChatRequest {
    body: Map<String, Value>,
    pub endpoint: Endpoint,
    /// The alias the client asked for.
    pub model: String,
    pub stream: bool,
    /// `stream_options.include_usage`: whether the client wants the final usage chunk.
    pub include_usage: bool,
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
        })
    }

    /// Any field of the body as the client sent it.
    pub fn field(&self, name: &str) -> Option<&Value> {
        self.body.get(name)
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

    /// The body to send upstream: the client's, byte-for-byte in meaning,
    /// with `model` replaced by the deployment's upstream model. With
    /// `ask_for_usage`, the upstream is also asked to end the stream with a
    /// usage chunk (`stream_options.include_usage`), keeping any other
    /// stream option; the client's own choice stays in
    /// [`ChatRequest::include_usage`], and the request itself is left as
    /// it was for an attempt on another upstream.
    pub fn upstream_body(&mut self, upstream_model: &str, ask_for_usage: bool) -> Vec<u8> {
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

pub(crate) fn wrong_type(field: &'static str, expected: &'static str) -> RequestError {
    RequestError::WrongType { field, expected }
}

/// A completion or stream chunk with `model` set to the client's alias.
#[derive(Debug, Clone)]
pub struct RewrittenBody {
    /// `None` for a chunk the client must not see: the usage chunk of a
    /// stream whose client did not ask for usage.
    pub json: Option<Vec<u8>>,
    /// The `usage` object, when the upstream reported one in this body.
    pub usage: Option<Usage>,
    /// Why a `usage` object that was there could not be read.
    pub usage_error: Option<String>,
    /// Whether it carries any of the reply: not a stream's opening chunk
    /// that only names the role, which a gateway may hold back until
    /// content follows.
    pub starts_reply: bool,
}

/// Puts the alias back into an upstream completion or chunk and reads its
/// usage. With `hide_usage`, a usage chunk (no choices, a usage object)
/// is held back and the `usage: null` other chunks carry is removed, so a
/// client that did not ask for usage sees the stream it would have seen
/// without it. Fails only when the upstream sent something that is not a
/// JSON object. `text` collects what the body says, for estimating tokens
/// should no usage come.
pub fn rewrite_model(
    upstream_json: &[u8],
    alias: &str,
    hide_usage: bool,
    text: &mut String,
) -> Result<RewrittenBody, String> {
    let mut body: Map<String, Value> =
        serde_json::from_slice(upstream_json).map_err(|e| e.to_string())?;
    if let Some(model) = body.get_mut("model") {
        *model = Value::String(alias.to_owned());
    }
    output_text(&body, text);
    let (usage, usage_error) = match Usage::from_json(body.get("usage")) {
        Ok(usage) => (usage, None),
        Err(error) => (None, Some(error)),
    };
    if hide_usage {
        let usage_chunk = body.get("usage").is_some_and(|usage| !usage.is_null())
            && body
                .get("choices")
                .and_then(Value::as_array)
                .is_some_and(Vec::is_empty);
        if usage_chunk {
            return Ok(RewrittenBody {
                json: None,
                usage,
                usage_error,
                starts_reply: true,
            });
        }
        if body.get("usage").is_some_and(Value::is_null) {
            body.remove("usage");
        }
    }
    let json = serde_json::to_vec(&body).map_err(|e| e.to_string())?;
    Ok(RewrittenBody {
        json: Some(json),
        usage,
        usage_error,
        starts_reply: !is_role_only(&body),
    })
}

/// A stream chunk that carries none of the reply: its choices only open
/// the assistant's message (a `role`, no or empty `content`, nothing else,
/// no `finish_reason`), or it has no choices and no usage (Azure's opening
/// `prompt_filter_results`).
fn is_role_only(body: &Map<String, Value>) -> bool {
    let Some(choices) = body.get("choices").and_then(Value::as_array) else {
        return false;
    };
    if choices.is_empty() {
        return body.get("usage").is_none_or(Value::is_null);
    }
    let opening = |choice: &Value| {
        let finished = choice
            .get("finish_reason")
            .is_some_and(|reason| !reason.is_null());
        let Some(Value::Object(delta)) = choice.get("delta") else {
            return false;
        };
        !finished
            && delta.iter().all(|(field, value)| match field.as_str() {
                "role" => true,
                "content" => value.is_null() || value.as_str() == Some(""),
                _ => value.is_null(),
            })
    };
    choices.iter().all(opening)
}

/// Appends the text a completion or chunk produced: each choice's message
/// or delta content, refusal and tool-call arguments.
pub fn output_text(body: &Map<String, Value>, out: &mut String) {
    let choices = body.get("choices").and_then(Value::as_array);
    for choice in choices.into_iter().flatten() {
        // A text completion's choice carries its text directly.
        if let Some(text) = choice.get("text").and_then(Value::as_str) {
            out.push_str(text);
        }
        for part in ["message", "delta"] {
            if let Some(message) = choice.get(part) {
                message_text(message, out);
            }
        }
    }
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

fn message_text(message: &Value, out: &mut String) {
    content_text(message.get("content"), out);
    if let Some(refusal) = message.get("refusal").and_then(Value::as_str) {
        out.push_str(refusal);
    }
    let tool_calls = message.get("tool_calls").and_then(Value::as_array);
    for call in tool_calls.into_iter().flatten() {
        if let Some(arguments) = call.pointer("/function/arguments").and_then(Value::as_str) {
            out.push_str(arguments);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(value: Value) -> Result<ChatRequest, RequestError> {
        ChatRequest::parse(value.to_string().as_bytes())
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
            serde_json::from_slice(&request.upstream_body("gpt-4o-mini", false)).unwrap();
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
    fn a_role_only_opening_chunk_does_not_start_the_reply() {
        let starts = |chunk: Value| rewrite(chunk.to_string().as_bytes(), false).1.starts_reply;
        let chunk = |delta: Value, finish: Value| {
            json!({"id":"c","object":"chat.completion.chunk","model":"up",
                "choices":[{"index":0,"delta":delta,"finish_reason":finish}]})
        };
        assert!(!starts(chunk(json!({"role":"assistant"}), Value::Null)));
        assert!(!starts(chunk(
            json!({"role":"assistant","content":""}),
            Value::Null
        )));
        assert!(starts(chunk(json!({"content":"Hi"}), Value::Null)));
        assert!(starts(chunk(
            json!({"role":"assistant","content":null,
            "tool_calls":[{"index":0,"id":"call_1","function":{"name":"f","arguments":""}}]}),
            Value::Null
        )));
        assert!(
            starts(chunk(json!({}), json!("stop"))),
            "an empty reply still ends"
        );
    }

    fn rewrite(upstream: &[u8], hide_usage: bool) -> (Option<Value>, RewrittenBody, String) {
        let mut text = String::new();
        let rewritten = rewrite_model(upstream, "fast", hide_usage, &mut text).unwrap();
        let json = rewritten
            .json
            .as_ref()
            .map(|json| serde_json::from_slice(json).unwrap());
        (json, rewritten, text)
    }

    #[test]
    fn rewrite_sets_alias_and_reads_usage_and_text() {
        let upstream = br#"{"id":"x","model":"gpt-4o-mini","choices":[{"message":{"content":"Hi"}}],"usage":{"prompt_tokens":3,"completion_tokens":4,"total_tokens":7}}"#;
        let (json, rewritten, text) = rewrite(upstream, false);
        assert_eq!(json.unwrap()["model"], "fast");
        assert_eq!(rewritten.usage, Some(Usage::new(3, 4)));
        assert_eq!(text, "Hi");
        let (_, chunk, _) = rewrite(br#"{"model":"m","usage":null}"#, false);
        assert_eq!(chunk.usage, None);
        let (_, broken, _) = rewrite(br#"{"model":"m","usage":{"prompt_tokens":"x"}}"#, false);
        assert!(broken.usage_error.is_some());
        assert!(rewrite_model(b"not json", "fast", false, &mut String::new()).is_err());
    }

    #[test]
    fn usage_the_client_did_not_ask_for_is_hidden() {
        let chunk = br#"{"model":"m","choices":[{"delta":{"content":"a"}}],"usage":null}"#;
        let (json, _, text) = rewrite(chunk, true);
        assert_eq!(
            json.unwrap(),
            json!({"model":"fast","choices":[{"delta":{"content":"a"}}]})
        );
        assert_eq!(text, "a");
        let (json, _, _) = rewrite(chunk, false);
        assert!(
            json.unwrap()["usage"].is_null(),
            "kept for a client that asked"
        );
        let usage_chunk =
            br#"{"model":"m","choices":[],"usage":{"prompt_tokens":3,"completion_tokens":4}}"#;
        let (json, rewritten, _) = rewrite(usage_chunk, true);
        assert_eq!(json, None);
        assert_eq!(rewritten.usage, Some(Usage::new(3, 4)));
        assert!(rewrite(usage_chunk, false).0.is_some());
    }

    #[test]
    fn asks_for_stream_usage_keeping_other_options() {
        let mut request = parse(
            json!({"model":"m","messages":[{"role":"user"}],"stream":true,
            "stream_options":{"continuous_usage_stats":true}}),
        )
        .unwrap();
        let sent: Value = serde_json::from_slice(&request.upstream_body("up", true)).unwrap();
        assert_eq!(
            sent["stream_options"],
            json!({"continuous_usage_stats":true,"include_usage":true})
        );
        assert!(!request.include_usage, "the client's own choice is kept");
        // The next attempt may go to an upstream that is not asked.
        let sent: Value = serde_json::from_slice(&request.upstream_body("up", false)).unwrap();
        assert_eq!(
            sent["stream_options"],
            json!({"continuous_usage_stats":true})
        );
    }
}
