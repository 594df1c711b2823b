//! `POST /v1/chat/completions`: the few request fields Chorus must understand,
//! with every other field kept verbatim so it reaches the upstream unchanged,
//! and the response rewrite that puts the client's alias back into `model`.

use serde_json::{Map, Value};

use crate::usage::Usage;

/// A chat completion request as the client sent it. Only `model`, `messages`,
/// `stream` and `stream_options` are interpreted; tools, response_format,
/// logprobs, seed and anything a provider adds tomorrow pass through.
/// Its `Debug` leaves the body out: it holds the prompt.
#[derive(Clone)]
pub struct ChatRequest {
    body: Map<String, Value>,
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
}

impl RequestError {
    /// The request parameter at fault, for the error object's `param`.
    pub fn param(&self) -> Option<&'static str> {
        match self {
            RequestError::InvalidJson(_) | RequestError::NotAnObject => None,
            RequestError::MissingField(field) | RequestError::WrongType { field, .. } => {
                Some(field)
            }
        }
    }

    /// A stable machine-readable code for the error object's `code`.
    pub fn code(&self) -> &'static str {
        match self {
            RequestError::InvalidJson(_) | RequestError::NotAnObject => "invalid_json",
            RequestError::MissingField(_) => "missing_required_parameter",
            RequestError::WrongType { .. } => "invalid_type",
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
    pub fn parse(bytes: &[u8]) -> Result<Self, RequestError> {
        let value: Value =
            serde_json::from_slice(bytes).map_err(|e| RequestError::InvalidJson(e.to_string()))?;
        let Value::Object(body) = value else {
            return Err(RequestError::NotAnObject);
        };
        let model = match body.get("model") {
            None | Some(Value::Null) => return Err(RequestError::MissingField("model")),
            Some(Value::String(model)) if !model.is_empty() => model.clone(),
            Some(_) => return Err(wrong_type("model", "a non-empty string")),
        };
        match body.get("messages") {
            None | Some(Value::Null) => return Err(RequestError::MissingField("messages")),
            Some(Value::Array(messages)) if !messages.is_empty() => {
                if !messages.iter().all(is_message) {
                    return Err(wrong_type(
                        "messages",
                        "an array of objects with a string `role`",
                    ));
                }
            }
            Some(_) => return Err(wrong_type("messages", "a non-empty array")),
        }
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
            model,
            stream,
            include_usage,
        })
    }

    pub fn messages(&self) -> &[Value] {
        match self.body.get("messages") {
            Some(Value::Array(messages)) => messages,
            _ => &[],
        }
    }

    /// `max_completion_tokens`, or the older `max_tokens`, when the client set one.
    pub fn max_output_tokens(&self) -> Option<u64> {
        ["max_completion_tokens", "max_tokens"]
            .iter()
            .find_map(|field| self.body.get(*field).and_then(Value::as_u64))
    }

    /// The body to send upstream: the client's, byte-for-byte in meaning,
    /// with `model` replaced by the deployment's upstream model.
    pub fn upstream_body(&mut self, upstream_model: &str) -> Vec<u8> {
        self.body
            .insert("model".to_owned(), Value::String(upstream_model.to_owned()));
        let body = serde_json::to_vec(&self.body).unwrap_or_default();
        self.body
            .insert("model".to_owned(), Value::String(self.model.clone()));
        body
    }
}

fn wrong_type(field: &'static str, expected: &'static str) -> RequestError {
    RequestError::WrongType { field, expected }
}

fn is_message(message: &Value) -> bool {
    message.get("role").is_some_and(Value::is_string)
}

/// A completion or stream chunk with `model` set to the client's alias.
#[derive(Debug, Clone)]
pub struct RewrittenBody {
    pub json: Vec<u8>,
    /// The `usage` object, when the upstream reported one in this body.
    pub usage: Option<Usage>,
}

/// Puts the alias back into an upstream completion or chunk and reads its
/// usage. Fails only when the upstream sent something that is not a JSON object.
pub fn rewrite_model(upstream_json: &[u8], alias: &str) -> Result<RewrittenBody, String> {
    let mut body: Map<String, Value> =
        serde_json::from_slice(upstream_json).map_err(|e| e.to_string())?;
    if let Some(model) = body.get_mut("model") {
        *model = Value::String(alias.to_owned());
    }
    let usage = body
        .get("usage")
        .filter(|usage| usage.is_object())
        .and_then(|usage| serde_json::from_value::<Usage>(usage.clone()).ok());
    let json = serde_json::to_vec(&body).map_err(|e| e.to_string())?;
    Ok(RewrittenBody { json, usage })
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
        let sent: Value = serde_json::from_slice(&request.upstream_body("gpt-4o-mini")).unwrap();
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
    fn rewrite_sets_alias_and_reads_usage() {
        let upstream = br#"{"id":"x","model":"gpt-4o-mini","usage":{"prompt_tokens":3,"completion_tokens":4,"total_tokens":7}}"#;
        let rewritten = rewrite_model(upstream, "fast").unwrap();
        let value: Value = serde_json::from_slice(&rewritten.json).unwrap();
        assert_eq!(value["model"], "fast");
        assert_eq!(rewritten.usage, Some(Usage::new(3, 4)));
        let chunk = rewrite_model(br#"{"model":"m","usage":null}"#, "fast").unwrap();
        assert_eq!(chunk.usage, None);
        assert!(rewrite_model(b"not json", "fast").is_err());
    }
}
