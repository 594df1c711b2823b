use bytes::BytesMut;
use serde_json::{json, Value};

use super::*;

/// An Anthropic stream as its documentation shows one: text, then a tool
/// call whose input arrives in pieces.
fn anthropic_events() -> Vec<Value> {
    vec![
        json!({"type": "message_start", "message": {"id": "msg_1", "type": "message", "role": "assistant",
            "model": "claude-x", "content": [], "stop_reason": null, "stop_sequence": null,
            "usage": {"input_tokens": 25, "output_tokens": 1}}}),
        json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
        json!({"type": "ping"}),
        json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Let me "}}),
        json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "check."}}),
        json!({"type": "content_block_stop", "index": 0}),
        json!({"type": "content_block_start", "index": 1, "content_block": {"type": "tool_use", "id": "toolu_1", "name": "weather", "input": {}}}),
        json!({"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": "{\"city\": "}}),
        json!({"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": "\"Paris\"}"}}),
        json!({"type": "content_block_stop", "index": 1}),
        json!({"type": "message_delta", "delta": {"stop_reason": "tool_use", "stop_sequence": null}, "usage": {"output_tokens": 9}}),
        json!({"type": "message_stop"}),
    ]
}

/// What an OpenAI client rebuilds from chunks: text, tool calls, finish
/// reason, usage.
#[derive(Debug, Default, PartialEq)]
struct Rebuilt {
    text: String,
    calls: Vec<(String, String, String)>,
    finish: Option<String>,
    usage: Option<Value>,
    done: bool,
}

fn rebuild(payloads: &[String]) -> Rebuilt {
    let mut rebuilt = Rebuilt::default();
    for payload in payloads {
        if payload == DONE {
            rebuilt.done = true;
            continue;
        }
        let chunk: Value = serde_json::from_str(payload).unwrap();
        if !chunk["usage"].is_null() {
            rebuilt.usage = Some(chunk["usage"].clone());
        }
        let Some(choice) = chunk.pointer("/choices/0") else {
            continue;
        };
        if let Some(text) = choice["delta"]["content"].as_str() {
            rebuilt.text.push_str(text);
        }
        for call in choice["delta"]["tool_calls"]
            .as_array()
            .into_iter()
            .flatten()
        {
            let index = call["index"].as_u64().unwrap() as usize;
            if rebuilt.calls.len() <= index {
                rebuilt.calls.push((
                    call["id"].as_str().unwrap().into(),
                    call["function"]["name"].as_str().unwrap().into(),
                    String::new(),
                ));
            }
            rebuilt.calls[index]
                .2
                .push_str(call["function"]["arguments"].as_str().unwrap_or(""));
        }
        if let Some(finish) = choice["finish_reason"].as_str() {
            rebuilt.finish = Some(finish.into());
        }
    }
    rebuilt
}

fn to_chunks(events: &[Value]) -> Vec<String> {
    let mut translator = ToChunks::new(7);
    events
        .iter()
        .flat_map(|event| translator.event(&event.to_string()).unwrap())
        .collect()
}

#[test]
fn an_anthropic_stream_reads_as_openai_chunks() {
    let payloads = to_chunks(&anthropic_events());
    let first: Value = serde_json::from_str(&payloads[0]).unwrap();
    assert_eq!(
        first["choices"][0]["delta"],
        json!({"role": "assistant", "content": ""})
    );
    assert_eq!(
        (
            first["id"].as_str(),
            first["model"].as_str(),
            first["created"].as_u64()
        ),
        (Some("msg_1"), Some("claude-x"), Some(7))
    );
    assert_eq!(
        rebuild(&payloads),
        Rebuilt {
            text: "Let me check.".into(),
            calls: vec![(
                "toolu_1".into(),
                "weather".into(),
                "{\"city\": \"Paris\"}".into()
            )],
            finish: Some("tool_calls".into()),
            usage: Some(json!({"prompt_tokens": 25, "completion_tokens": 9, "total_tokens": 34})),
            done: true,
        }
    );
    assert_eq!(payloads.last().map(String::as_str), Some(DONE));
}

