use proptest::prelude::*;
use serde_json::{json, Map, Value};

use super::*;

fn object(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        _ => panic!("not an object"),
    }
}

/// A request using everything both formats can say.
fn rich_chat_request() -> Value {
    json!({
        "model": "claude-x",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": [
                {"type": "text", "text": "What is in this picture, and the weather?"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}
            ]},
            {"role": "assistant", "content": "Let me look.", "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": "weather", "arguments": "{\"city\":\"Paris\"}"}}
            ]},
            {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
            {"role": "user", "content": "Thanks"},
            {"role": "assistant", "content": "You are welcome."},
            {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}}]}
        ],
        "max_tokens": 100,
        "temperature": 0.5,
        "top_p": 0.9,
        "stop": ["END"],
        "tools": [{"type": "function", "function": {"name": "weather", "description": "Weather of a city",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}],
        "tool_choice": "required",
        "parallel_tool_calls": false,
        "user": "user-42"
    })
}

#[test]
fn an_openai_request_becomes_the_messages_request_anthropic_documents() {
    let messages = to_messages(&object(rich_chat_request()), 4096).unwrap();
    assert_eq!(
        Value::Object(messages),
        json!({
            "model": "claude-x",
            "system": [{"type": "text", "text": "Be brief."}],
            "messages": [
                {"role": "user", "content": [
                    {"type": "text", "text": "What is in this picture, and the weather?"},
                    {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}}
                ]},
                {"role": "assistant", "content": [
                    {"type": "text", "text": "Let me look."},
                    {"type": "tool_use", "id": "call_1", "name": "weather", "input": {"city": "Paris"}}
                ]},
                {"role": "user", "content": [
                    {"type": "tool_result", "tool_use_id": "call_1", "content": "sunny"},
                    {"type": "text", "text": "Thanks"}
                ]},
                {"role": "assistant", "content": [{"type": "text", "text": "You are welcome."}]},
                {"role": "user", "content": [{"type": "image", "source": {"type": "url", "url": "https://example.com/cat.png"}}]}
            ],
            "max_tokens": 100,
            "temperature": 0.5,
            "top_p": 0.9,
            "stop_sequences": ["END"],
            "tools": [{"name": "weather", "description": "Weather of a city",
                "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}],
            "tool_choice": {"type": "any", "disable_parallel_tool_use": true},
            "metadata": {"user_id": "user-42"}
        })
    );
}

#[test]
fn a_request_survives_the_round_trip() {
    let original = rich_chat_request();
    let messages = to_messages(&object(original.clone()), 4096).unwrap();
    let back = to_chat(&messages).unwrap();
    assert_eq!(Value::Object(back), original);
}

#[test]
fn max_tokens_gets_the_configured_default_and_stop_a_list() {
    let chat = object(
        json!({"model": "m", "messages": [{"role": "user", "content": "hi"}],
        "stop": "END", "stream": true, "stream_options": {"include_usage": true}}),
    );
    let messages = to_messages(&chat, 1234).unwrap();
    assert_eq!(messages["max_tokens"], 1234);
    assert_eq!(messages["stop_sequences"], json!(["END"]));
    assert_eq!(messages["stream"], true);
    assert!(!messages.contains_key("stream_options"));
    let chat = object(
        json!({"model": "m", "messages": [{"role": "user", "content": "hi"}],
        "max_completion_tokens": 9}),
    );
    assert_eq!(to_messages(&chat, 1234).unwrap()["max_tokens"], 9);
}

#[test]
fn a_streamed_messages_request_asks_for_usage() {
    let messages = object(json!({"model": "fast", "max_tokens": 5, "stream": true,
        "system": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}],
        "messages": [{"role": "user", "content": "hi"}]}));
    let chat = to_chat(&messages).unwrap();
    assert_eq!(chat["stream_options"], json!({"include_usage": true}));
    assert_eq!(
        chat["messages"][0],
        json!({"role": "system", "content": "a\n\nb"})
    );
    assert!(crate::ChatRequest::from_body(chat).unwrap().include_usage);
}

