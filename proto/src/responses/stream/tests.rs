use super::*;
use crate::responses::reply::to_response;
use crate::ErrorType;

fn envelope() -> Envelope {
    let request = json!({"model": "m", "input": "x", "stream": true});
    Envelope::new(
        "resp_s1".into(),
        1_700_000_000,
        request.as_object().unwrap(),
    )
}

/// The events' payloads, in order, checking each frame names its type.
fn events(bytes: &[u8]) -> Vec<Value> {
    let text = std::str::from_utf8(bytes).unwrap();
    text.split_terminator("\n\n")
        .map(|frame| {
            let (name, data) = frame.split_once('\n').unwrap();
            let event: Value = serde_json::from_str(data.strip_prefix("data: ").unwrap()).unwrap();
            assert_eq!(name.strip_prefix("event: ").unwrap(), event["type"]);
            event
        })
        .collect()
}

fn chunk(delta: Value, finish: Option<&str>) -> Vec<u8> {
    json!({"id": "c", "object": "chat.completion.chunk", "model": "alias",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})
    .to_string()
    .into_bytes()
}

#[test]
fn text_then_a_call_streams_the_full_event_sequence() {
    let mut out = BytesMut::new();
    let mut stream = ToResponseEvents::new(envelope());
    let chunks = [
        chunk(json!({"role": "assistant", "content": ""}), None),
        chunk(json!({"content": "Let me "}), None),
        chunk(json!({"content": "look."}), None),
        chunk(
            json!({"tool_calls": [{"index": 0, "id": "call_1", "type": "function",
                "function": {"name": "weather", "arguments": ""}}]}),
            None,
        ),
        chunk(
            json!({"tool_calls": [{"index": 0, "function": {"arguments": "{\"city\":"}}]}),
            None,
        ),
        chunk(
            json!({"tool_calls": [{"index": 0, "function": {"arguments": "\"Paris\"}"}}]}),
            None,
        ),
        chunk(json!({}), Some("tool_calls")),
        json!({"id": "c", "model": "alias", "choices": [],
            "usage": {"prompt_tokens": 9, "completion_tokens": 4, "total_tokens": 13}})
        .to_string()
        .into_bytes(),
    ];
    for payload in &chunks {
        stream.chunk(payload, &mut out).unwrap();
    }
    stream.done(&mut out);
    let events = events(&out);
    let kinds: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(
        kinds,
        [
            "response.created",
            "response.in_progress",
            "response.output_item.added",
            "response.content_part.added",
            "response.output_text.delta",
            "response.output_text.delta",
            "response.output_text.done",
            "response.content_part.done",
            "response.output_item.done",
            "response.output_item.added",
            "response.function_call_arguments.delta",
            "response.function_call_arguments.delta",
            "response.function_call_arguments.done",
            "response.output_item.done",
            "response.completed",
        ]
    );
    for (n, event) in events.iter().enumerate() {
        assert_eq!(event["sequence_number"], n as u64);
    }
    assert_eq!(events[0]["response"]["status"], "in_progress");
    assert_eq!(events[6]["text"], "Let me look.");
    assert_eq!(events[12]["arguments"], "{\"city\":\"Paris\"}");
    // The streamed response is the one the whole answer would have been.
    let whole = json!({"model": "alias", "choices": [{"finish_reason": "tool_calls",
        "message": {"role": "assistant", "content": "Let me look.", "tool_calls": [{"id": "call_1",
            "type": "function", "function": {"name": "weather", "arguments": "{\"city\":\"Paris\"}"}}]}}],
        "usage": {"prompt_tokens": 9, "completion_tokens": 4, "total_tokens": 13}});
    let whole = to_response(whole.to_string().as_bytes(), &envelope()).unwrap();
    let whole: Value = serde_json::from_slice(&whole).unwrap();
    assert_eq!(events[14]["response"], whole);
}

#[test]
fn a_stream_cut_at_its_limit_ends_incomplete() {
    let mut out = BytesMut::new();
    let mut stream = ToResponseEvents::new(envelope());
    stream
        .chunk(&chunk(json!({"content": "Once"}), None), &mut out)
        .unwrap();
    stream
        .chunk(&chunk(json!({}), Some("length")), &mut out)
        .unwrap();
    stream.done(&mut out);
    let last = events(&out).pop().unwrap();
    assert_eq!(last["type"], "response.incomplete");
    assert_eq!(
        last["response"]["incomplete_details"]["reason"],
        "max_output_tokens"
    );
}

#[test]
fn a_broken_stream_ends_failed_never_completed() {
    let mut out = BytesMut::new();
    let mut stream = ToResponseEvents::new(envelope());
    stream
        .chunk(&chunk(json!({"content": "Half"}), None), &mut out)
        .unwrap();
    let error =
        ErrorBody::new(ErrorType::Upstream, "the stream broke").with_code("upstream_broken");
    stream.failed(&error, &mut out);
    let events = events(&out);
    let last = events.last().unwrap();
    assert_eq!(last["type"], "response.failed");
    assert_eq!(last["response"]["status"], "failed");
    assert_eq!(
        last["response"]["error"],
        json!({"code": "upstream_broken", "message": "the stream broke"})
    );
    assert_eq!(last["response"]["output"][0]["status"], "in_progress");
    assert!(events
        .iter()
        .all(|event| event["type"] != "response.completed"));
}

#[test]
fn a_failure_before_any_chunk_still_opens_the_response() {
    let mut out = BytesMut::new();
    ToResponseEvents::new(envelope()).failed(&ErrorBody::new(ErrorType::Upstream, "x"), &mut out);
    let kinds: Vec<Value> = events(&out)
        .into_iter()
        .map(|e| e["type"].clone())
        .collect();
    assert_eq!(
        kinds,
        [
            "response.created",
            "response.in_progress",
            "response.failed"
        ]
    );
}

#[test]
fn thinking_streams_as_a_reasoning_item_equal_to_the_whole_answers() {
    let block = json!({"type": "thinking", "thinking": "Sunny, surely.", "signature": "sig"});
    let mut out = BytesMut::new();
    let mut stream = ToResponseEvents::new(envelope());
    for payload in [
        chunk(json!({"reasoning_content": "Sunny, "}), None),
        chunk(json!({"reasoning_content": "surely."}), None),
        chunk(json!({"thinking_blocks": [block]}), None),
        chunk(json!({"content": "Sunny."}), Some("stop")),
    ] {
        stream.chunk(&payload, &mut out).unwrap();
    }
    stream.done(&mut out);
    let events = events(&out);
    let kinds: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(
        kinds[2..9],
        [
            "response.output_item.added",
            "response.reasoning_summary_part.added",
            "response.reasoning_summary_text.delta",
            "response.reasoning_summary_text.delta",
            "response.reasoning_summary_text.done",
            "response.reasoning_summary_part.done",
            "response.output_item.done",
        ]
    );
    let streamed = &events.last().unwrap()["response"];
    let reasoning = &streamed["output"][0];
    assert_eq!(reasoning["summary"][0]["text"], "Sunny, surely.");
    assert_eq!(
        super::super::object::reasoning_blocks(reasoning),
        std::slice::from_ref(&block)
    );
    let whole = json!({"model": "alias", "choices": [{"finish_reason": "stop",
        "message": {"role": "assistant", "content": "Sunny.", "reasoning_content": "Sunny, surely.",
            "thinking_blocks": [block]}}]});
    let whole = to_response(whole.to_string().as_bytes(), &envelope()).unwrap();
    let whole: Value = serde_json::from_slice(&whole).unwrap();
    assert_eq!(streamed, &whole);
}
