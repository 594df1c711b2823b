//! Which requests the cache may answer, and the key their answer is kept
//! under.

use serde::{Serialize, Serializer};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::chat::ChatRequest;
use crate::endpoint::Endpoint;
use crate::format::ApiFormat;

/// Fields that never change the answer: how it is delivered (`stream`,
/// `stream_options`), who asked (`user`, `metadata`) and whether the
/// provider keeps a copy (`store`). Every other field is part of the key,
/// so a parameter Chorus does not know yet can never return a wrong answer.
const NOT_IN_KEY: [&str; 5] = ["stream", "stream_options", "user", "metadata", "store"];

/// SHA-256 of a request's scope, endpoint and normalised body.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CacheKey(pub [u8; 32]);

/// The key of `request`'s answer within `scope` (whose answers may be
/// shared: one team, or everyone). The body is normalised only as far as
/// it cannot change the answer: the fields above left out, whitespace
/// gone. Field order is kept — the order of a JSON schema's properties is
/// the order a structured answer comes in. `model` is the alias. A client
/// of another format is keyed by the body it sent, which may hold what
/// its OpenAI translation leaves out (`thinking`, `cache_control`, …).
pub fn cache_key(scope: &str, request: &ChatRequest) -> CacheKey {
    let mut hasher = Sha256::new();
    hasher.update(scope.as_bytes());
    hasher.update([0]);
    hasher.update(request.endpoint.path().as_bytes());
    hasher.update([0]);
    let sent = match request.client_format() {
        ApiFormat::OpenAi => None,
        other => request
            .sent_body()
            .and_then(|body| serde_json::from_slice::<Map<String, Value>>(body).ok())
            .map(|mut body| {
                body.insert("model".into(), request.model.clone().into());
                (other, body)
            }),
    };
    let kept = match &sent {
        Some((format, body)) => {
            hasher.update(format!("{format:?}").as_bytes());
            hasher.update([0]);
            KeptFields(body)
        }
        None => KeptFields(request.body()),
    };
    hasher.update(serde_json::to_vec(&kept).unwrap_or_default());
    CacheKey(hasher.finalize().into())
}

/// A body without the fields that are not in the key, serialised as is.
struct KeptFields<'a>(&'a Map<String, Value>);

impl Serialize for KeptFields<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let kept = self
            .0
            .iter()
            .filter(|(name, _)| !NOT_IN_KEY.contains(&name.as_str()));
        serializer.collect_map(kept)
    }
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
    fn whitespace_is_not_in_the_key_and_field_order_is() {
        let compact =
            br#"{"model":"m","temperature":0,"messages":[{"role":"user","content":"hi"}]}"#;
        let spaced = br#"{ "model" : "m",
            "temperature": 0, "messages": [ {"role": "user", "content": "hi"} ] }"#;
        let key_of = |body: &[u8]| cache_key("s", &ChatRequest::parse(body).unwrap());
        assert_eq!(key_of(compact), key_of(spaced));
        let schema = |properties: Value| {
            key(
                json!({"model": "m", "messages": [{"role": "user", "content": "x"}],
                "response_format": {"type": "json_schema", "json_schema": {"name": "r",
                    "schema": {"type": "object", "properties": properties}}}}),
            )
        };
        assert_ne!(
            schema(json!({"a": {"type": "string"}, "b": {"type": "string"}})),
            schema(json!({"b": {"type": "string"}, "a": {"type": "string"}})),
            "structured answers come in the schema's order"
        );
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