#[test]
fn what_has_no_equivalent_is_refused_by_name() {
    let refused = |chat: Value| to_messages(&object(chat), 10).unwrap_err();
    let user = json!([{"role": "user", "content": "hi"}]);
    assert_eq!(
        refused(json!({"messages": user, "n": 2})).param(),
        Some("n")
    );
    let audio = json!([{"role": "user", "content": [{"type": "input_audio", "input_audio": {}}]}]);
    assert_eq!(
        refused(json!({"messages": audio})).code(),
        "unsupported_parameter"
    );
    for (field, value) in [
        ("temperature", json!(1.5)),
        ("response_format", json!({"type": "json_object"})),
        ("logprobs", json!(true)),
    ] {
        let mut chat = json!({"messages": user});
        chat[field] = value;
        assert_eq!(refused(chat).param(), Some(field));
    }

    let refused = |messages: Value| to_chat(&object(messages)).unwrap_err();
    assert_eq!(refused(json!({"messages": []})).param(), Some("model"));
    assert_eq!(refused(json!({"model": "m"})).param(), Some("messages"));
    let server_tool = json!({"model": "m", "messages": [], "tools": [{"type": "web_search_20250305", "name": "web_search"}]});
    assert_eq!(refused(server_tool).param(), Some("tools"));
    let document = json!({"model": "m", "messages": [{"role": "user", "content": [{"type": "document", "source": {}}]}]});
    assert_eq!(refused(document).code(), "unsupported_parameter");
    let bad_role = json!({"model": "m", "messages": [{"role": "system", "content": "x"}]});
    assert_eq!(refused(bad_role).param(), Some("messages"));
}

#[test]
fn broken_tool_arguments_and_blank_text_still_translate() {
    let chat = object(json!({"messages": [
        {"role": "system", "content": [{"type": "text", "text": " "}]},
        {"role": "user", "content": [{"type": "text", "text": ""}, {"type": "text", "text": "hi"}]},
        {"role": "assistant", "content": "", "tool_calls": [
            {"id": "c", "function": {"name": "f", "arguments": "{\"a\": "}}]}
    ]}));
    let messages = to_messages(&chat, 10).unwrap();
    assert!(!messages.contains_key("system"), "blank text is no block");
    assert_eq!(
        messages["messages"],
        json!([
            {"role": "user", "content": [{"type": "text", "text": "hi"}]},
            {"role": "assistant", "content": [{"type": "tool_use", "id": "c", "name": "f", "input": {"arguments": "{\"a\": "}}]}
        ])
    );
}

#[test]
fn tool_errors_are_marked_and_non_text_results_refused() {
    let result = |content: Value| {
        object(
            json!({"model": "m", "messages": [{"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "t", "is_error": true, "content": content}]}]}),
        )
    };
    let chat = to_chat(&result(json!("no such city"))).unwrap();
    assert_eq!(chat["messages"][0]["content"], "Error: no such city");
    let image = json!([{"type": "image", "source": {"type": "url", "url": "https://x/y.png"}}]);
    assert_eq!(
        to_chat(&result(image)).unwrap_err().code(),
        "unsupported_parameter"
    );
}

#[test]
fn thinking_is_dropped_and_tool_calls_without_text_have_null_content() {
    let messages = object(json!({"model": "m", "max_tokens": 5, "messages": [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": [
            {"type": "thinking", "thinking": "hmm", "signature": "sig"},
            {"type": "tool_use", "id": "toolu_1", "name": "f", "input": {"a": 1}}
        ]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1",
            "content": [{"type": "text", "text": "done"}]}]}
    ]}));
    let chat = to_chat(&messages).unwrap();
    assert_eq!(
        chat["messages"],
        json!([
            {"role": "user", "content": "hi"},
            {"role": "assistant", "content": null, "tool_calls": [
                {"id": "toolu_1", "type": "function", "function": {"name": "f", "arguments": "{\"a\":1}"}}]},
            {"role": "tool", "tool_call_id": "toolu_1", "content": "done"}
        ])
    );
}

fn conversation() -> impl Strategy<Value = Vec<(&'static str, String)>> {
    let role = prop_oneof![Just("system"), Just("user"), Just("assistant")];
    prop::collection::vec((role, "[a-z][a-z ]{0,11}"), 1..12)
}

/// The text each role said, in order, with no regard to message bounds.
fn said_by(messages: &[Value], role: &str) -> String {
    let mut text = String::new();
    for message in messages.iter().filter(|m| m["role"] == role) {
        crate::chat::content_text(message.get("content"), &mut text);
    }
    text
}

