//! Which requests the cache may answer, and the key their answer is kept
//! under.

use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::chat::ChatRequest;
use crate::endpoint::Endpoint;

/// Fields that never change the answer: how it is delivered (`stream`,
/// `stream_options`), who asked (`user`, `metadata`) and whether the
/// provider keeps a copy (`store`). Every other field is part of the key,
/// so a parameter Chorus does not know yet can never return a wrong answer.
const NOT_IN_KEY: [&str; 5] = ["stream", "stream_options", "user", "metadata", "store"];

/// SHA-256 of a request's scope, endpoint and normalised body.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CacheKey(pub [u8; 32]);

/// The key of `request`'s answer within `scope` (whose answers may be
/// shared: one team, or everyone). The body is normalised — object keys
/// sorted at every depth, insignificant whitespace gone — so the same
/// request written two ways finds the same answer; `model` is the alias.
pub fn cache_key(scope: &str, request: &ChatRequest) -> CacheKey {
    let mut canonical = Vec::with_capacity(256);
    canonical.extend_from_slice(scope.as_bytes());
    canonical.push(0);
    canonical.extend_from_slice(request.endpoint.path().as_bytes());
    canonical.push(0);
    let kept = request
        .body()
        .iter()
        .filter(|(name, _)| !NOT_IN_KEY.contains(&name.as_str()));
    write_object(kept, &mut canonical);
    CacheKey(Sha256::digest(&canonical).into())
}

/// Whether `request` always gets the same answer, so caching it is safe
/// by default: embeddings, and generations at temperature 0 or with a
/// `seed`.
pub fn is_deterministic(request: &ChatRequest) -> bool {
    if request.endpoint == Endpoint::Embeddings {
        return true;
    }
    let zero_temperature = request
        .field("temperature")
        .and_then(Value::as_f64)
        .is_some_and(|temperature| temperature == 0.0);
    let seeded = request.field("seed").is_some_and(|seed| !seed.is_null());
    zero_temperature || seeded
}

/// Whether an answer to `request` can be kept whole and replayed: not when
/// it asks for log probabilities, which a replayed stream would not carry.
pub fn is_storable(request: &ChatRequest) -> bool {
    let asked = |field| {
        request
            .field(field)
            .is_some_and(|value| !matches!(value, Value::Null | Value::Bool(false)))
    };
    !asked("logprobs") && !asked("top_logprobs")
}

fn write_object<'a>(fields: impl Iterator<Item = (&'a String, &'a Value)>, out: &mut Vec<u8>) {
    let mut fields: Vec<_> = fields.collect();
    fields.sort_unstable_by(|a, b| a.0.cmp(b.0));
    out.push(b'{');
    for (i, (name, value)) in fields.into_iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_string(name, out);
        out.push(b':');
        write_value(value, out);
    }
    out.push(b'}');
}

fn write_value(value: &Value, out: &mut Vec<u8>) {
    match value {
        Value::Object(fields) => write_object(fields.iter(), out),
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_value(item, out);
            }
            out.push(b']');
        }
        Value::String(text) => write_string(text, out),
        scalar => out.extend_from_slice(scalar.to_string().as_bytes()),
    }
}

fn write_string(text: &str, out: &mut Vec<u8>) {
    out.extend_from_slice(Value::from(text).to_string().as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn request(body: Value) -> ChatRequest {
        ChatRequest::parse(body.to_string().as_bytes()).unwrap()
    }

    fn key(body: Value) -> CacheKey {
        cache_key("team:a", &request(body))
    }

    #[test]
    fn the_same_request_written_two_ways_has_one_key() {
        let a = key(json!({"model": "m", "temperature": 0,
            "messages": [{"role": "user", "content": "hi", "name": "x"}]}));
        let b = key(
            json!({"messages": [{"name": "x", "content": "hi", "role": "user"}],
            "temperature": 0, "model": "m"}),
        );
        assert_eq!(a, b);
    }

    #[test]
    fn delivery_and_caller_fields_are_not_in_the_key_and_the_rest_is() {
        let base = json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]});
        let with = |field: &str, value: Value| {
            let mut body = base.clone();
            body[field] = value;
            key(body)
        };
        for (field, value) in [
            ("stream", json!(true)),
            ("stream_options", json!({"include_usage": true})),
            ("user", json!("u-1")),
            ("metadata", json!({"k": "v"})),
            ("store", json!(true)),
        ] {
            assert_eq!(
                with(field, value),
                key(base.clone()),
                "{field} changed the key"
            );
        }
        for (field, value) in [
            ("model", json!("other")),
            ("temperature", json!(0.5)),
            ("max_tokens", json!(5)),
            ("tools", json!([])),
            ("some_new_parameter", json!(1)),
        ] {
            assert_ne!(
                with(field, value),
                key(base.clone()),
                "{field} left the key"
            );
        }
        let other_scope = cache_key("team:b", &request(base.clone()));
        assert_ne!(other_scope, key(base.clone()));
        let endpoint = ChatRequest::parse_at(
            Endpoint::Completions,
            json!({"model": "m", "prompt": "hi"}).to_string().as_bytes(),
        )
        .unwrap();
        let chat = request(json!({"model": "m", "prompt": "hi",
            "messages": [{"role": "user", "content": "x"}]}));
        assert_ne!(
            cache_key("s", &endpoint),
            cache_key("s", &chat),
            "the endpoint is in the key"
        );
    }

    #[test]
    fn only_fixed_answers_are_deterministic() {
        let chat = |extra: Value| {
            let mut body = json!({"model": "m", "messages": [{"role": "user", "content": "x"}]});
            body.as_object_mut()
                .unwrap()
                .extend(extra.as_object().unwrap().clone());
            request(body)
        };
        assert!(is_deterministic(&chat(json!({"temperature": 0}))));
        assert!(is_deterministic(&chat(json!({"temperature": 0.0}))));
        assert!(is_deterministic(&chat(json!({"seed": 7}))));
        assert!(!is_deterministic(&chat(json!({}))));
        assert!(!is_deterministic(&chat(json!({"temperature": 0.2}))));
        assert!(!is_deterministic(&chat(json!({"seed": null}))));
        let embeddings = ChatRequest::parse_at(
            Endpoint::Embeddings,
            json!({"model": "e", "input": "x"}).to_string().as_bytes(),
        )
        .unwrap();
        assert!(is_deterministic(&embeddings));
        assert!(is_storable(&chat(json!({"logprobs": false}))));
        assert!(!is_storable(&chat(json!({"logprobs": true}))));
        assert!(!is_storable(&chat(json!({"top_logprobs": 2}))));
    }
}
