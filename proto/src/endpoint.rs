//! The OpenAI endpoints Chorus serves: chat completions, legacy text
//! completions and embeddings. They share model routing, limits and usage
//! accounting; they differ in the field that holds what the model reads,
//! and in where the upstream takes them.

use serde_json::{Map, Value};

use crate::chat::{wrong_type, RequestError};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Endpoint {
    /// `POST /v1/chat/completions`: `messages`.
    ChatCompletions,
    /// `POST /v1/completions`, the legacy text completion: `prompt`.
    Completions,
    /// `POST /v1/embeddings`: `input`; never streamed, no output tokens.
    Embeddings,
}

impl Endpoint {
    /// The path after an upstream's `/v1`.
    pub fn path(self) -> &'static str {
        match self {
            Endpoint::ChatCompletions => "chat/completions",
            Endpoint::Completions => "completions",
            Endpoint::Embeddings => "embeddings",
        }
    }

    /// Checks the field the model reads, as OpenAI requires it.
    pub(crate) fn check_input(self, body: &Map<String, Value>) -> Result<(), RequestError> {
        match self {
            Endpoint::ChatCompletions => match body.get("messages") {
                None | Some(Value::Null) => Err(RequestError::MissingField("messages")),
                Some(Value::Array(messages)) if !messages.is_empty() => {
                    let is_message = |m: &Value| m.get("role").is_some_and(Value::is_string);
                    if messages.iter().all(is_message) {
                        Ok(())
                    } else {
                        Err(wrong_type(
                            "messages",
                            "an array of objects with a string `role`",
                        ))
                    }
                }
                Some(_) => Err(wrong_type("messages", "a non-empty array")),
            },
            Endpoint::Completions => check_text_input(body, "prompt"),
            Endpoint::Embeddings => {
                check_text_input(body, "input")?;
                match body.get("stream") {
                    Some(Value::Bool(true)) => Err(RequestError::Untranslatable {
                        field: "stream",
                        reason: "embeddings are not streamed".into(),
                    }),
                    _ => Ok(()),
                }
            }
        }
    }
}

/// `prompt` or `input`: a string, an array of strings, an array of token
/// ids, or an array of arrays of token ids.
fn check_text_input(body: &Map<String, Value>, field: &'static str) -> Result<(), RequestError> {
    let tokens = |value: &Value| {
        value
            .as_array()
            .is_some_and(|ids| !ids.is_empty() && ids.iter().all(Value::is_u64))
    };
    match body.get(field) {
        None | Some(Value::Null) => Err(RequestError::MissingField(field)),
        Some(Value::String(_)) => Ok(()),
        Some(Value::Array(items))
            if !items.is_empty()
                && (items.iter().all(Value::is_string)
                    || items.iter().all(Value::is_u64)
                    || items.iter().all(tokens)) =>
        {
            Ok(())
        }
        Some(_) => Err(wrong_type(
            field,
            "a string, an array of strings, or token ids",
        )),
    }
}

/// The text of `prompt` or `input`, each string on its own line, and the
/// number of token ids given as ids.
pub(crate) fn input_text(value: Option<&Value>, out: &mut String) -> u64 {
    match value {
        Some(Value::String(text)) => {
            out.push_str(text);
            out.push('\n');
            0
        }
        Some(Value::Number(_)) => 1,
        Some(Value::Array(items)) => items.iter().map(|item| input_text(Some(item), out)).sum(),
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::ChatRequest;

    fn parse(endpoint: Endpoint, body: Value) -> Result<ChatRequest, RequestError> {
        ChatRequest::parse_at(endpoint, body.to_string().as_bytes())
    }

    #[test]
    fn each_endpoint_checks_its_own_input() {
        use Endpoint::*;
        assert!(parse(Embeddings, json!({"model": "e", "input": "hi"})).is_ok());
        assert!(parse(Embeddings, json!({"model": "e", "input": ["a", "b"]})).is_ok());
        assert!(parse(Embeddings, json!({"model": "e", "input": [[1, 2], [3]]})).is_ok());
        assert!(parse(Completions, json!({"model": "c", "prompt": [1, 2, 3]})).is_ok());
        let param = |endpoint, body| parse(endpoint, body).unwrap_err().param();
        assert_eq!(param(Embeddings, json!({"model": "e"})), Some("input"));
        assert_eq!(
            param(Embeddings, json!({"model": "e", "input": []})),
            Some("input")
        );
        assert_eq!(
            param(Embeddings, json!({"model": "e", "input": [1, "a"]})),
            Some("input")
        );
        assert_eq!(
            param(
                Embeddings,
                json!({"model": "e", "input": "x", "stream": true})
            ),
            Some("stream")
        );
        assert_eq!(
            param(Completions, json!({"model": "c", "messages": []})),
            Some("prompt")
        );
        assert_eq!(
            param(ChatCompletions, json!({"model": "c", "prompt": "x"})),
            Some("messages")
        );
    }

    #[test]
    fn input_text_counts_token_ids_apart() {
        let mut text = String::new();
        let ids = input_text(Some(&json!([[1, 2, 3], [4]])), &mut text);
        assert_eq!((ids, text.as_str()), (4, ""));
        let ids = input_text(Some(&json!(["a", "b"])), &mut text);
        assert_eq!((ids, text.as_str()), (0, "a\nb\n"));
    }
}