proptest! {
    /// Whatever order an OpenAI client sends turns in, the Messages request
    /// alternates roles, and translating it back keeps what each role said.
    #[test]
    fn turns_alternate_and_keep_their_words(turns in conversation()) {
        let chat_messages: Vec<Value> = turns
            .iter()
            .map(|(role, text)| json!({"role": role, "content": text}))
            .collect();
        let chat = object(json!({"model": "m", "messages": chat_messages}));
        let messages = to_messages(&chat, 10).unwrap();
        let turns_out = messages["messages"].as_array().unwrap();
        for pair in turns_out.windows(2) {
            prop_assert_ne!(&pair[0]["role"], &pair[1]["role"]);
        }
        let back = to_chat(&messages).unwrap();
        let back_messages = back["messages"].as_array().unwrap();
        let system: String = turns.iter().filter(|(role, _)| *role == "system").map(|(_, t)| t.as_str()).collect::<Vec<_>>().join("\n\n");
        prop_assert_eq!(said_by(back_messages, "system"), system);
        for role in ["user", "assistant"] {
            prop_assert_eq!(said_by(back_messages, role), said_by(&chat_messages, role));
        }
    }
}

#[test]
fn reasoning_effort_asks_for_thinking_and_thinking_blocks_go_back_first() {
    let chat = object(
        json!({"model": "m", "max_completion_tokens": 8000, "reasoning_effort": "medium",
        "messages": [
            {"role": "user", "content": "Weather?"},
            {"role": "assistant", "content": null,
                "thinking_blocks": [{"type": "thinking", "thinking": "Use the tool.", "signature": "sig-1"}],
                "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": "weather", "arguments": "{}"}}]},
            {"role": "tool", "tool_call_id": "call_1", "content": "sunny"}
        ]}),
    );
    let messages = to_messages(&chat, 1024).unwrap();
    assert_eq!(
        messages["thinking"],
        json!({"type": "enabled", "budget_tokens": 2048})
    );
    assert_eq!(messages["max_tokens"], 8000);
    assert_eq!(
        messages["messages"][1]["content"][0],
        json!({"type": "thinking", "thinking": "Use the tool.", "signature": "sig-1"}),
        "signed thinking goes back ahead of the tool use"
    );
    assert_eq!(messages["messages"][1]["content"][1]["type"], "tool_use");
    let cold = object(
        json!({"model": "m", "max_tokens": 8000, "reasoning_effort": "low",
        "temperature": 0.3, "messages": [{"role": "user", "content": "x"}]}),
    );
    assert_eq!(
        to_messages(&cold, 1024).unwrap_err().param(),
        Some("temperature")
    );
    let unknown = object(json!({"model": "m", "reasoning_effort": "max",
        "messages": [{"role": "user", "content": "x"}]}));
    assert_eq!(
        to_messages(&unknown, 9000).unwrap_err().param(),
        Some("reasoning_effort")
    );
}

#[test]
fn thinking_asks_openai_for_the_effort_its_budget_falls_in() {
    let ask = |thinking: Value| {
        to_chat(&object(
            json!({"model": "m", "max_tokens": 20000, "thinking": thinking,
            "messages": [{"role": "user", "content": "x"}]}),
        ))
    };
    let deep = ask(json!({"type": "enabled", "budget_tokens": 10000})).unwrap();
    assert_eq!(deep["reasoning_effort"], "high");
    let light = ask(json!({"type": "enabled", "budget_tokens": 1024})).unwrap();
    assert_eq!(light["reasoning_effort"], "low");
    let off = ask(json!({"type": "disabled"})).unwrap();
    assert!(off.get("reasoning_effort").is_none());
    assert_eq!(
        ask(json!({"type": "sometimes"})).unwrap_err().param(),
        Some("thinking")
    );
}

#[test]
fn cache_control_on_openai_parts_and_tools_reaches_anthropic() {
    let ephemeral = json!({"type": "ephemeral"});
    let chat = object(json!({"model": "m", "messages": [
        {"role": "system", "content": [{"type": "text", "text": "Long rules.", "cache_control": ephemeral}]},
        {"role": "user", "content": [
            {"type": "text", "text": "A big document.", "cache_control": ephemeral},
            {"type": "text", "text": "The question."}
        ]},
        {"role": "assistant", "content": null, "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "call_1",
            "content": [{"type": "text", "text": "result", "cache_control": ephemeral}]}
    ], "tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}},
        "cache_control": ephemeral}]}));
    let messages = to_messages(&chat, 1024).unwrap();
    assert_eq!(messages["system"][0]["cache_control"], ephemeral);
    assert_eq!(
        messages["messages"][0]["content"][0]["cache_control"],
        ephemeral
    );
    assert!(messages["messages"][0]["content"][1]
        .get("cache_control")
        .is_none());
    assert_eq!(
        messages["messages"][2]["content"][0]["cache_control"],
        ephemeral
    );
    assert_eq!(messages["tools"][0]["cache_control"], ephemeral);
}
