use super::*;

fn chat(body: Value) -> Result<Value, RequestError> {
    let Value::Object(body) = body else {
        panic!("test bodies are objects")
    };
    to_chat(&body).map(Value::Object)
}

#[test]
fn instructions_and_a_string_input_become_two_turns() {
    let out = chat(
        json!({"model": "m", "instructions": "Be brief.", "input": "Hi",
        "max_output_tokens": 50, "temperature": 0.2, "store": true, "metadata": {"a": "b"}}),
    )
    .unwrap();
    assert_eq!(
        out,
        json!({"temperature": 0.2, "model": "m", "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Hi"}],
            "max_completion_tokens": 50})
    );
}

#[test]
fn a_function_call_round_trip_becomes_tool_turns() {
    let out = chat(json!({"model": "m", "input": [
        {"role": "user", "content": [{"type": "input_text", "text": "Weather in Paris?"},
            {"type": "input_image", "image_url": "https://x/p.png", "detail": "low"}]},
        {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "Checking."}]},
        {"type": "function_call", "call_id": "c1", "name": "weather", "arguments": "{\"city\":\"Paris\"}"},
        {"type": "function_call", "call_id": "c2", "name": "time", "arguments": "{}"},
        {"type": "reasoning", "id": "rs_1", "summary": []},
        {"type": "function_call_output", "call_id": "c1", "output": "18C"},
        {"type": "function_call_output", "call_id": "c2",
            "output": [{"type": "input_text", "text": "noon"}]}],
        "tools": [{"type": "function", "name": "weather", "parameters": {"type": "object"}, "strict": true}],
        "tool_choice": {"type": "function", "name": "weather"}}))
    .unwrap();
    assert_eq!(
        out["messages"],
        json!([
            {"role": "user", "content": [{"type": "text", "text": "Weather in Paris?"},
                {"type": "image_url", "image_url": {"url": "https://x/p.png", "detail": "low"}}]},
            {"role": "assistant", "content": "Checking.", "tool_calls": [
                {"id": "c1", "type": "function", "function": {"name": "weather", "arguments": "{\"city\":\"Paris\"}"}},
                {"id": "c2", "type": "function", "function": {"name": "time", "arguments": "{}"}}]},
            {"role": "tool", "tool_call_id": "c1", "content": "18C"},
            {"role": "tool", "tool_call_id": "c2", "content": "noon"}])
    );
    assert_eq!(
        out["tools"],
        json!([{"type": "function", "function": {"name": "weather",
            "parameters": {"type": "object"}, "strict": true}}])
    );
    assert_eq!(
        out["tool_choice"],
        json!({"type": "function", "function": {"name": "weather"}})
    );
}

#[test]
fn reasoning_text_format_and_streams_take_their_chat_names() {
    let out = chat(json!({"model": "m", "input": "x", "stream": true,
        "reasoning": {"effort": "high", "summary": "auto"},
        "text": {"format": {"type": "json_schema", "name": "r", "schema": {"type": "object"}, "strict": true},
            "verbosity": "low"}}))
    .unwrap();
    assert_eq!(out["reasoning_effort"], "high");
    assert_eq!(out["verbosity"], "low");
    assert_eq!(
        out["response_format"],
        json!({"type": "json_schema", "json_schema": {"name": "r", "schema": {"type": "object"}, "strict": true}})
    );
    assert_eq!(out["stream_options"], json!({"include_usage": true}));
}

#[test]
fn what_chat_completions_cannot_do_is_refused_by_name() {
    for (body, field) in [
        (
            json!({"model": "m", "input": "x", "tools": [{"type": "web_search"}]}),
            "tools",
        ),
        (
            json!({"model": "m", "input": "x", "background": true}),
            "background",
        ),
        (
            json!({"model": "m", "input": [{"type": "item_reference", "id": "msg_1"}]}),
            "input",
        ),
        (
            json!({"model": "m", "input": [{"type": "web_search_call", "id": "ws"}]}),
            "input",
        ),
        (
            json!({"model": "m", "input": "x", "previous_response_id": "resp_1"}),
            "previous_response_id",
        ),
    ] {
        let error = chat(body).unwrap_err();
        assert!(
            matches!(error, RequestError::Untranslatable { .. }),
            "{error}"
        );
        assert_eq!(error.param(), Some(field));
    }
    assert!(chat(json!({"model": "m", "input": "x", "background": false})).is_ok());
}

#[test]
fn malformed_input_names_the_parameter() {
    for (body, field) in [
        (json!({"model": "m"}), "input"),
        (json!({"model": "m", "input": 3}), "input"),
        (
            json!({"model": "m", "input": [{"role": "robot", "content": "x"}]}),
            "input",
        ),
        (
            json!({"model": "m", "input": [{"type": "function_call", "name": "f"}]}),
            "input",
        ),
        (
            json!({"model": "m", "input": "x", "instructions": 1}),
            "instructions",
        ),
        (
            json!({"model": "m", "input": "x", "max_output_tokens": -1}),
            "max_output_tokens",
        ),
        (
            json!({"model": "m", "input": "x", "tool_choice": "maybe"}),
            "tool_choice",
        ),
        (
            json!({"model": "m", "input": "x", "text": {"format": {"type": "yaml"}}}),
            "text.format",
        ),
    ] {
        assert_eq!(chat(body).unwrap_err().param(), Some(field));
    }
}

#[test]
fn a_reasoning_item_of_ours_opens_the_assistant_turn_with_its_thinking_blocks() {
    let block = json!({"type": "thinking", "thinking": "Use the tool.", "signature": "sig"});
    let reasoning = crate::responses::object::reasoning_item(
        "rs_1",
        "Use the tool.",
        std::slice::from_ref(&block),
        "completed",
    );
    let foreign = json!({"type": "reasoning", "id": "rs_2", "summary": [], "encrypted_content": "gAAAAB-openai"});
    let body = json!({"model": "m", "input": [
        {"role": "user", "content": "Weather?"},
        reasoning,
        {"type": "function_call", "call_id": "call_1", "name": "weather", "arguments": "{}"},
        {"type": "function_call_output", "call_id": "call_1", "output": "sunny"},
        reasoning,
        {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "Sunny."}]},
        foreign,
        {"role": "user", "content": "Thanks"}
    ]});
    let messages = chat(body).unwrap()["messages"].clone();
    assert_eq!(messages[1]["thinking_blocks"], json!([block]));
    assert_eq!(messages[1]["tool_calls"][0]["id"], "call_1");
    assert_eq!(messages[3]["thinking_blocks"], json!([block]));
    assert_eq!(messages[3]["content"], "Sunny.");
    assert_eq!(
        messages[4],
        json!({"role": "user", "content": "Thanks"}),
        "OpenAI's own reasoning is left out"
    );
    assert_eq!(messages.as_array().unwrap().len(), 5);
}
