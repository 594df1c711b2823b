//! A request's prompt-cache identity: what requests that would share a
//! provider's prompt cache have in common, so that an alias with
//! `cache_affinity` sends them all to one deployment, whichever node they
//! reach. In order, the first that the request has:
//!
//! 1. what the gateway named it by (a Responses conversation);
//! 2. `prompt_cache_key`, OpenAI's own name for it;
//! 3. `user` (where an Anthropic client's `metadata.user_id` lands), an
//!    agent's session;
//! 4. its leading prefix: the messages up to the first one that marks a
//!    `cache_control` breakpoint (agents move their last breakpoint to
//!    the newest turn, while the first stays on the same system prompt or
//!    document), or else its system messages and first other message,
//!    which every later turn of a conversation repeats.
//!
//! Each is hashed with its kind, so a key and a prefix never collide.

use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

/// The identity of a chat body, `named` by the gateway or read from it;
/// `None` when it has no messages to take a prefix of.
pub fn identity(body: &Map<String, Value>, named: Option<&str>) -> Option<[u8; 32]> {
    let text = |field: &str| body.get(field).and_then(Value::as_str);
    let explicit = named
        .map(|name| ("named", name))
        .or_else(|| text("prompt_cache_key").map(|key| ("prompt_cache_key", key)))
        .or_else(|| text("user").map(|user| ("user", user)));
    let mut hash = Sha256::new();
    match explicit {
        Some((kind, value)) => {
            hash.update(kind.as_bytes());
            hash.update([0]);
            hash.update(value.as_bytes());
        }
        None => {
            let messages = body.get("messages")?.as_array()?;
            let prefix = prefix(messages);
            if prefix.is_empty() {
                return None;
            }
            hash.update(b"prefix\0");
            for message in prefix {
                hash.update(message.to_string().as_bytes());
                hash.update([0]);
            }
        }
    }
    Some(hash.finalize().into())
}

/// The messages a conversation's every turn starts with.
fn prefix(messages: &[Value]) -> &[Value] {
    let marked = messages.iter().position(marks_breakpoint);
    if let Some(last) = marked {
        return &messages[..=last];
    }
    let system = messages
        .iter()
        .take_while(|message| matches!(message["role"].as_str(), Some("system" | "developer")))
        .count();
    &messages[..(system + 1).min(messages.len())]
}

fn marks_breakpoint(message: &Value) -> bool {
    message.get("cache_control").is_some()
        || message["content"]
            .as_array()
            .is_some_and(|parts| parts.iter().any(|part| part.get("cache_control").is_some()))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn body(value: Value) -> Map<String, Value> {
        value.as_object().cloned().unwrap()
    }

    #[test]
    fn turns_of_one_conversation_share_an_identity_and_others_do_not() {
        let first = body(json!({"messages": [
            {"role": "system", "content": "Rules."},
            {"role": "user", "content": "Task A"}]}));
        let later = body(json!({"messages": [
            {"role": "system", "content": "Rules."},
            {"role": "user", "content": "Task A"},
            {"role": "assistant", "content": "Done."},
            {"role": "user", "content": "Next"}]}));
        let other = body(json!({"messages": [
            {"role": "system", "content": "Rules."},
            {"role": "user", "content": "Task B"}]}));
        assert_eq!(identity(&first, None), identity(&later, None));
        assert_ne!(identity(&first, None), identity(&other, None));
        assert_eq!(identity(&body(json!({"input": "x"})), None), None);
    }

    #[test]
    fn a_breakpoint_ends_the_prefix_and_names_come_first() {
        let marked = |question: &str| {
            body(json!({"messages": [
                {"role": "user", "content": [
                    {"type": "text", "text": "A long document.", "cache_control": {"type": "ephemeral"}}]},
                {"role": "user", "content": question}]}))
        };
        assert_eq!(identity(&marked("Q1"), None), identity(&marked("Q2"), None));
        // A later turn marks its newest message too: the first breakpoint
        // still names the conversation.
        let mut later = marked("Q1");
        if let Some(Value::Array(messages)) = later.get_mut("messages") {
            messages.push(json!({"role": "user", "content": [
                {"type": "text", "text": "Q3", "cache_control": {"type": "ephemeral"}}]}));
        }
        assert_eq!(identity(&later, None), identity(&marked("Q1"), None));
        let keyed = |key: &str, question: &str| {
            body(
                json!({"prompt_cache_key": key, "user": "u", "messages": [{"role": "user", "content": question}]}),
            )
        };
        assert_eq!(
            identity(&keyed("k", "a"), None),
            identity(&keyed("k", "b"), None)
        );
        assert_ne!(
            identity(&keyed("k", "a"), None),
            identity(&keyed("j", "a"), None)
        );
        assert_ne!(
            identity(&keyed("k", "a"), Some("conv_1")),
            identity(&keyed("k", "a"), None),
            "the gateway's name wins"
        );
        let user = body(json!({"user": "k", "messages": [{"role": "user", "content": "a"}]}));
        let key =
            body(json!({"prompt_cache_key": "k", "messages": [{"role": "user", "content": "a"}]}));
        assert_ne!(
            identity(&user, None),
            identity(&key, None),
            "kinds never collide"
        );
    }
}
