use serde_json::{json, Value};

use super::*;

fn rewrite(upstream: &[u8], hide_usage: bool) -> (Option<Value>, RewrittenBody, String) {
    let mut text = String::new();
    let rewritten = rewrite_model(upstream, "fast", hide_usage, &mut text).unwrap();
    let json = rewritten
        .json
        .as_ref()
        .map(|json| serde_json::from_slice(json).unwrap());
    (json, rewritten, text)
}

/// The rewritten bytes, as text.
fn rewritten_text(upstream: &str, hide_usage: bool) -> String {
    let rewritten =
        rewrite_model(upstream.as_bytes(), "fast", hide_usage, &mut String::new()).unwrap();
    String::from_utf8(rewritten.json.unwrap()).unwrap()
}

#[test]
fn only_the_model_changes_byte_for_byte() {
    let upstream = r#"{ "id" :"x",  "model":"gpt-4o-mini" ,"big": 123456789012345678901234567890, "f": 1.10, "choices":[{"delta":{"content":"caf\u00e9"}}]}"#;
    assert_eq!(
        rewritten_text(upstream, false),
        r#"{ "id" :"x",  "model":"fast" ,"big": 123456789012345678901234567890, "f": 1.10, "choices":[{"delta":{"content":"caf\u00e9"}}]}"#
    );
    let quoted = rewrite_model(br#"{"model":"m"}"#, "a\"b", false, &mut String::new()).unwrap();
    assert_eq!(quoted.json.unwrap(), br#"{"model":"a\"b"}"#);
}

#[test]
fn a_hidden_usage_null_leaves_valid_json_wherever_it_sits() {
    for (upstream, expected) in [
        (
            r#"{"model":"m","usage":null,"choices":[]}"#,
            r#"{"model":"fast","choices":[]}"#,
        ),
        (r#"{"usage" : null , "model":"m"}"#, r#"{ "model":"fast"}"#),
        (r#"{"model":"m", "usage":null}"#, r#"{"model":"fast"}"#),
        (r#"{"usage":null}"#, r#"{}"#),
        // An escaped key is left alone: still valid, still null.
        (
            r#"{"model":"m","\u0075sage":null}"#,
            r#"{"model":"fast","\u0075sage":null}"#,
        ),
    ] {
        assert_eq!(rewritten_text(upstream, true), expected, "{upstream}");
    }
}

#[test]
fn oddly_shaped_choices_cost_only_their_own_text() {
    let odd = br#"{"model":"m","choices":[null,{"text":7},{"delta":"x"},{"delta":{"content":"ok","tool_calls":[{"function":{"arguments":{}}},{"function":{"arguments":"a"}}]}}]}"#;
    let (json, rewritten, text) = rewrite(odd, false);
    assert_eq!(json.unwrap()["model"], "fast");
    assert_eq!(text, "oka");
    assert!(rewritten.starts_reply);
}

#[test]
fn text_completions_and_tool_arguments_are_read_for_estimates() {
    let (_, _, text) = rewrite(br#"{"model":"m","choices":[{"text":"Once upon"}]}"#, false);
    assert_eq!(text, "Once upon");
    let call = br#"{"choices":[{"delta":{"tool_calls":[{"index":0,"function":{"arguments":"{\"a\":"}}]}}]}"#;
    let (_, rewritten, text) = rewrite(call, false);
    assert_eq!(text, "{\"a\":");
    assert!(rewritten.starts_reply);
    let parts =
        br#"{"choices":[{"message":{"content":[{"type":"text","text":"Hi"}],"refusal":"no"}}]}"#;
    assert_eq!(rewrite(parts, false).2, "Hino");
    assert!(rewrite_model(b"[1, 2]", "fast", false, &mut String::new()).is_err());
}

#[test]
fn a_role_only_opening_chunk_does_not_start_the_reply() {
    let starts = |chunk: Value| rewrite(chunk.to_string().as_bytes(), false).1.starts_reply;
    let chunk = |delta: Value, finish: Value| {
        json!({"id":"c","object":"chat.completion.chunk","model":"up",
            "choices":[{"index":0,"delta":delta,"finish_reason":finish}]})
    };
    assert!(!starts(chunk(json!({"role":"assistant"}), Value::Null)));
    assert!(!starts(chunk(
        json!({"role":"assistant","content":""}),
        Value::Null
    )));
    assert!(starts(chunk(json!({"content":"Hi"}), Value::Null)));
    assert!(starts(chunk(
        json!({"role":"assistant","content":null,
        "tool_calls":[{"index":0,"id":"call_1","function":{"name":"f","arguments":""}}]}),
        Value::Null
    )));
    assert!(
        starts(chunk(json!({}), json!("stop"))),
        "an empty reply still ends"
    );
}

#[test]
fn rewrite_sets_alias_and_reads_usage_and_text() {
    let upstream = br#"{"id":"x","model":"gpt-4o-mini","choices":[{"message":{"content":"Hi"}}],"usage":{"prompt_tokens":3,"completion_tokens":4,"total_tokens":7}}"#;
    let (json, rewritten, text) = rewrite(upstream, false);
    assert_eq!(json.unwrap()["model"], "fast");
    assert_eq!(rewritten.usage, Some(Usage::new(3, 4)));
    assert_eq!(text, "Hi");
    let (_, chunk, _) = rewrite(br#"{"model":"m","usage":null}"#, false);
    assert_eq!(chunk.usage, None);
    let (_, broken, _) = rewrite(br#"{"model":"m","usage":{"prompt_tokens":"x"}}"#, false);
    assert!(broken.usage_error.is_some());
    assert!(rewrite_model(b"not json", "fast", false, &mut String::new()).is_err());
}

#[test]
fn usage_the_client_did_not_ask_for_is_hidden() {
    let chunk = br#"{"model":"m","choices":[{"delta":{"content":"a"}}],"usage":null}"#;
    let (json, _, text) = rewrite(chunk, true);
    assert_eq!(
        json.unwrap(),
        json!({"model":"fast","choices":[{"delta":{"content":"a"}}]})
    );
    assert_eq!(text, "a");
    let (json, _, _) = rewrite(chunk, false);
    assert!(
        json.unwrap()["usage"].is_null(),
        "kept for a client that asked"
    );
    let usage_chunk =
        br#"{"model":"m","choices":[],"usage":{"prompt_tokens":3,"completion_tokens":4}}"#;
    let (json, rewritten, _) = rewrite(usage_chunk, true);
    assert_eq!(json, None);
    assert_eq!(rewritten.usage, Some(Usage::new(3, 4)));
    assert!(rewrite(usage_chunk, false).0.is_some());
}

/// A chunk-like object: `model`, maybe `usage: null`, and other members,
/// in any order, with any spacing.
fn chunk_members() -> impl proptest::strategy::Strategy<Value = (Vec<(String, String)>, String)> {
    use proptest::prelude::*;
    let other = (
        "[a-z]{1,6}",
        prop_oneof![
            Just("1".to_owned()),
            Just("\"x\\\"y\"".to_owned()),
            Just("123456789012345678901234567890".to_owned()),
            Just("[1, {\"usage\": null}]".to_owned()),
            Just("null".to_owned()),
        ],
    );
    let members = prop::collection::vec(other, 0..5);
    (
        members,
        any::<bool>(),
        any::<bool>(),
        0usize..6,
        prop_oneof![Just(""), Just(" "), Just("\n  ")],
    )
        .prop_map(|(mut members, with_usage, with_model, at, space)| {
            members.retain(|(key, _)| key != "usage" && key != "model");
            members.sort();
            members.dedup_by(|a, b| a.0 == b.0);
            if with_model {
                let at = at.min(members.len());
                members.insert(at, ("model".to_owned(), "\"up\"".to_owned()));
            }
            if with_usage {
                let at = (at * 7 + 1) % (members.len() + 1);
                members.insert(at, ("usage".to_owned(), "null".to_owned()));
            }
            (members, space.to_owned())
        })
}

proptest::proptest! {
    /// Whatever the members and their order, the rewrite is valid JSON:
    /// the same object with the alias as `model` and no `usage: null`.
    #[test]
    fn the_rewrite_is_the_object_with_the_alias_and_without_a_null_usage((members, space) in chunk_members()) {
        let text = members
            .iter()
            .map(|(key, value)| format!("{space}\"{key}\"{space}:{space}{value}{space}"))
            .collect::<Vec<_>>()
            .join(",");
        let upstream = format!("{{{text}}}");
        let out = rewrite_model(upstream.as_bytes(), "fast", true, &mut String::new()).unwrap();
        let out: Value = serde_json::from_slice(&out.json.unwrap()).unwrap();
        let mut expected: serde_json::Map<String, Value> = serde_json::from_str(&upstream).unwrap();
        expected.remove("usage");
        if let Some(model) = expected.get_mut("model") {
            *model = json!("fast");
        }
        proptest::prop_assert_eq!(out, Value::Object(expected));
    }
}

#[test]
fn set_members_changes_only_what_it_sets() {
    let sent = br#"{ "model" : "fast", "temperature": 1.10, "n": 1e2, "x": 123456789012345678901234567890 }"#;
    let out = set_members(sent, &[("model", br#""gpt-4o""#)]).unwrap();
    assert_eq!(
        out,
        br#"{ "model" : "gpt-4o", "temperature": 1.10, "n": 1e2, "x": 123456789012345678901234567890 }"#
    );
    let out = set_members(sent, &[("stream_options", br#"{"include_usage":true}"#)]).unwrap();
    assert!(out
        .ends_with(br#"123456789012345678901234567890 ,"stream_options":{"include_usage":true}}"#));
    assert_eq!(
        set_members(b"{}", &[("a", b"1"), ("b", b"2")]).unwrap(),
        br#"{"a":1,"b":2}"#
    );
    assert!(set_members(b"[1]", &[("a", b"1")]).is_none());
}