#[test]
fn an_error_event_is_an_error() {
    let mut translator = ToChunks::new(0);
    let error =
        json!({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}});
    assert_eq!(
        translator.event(&error.to_string()),
        Err("Overloaded".into())
    );
    assert!(translator.event("not json").is_err());
    let stray = json!({"type": "content_block_delta", "index": 3, "delta": {"type": "input_json_delta", "partial_json": "{"}});
    assert!(translator.event(&stray.to_string()).is_err());
}

/// Splits SSE text into (event, data) pairs.
fn parse_sse(bytes: &[u8]) -> Vec<(String, Value)> {
    std::str::from_utf8(bytes)
        .unwrap()
        .split("\n\n")
        .filter(|frame| !frame.is_empty())
        .map(|frame| {
            let (event, data) = frame.split_once('\n').unwrap();
            let event = event.strip_prefix("event: ").unwrap().to_owned();
            let data = serde_json::from_str(data.strip_prefix("data: ").unwrap()).unwrap();
            (event, data)
        })
        .collect()
}

#[test]
fn openai_chunks_write_as_anthropic_events_and_read_back() {
    let payloads = to_chunks(&anthropic_events());
    let mut writer = ToEvents::default();
    let mut out = BytesMut::new();
    for payload in &payloads {
        if payload == DONE {
            writer.done(&mut out);
        } else {
            writer.chunk(payload.as_bytes(), &mut out).unwrap();
        }
    }
    let events = parse_sse(&out);
    let names: Vec<&str> = events.iter().map(|(name, _)| name.as_str()).collect();
    assert_eq!(
        names,
        [
            "message_start",
            "content_block_start",
            "content_block_delta",
            "content_block_delta",
            "content_block_stop",
            "content_block_start",
            "content_block_delta",
            "content_block_delta",
            "content_block_stop",
            "message_delta",
            "message_stop",
        ]
    );
    for (name, data) in &events {
        assert_eq!(
            data["type"],
            name.as_str(),
            "each event names its type twice"
        );
    }
    assert_eq!(
        events[5].1["content_block"],
        json!({"type": "tool_use", "id": "toolu_1", "name": "weather", "input": {}})
    );
    assert_eq!(events[9].1["delta"]["stop_reason"], "tool_use");
    assert_eq!(
        events[9].1["usage"],
        json!({"input_tokens": 25, "output_tokens": 9})
    );
    // And back again: the same text, call, finish and usage.
    let data: Vec<Value> = events.into_iter().map(|(_, data)| data).collect();
    assert_eq!(rebuild(&to_chunks(&data)), rebuild(&payloads));
}

#[test]
fn an_empty_stream_still_starts_and_stops() {
    let mut writer = ToEvents::default();
    let mut out = BytesMut::new();
    writer.done(&mut out);
    let names: Vec<String> = parse_sse(&out).into_iter().map(|(name, _)| name).collect();
    assert_eq!(names, ["message_start", "message_delta", "message_stop"]);
}

#[test]
fn message_start_reports_the_estimate_and_message_delta_the_upstreams_count() {
    let mut writer = ToEvents::with_input_tokens(42);
    let mut out = BytesMut::new();
    let content =
        json!({"id": "c", "model": "m", "choices": [{"index": 0, "delta": {"content": "Hi"}}]});
    writer
        .chunk(content.to_string().as_bytes(), &mut out)
        .unwrap();
    let usage = json!({"id": "c", "model": "m", "choices": [],
        "usage": {"prompt_tokens": 40, "completion_tokens": 1, "total_tokens": 41}});
    writer
        .chunk(usage.to_string().as_bytes(), &mut out)
        .unwrap();
    writer.done(&mut out);
    let events = parse_sse(&out);
    assert_eq!(events[0].1["message"]["usage"]["input_tokens"], 42);
    let delta = events
        .iter()
        .find(|(name, _)| name == "message_delta")
        .unwrap();
    assert_eq!(delta.1["usage"]["input_tokens"], 40);
}

