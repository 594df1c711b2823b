//! A whole chat completion as a `response` object.

use serde_json::Value;

use super::object::{
    call_item, message_item, reasoning_item, thinking_of, Draft, Envelope, PartKind,
};

/// A chat completion (its `model` already the client's) as the response
/// `envelope` names: the message's text or refusal as a message item,
/// each tool call as a function call item.
pub fn to_response(completion: &[u8], envelope: &Envelope) -> Result<Vec<u8>, String> {
    let completion: Value = serde_json::from_slice(completion).map_err(|e| e.to_string())?;
    let choice = completion
        .pointer("/choices/0")
        .ok_or("the completion has no choice")?;
    let message = &choice["message"];
    let mut draft = Draft::new(envelope.clone());
    draft.set_model(&completion["model"]);
    if let Some((reasoning, blocks)) = thinking_of(message) {
        let id = draft.next_item_id("rs");
        let item = reasoning_item(&id, reasoning, &blocks, "completed");
        draft.output.push(item);
    }
    let parts = [("content", PartKind::Text), ("refusal", PartKind::Refusal)];
    for (field, kind) in parts {
        if let Some(text) = message[field].as_str().filter(|text| !text.is_empty()) {
            let id = draft.next_item_id("msg");
            draft
                .output
                .push(message_item(&id, kind, text, "completed"));
        }
    }
    for call in message["tool_calls"].as_array().into_iter().flatten() {
        let field = |pointer: &str| call.pointer(pointer).and_then(Value::as_str).unwrap_or("");
        let id = draft.next_item_id("fc");
        let item = call_item(
            &id,
            field("/id"),
            field("/function/name"),
            field("/function/arguments"),
            "completed",
        );
        draft.output.push(item);
    }
    if draft.output.is_empty() {
        let id = draft.next_item_id("msg");
        let item = message_item(&id, PartKind::Text, "", "completed");
        draft.output.push(item);
    }
    draft.finish(choice["finish_reason"].as_str(), &completion["usage"]);
    serde_json::to_vec(&draft.object(draft.end_status(), None)).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn envelope() -> Envelope {
        let request =
            json!({"model": "m", "input": "x", "instructions": "Be brief.", "store": false});
        Envelope::new(
            "resp_r1".into(),
            1_700_000_000,
            request.as_object().unwrap(),
        )
    }

    #[test]
    fn text_and_tool_calls_become_output_items() {
        let completion = json!({"id": "chatcmpl-1", "object": "chat.completion", "model": "alias",
            "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {"role": "assistant",
                "content": "Let me look.", "tool_calls": [{"id": "call_1", "type": "function",
                    "function": {"name": "weather", "arguments": "{\"city\":\"Paris\"}"}}]}}],
            "usage": {"prompt_tokens": 12, "completion_tokens": 5, "total_tokens": 17,
                "prompt_tokens_details": {"cached_tokens": 8}}});
        let out = to_response(completion.to_string().as_bytes(), &envelope()).unwrap();
        let out: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(out["id"], "resp_r1");
        assert_eq!(out["object"], "response");
        assert_eq!(out["status"], "completed");
        assert_eq!(out["model"], "alias");
        assert_eq!(out["instructions"], "Be brief.");
        assert_eq!(out["store"], false);
        assert_eq!(out["tool_choice"], "auto");
        assert_eq!(
            out["output"],
            json!([
                {"type": "message", "id": "msg_r1_0", "status": "completed", "role": "assistant",
                    "content": [{"type": "output_text", "text": "Let me look.", "annotations": [], "logprobs": []}]},
                {"type": "function_call", "id": "fc_r1_1", "call_id": "call_1", "name": "weather",
                    "arguments": "{\"city\":\"Paris\"}", "status": "completed"}])
        );
        assert_eq!(
            out["usage"],
            json!({"input_tokens": 12, "input_tokens_details": {"cached_tokens": 8},
                "output_tokens": 5, "output_tokens_details": {"reasoning_tokens": 0}, "total_tokens": 17})
        );
    }

    #[test]
    fn an_answer_cut_at_its_limit_is_incomplete() {
        let completion = json!({"model": "alias", "choices": [{"finish_reason": "length",
            "message": {"role": "assistant", "content": "Once upon"}}]});
        let out = to_response(completion.to_string().as_bytes(), &envelope()).unwrap();
        let out: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(out["status"], "incomplete");
        assert_eq!(
            out["incomplete_details"],
            json!({"reason": "max_output_tokens"})
        );
    }

    #[test]
    fn a_body_with_no_choice_is_an_error() {
        assert!(to_response(b"{\"choices\": []}", &envelope()).is_err());
        assert!(to_response(b"nope", &envelope()).is_err());
    }
}