#[test]
fn block_indexes_are_the_upstreams_and_cost_nothing_to_hold() {
    let mut translator = ToChunks::new(0);
    for index in [u64::MAX, 1 << 40] {
        let start = json!({"type": "content_block_start", "index": index,
            "content_block": {"type": "tool_use", "id": "t", "name": "f", "input": {}}});
        assert_eq!(translator.event(&start.to_string()).unwrap().len(), 1);
        let delta = json!({"type": "content_block_delta", "index": index,
            "delta": {"type": "input_json_delta", "partial_json": "{}"}});
        assert_eq!(translator.event(&delta.to_string()).unwrap().len(), 1);
    }
}

#[test]
fn tool_calls_stop_for_tools_and_refusals_are_text() {
    let stopped = |chunks: &[Value]| {
        let mut writer = ToEvents::default();
        let mut out = BytesMut::new();
        for chunk in chunks {
            writer
                .chunk(chunk.to_string().as_bytes(), &mut out)
                .unwrap();
        }
        writer.done(&mut out);
        parse_sse(&out)
    };
    // A server that finishes tool calls with `stop`.
    let call = json!({"choices": [{"delta": {"tool_calls": [{"index": 0, "id": "c", "function": {"name": "f", "arguments": "{}"}}]}}]});
    let stop = json!({"choices": [{"delta": {}, "finish_reason": "stop"}]});
    let events = stopped(&[call, stop.clone()]);
    let delta = events
        .iter()
        .find(|(name, _)| name == "message_delta")
        .unwrap();
    assert_eq!(delta.1["delta"]["stop_reason"], "tool_use");
    let refusal = json!({"choices": [{"delta": {"refusal": "I can't help with that."}}]});
    let events = stopped(&[refusal, stop]);
    let text = events
        .iter()
        .find(|(name, _)| name == "content_block_delta")
        .unwrap();
    assert_eq!(text.1["delta"]["text"], "I can't help with that.");
    let delta = events
        .iter()
        .find(|(name, _)| name == "message_delta")
        .unwrap();
    assert_eq!(delta.1["delta"]["stop_reason"], "end_turn");
}

#[test]
fn thinking_streams_as_reasoning_content_and_comes_whole_with_its_signature() {
    let events = [
        json!({"type": "message_start", "message": {"id": "msg_1", "model": "claude-x",
            "usage": {"input_tokens": 5, "output_tokens": 1}}}),
        json!({"type": "content_block_start", "index": 0, "content_block": {"type": "thinking", "thinking": ""}}),
        json!({"type": "content_block_delta", "index": 0, "delta": {"type": "thinking_delta", "thinking": "Let me "}}),
        json!({"type": "content_block_delta", "index": 0, "delta": {"type": "thinking_delta", "thinking": "see."}}),
        json!({"type": "content_block_delta", "index": 0, "delta": {"type": "signature_delta", "signature": "EqQB"}}),
        json!({"type": "content_block_stop", "index": 0}),
        json!({"type": "content_block_start", "index": 1, "content_block": {"type": "redacted_thinking", "data": "opaque"}}),
        json!({"type": "content_block_stop", "index": 1}),
        json!({"type": "content_block_start", "index": 2, "content_block": {"type": "text", "text": ""}}),
        json!({"type": "content_block_delta", "index": 2, "delta": {"type": "text_delta", "text": "Hi"}}),
        json!({"type": "content_block_stop", "index": 2}),
    ];
    let mut chunks = ToChunks::new(0);
    let mut reasoning = String::new();
    let mut blocks = Vec::new();
    for event in events {
        for payload in chunks.event(&event.to_string()).unwrap() {
            let chunk: Value = serde_json::from_str(&payload).unwrap();
            let delta = &chunk["choices"][0]["delta"];
            reasoning.push_str(delta["reasoning_content"].as_str().unwrap_or(""));
            blocks.extend(
                delta["thinking_blocks"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default(),
            );
        }
    }
    assert_eq!(reasoning, "Let me see.");
    assert_eq!(
        blocks,
        [
            json!({"type": "thinking", "thinking": "Let me see.", "signature": "EqQB"}),
            json!({"type": "redacted_thinking", "data": "opaque"})
        ]
    );
}
