//! The one change Chorus makes to an upstream's answer: the client's alias
//! in `model`. The body is read through borrowed views (`RawValue`s and
//! strings that point into it), never rebuilt: `model`'s value is spliced
//! and every other byte — field order, spacing, numbers beyond `u64` —
//! goes out as it came. The same read yields the usage, the text for
//! estimating tokens, and whether a stream chunk starts the reply.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::ops::Range;

use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::Value;

use crate::format::ApiFormat;
use crate::usage::Usage;

/// A completion or stream chunk with `model` set to the client's alias.
#[derive(Debug, Clone)]
pub struct RewrittenBody {
    /// `None` for a chunk the client must not see: the usage chunk of a
    /// stream whose client did not ask for usage.
    pub json: Option<Vec<u8>>,
    /// The `usage` object, when the upstream reported one in this body.
    pub usage: Option<Usage>,
    /// Why a `usage` object that was there could not be read.
    pub usage_error: Option<String>,
    /// Whether it carries any of the reply: not a stream's opening chunk
    /// that only names the role, which a gateway may hold back until
    /// content follows.
    pub starts_reply: bool,
    /// Whether it is the event that ends the stream: OpenAI's `[DONE]`,
    /// Anthropic's `message_stop`, the Responses API's last event.
    pub ends_stream: bool,
    /// The upstream's message when it ended its stream with an error of
    /// its own (Anthropic's `error` event, the Responses API's
    /// `response.failed` or `error`): the call failed, though the stream
    /// ended in order.
    pub failure: Option<String>,
}

/// The message at `pointer` in an upstream's error event, or a stand-in.
pub(crate) fn failure_message(data: &[u8], pointer: &str) -> String {
    serde_json::from_slice::<serde_json::Value>(data)
        .ok()
        .and_then(|event| event.pointer(pointer)?.as_str().map(str::to_owned))
        .unwrap_or_else(|| "the upstream ended its stream with an error".to_owned())
}

/// The top level of a completion, chunk or embeddings list. `model` and
/// `usage` are `None` only when absent: a `null` is kept, to be seen.
#[derive(Deserialize)]
struct BodyView<'a> {
    #[serde(borrow, default, deserialize_with = "present")]
    model: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "present")]
    usage: Option<&'a RawValue>,
    /// Each choice is read on its own, leniently: one an upstream shaped
    /// oddly costs only its own text, never the stream.
    #[serde(borrow, default)]
    choices: Option<Vec<&'a RawValue>>,
}

/// A field that is there, `null` included.
fn present<'de, D: serde::Deserializer<'de>>(field: D) -> Result<Option<&'de RawValue>, D::Error> {
    <&RawValue>::deserialize(field).map(Some)
}

#[derive(Deserialize)]
struct ChoiceView<'a> {
    /// A text completion's text.
    #[serde(borrow, default)]
    text: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    message: Option<BTreeMap<Cow<'a, str>, &'a RawValue>>,
    #[serde(borrow, default)]
    delta: Option<BTreeMap<Cow<'a, str>, &'a RawValue>>,
    #[serde(borrow, default)]
    finish_reason: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct ToolCallView<'a> {
    #[serde(borrow, default)]
    function: Option<FunctionView<'a>>,
}

#[derive(Deserialize)]
struct FunctionView<'a> {
    #[serde(borrow, default)]
    arguments: Option<Cow<'a, str>>,
}

/// Puts the alias back into an upstream completion or chunk and reads its
/// usage. With `hide_usage`, a usage chunk (no choices, a usage object)
/// is held back and the `usage: null` other chunks carry is removed, so a
/// client that did not ask for usage sees the stream it would have seen
/// without it. Fails only when the upstream sent something that is not a
/// JSON object. `text` collects what the body says, for estimating tokens
/// should no usage come.
pub fn rewrite_model(
    upstream_json: &[u8],
    alias: &str,
    hide_usage: bool,
    text: &mut String,
) -> Result<RewrittenBody, String> {
    let first = upstream_json.iter().find(|b| !b.is_ascii_whitespace());
    if first != Some(&b'{') {
        return Err("the body is not a JSON object".into());
    }
    let body: BodyView = serde_json::from_slice(upstream_json).map_err(|e| e.to_string())?;
    let choices: Vec<Option<ChoiceView>> = body
        .choices
        .iter()
        .flatten()
        .map(|choice| serde_json::from_str(choice.get()).ok())
        .collect();
    for choice in choices.iter().flatten() {
        choice_text(choice, text);
    }
    let usage_value = body.usage.filter(|usage| usage.get() != "null");
    let (usage, usage_error) = match usage_value.map(|raw| serde_json::from_str::<Value>(raw.get()))
    {
        None => (None, None),
        Some(Ok(value)) => match Usage::from_json(Some(&value)) {
            Ok(usage) => (usage, None),
            Err(error) => (None, Some(error)),
        },
        Some(Err(error)) => (None, Some(format!("unreadable `usage`: {error}"))),
    };
    let empty_choices = body.choices.as_ref().is_some_and(Vec::is_empty);
    if hide_usage && usage_value.is_some() && empty_choices {
        return Ok(RewrittenBody {
            json: None,
            usage,
            usage_error,
            starts_reply: true,
            ends_stream: false,
            failure: None,
        });
    }
    let starts_reply = match &body.choices {
        None => true,
        Some(listed) if listed.is_empty() => usage_value.is_some(),
        Some(_) => !choices
            .iter()
            .all(|choice| choice.as_ref().is_some_and(opens_only)),
    };
    let mut cuts: Vec<(Range<usize>, Vec<u8>)> = Vec::with_capacity(2);
    if let Some(model) = body.model {
        let alias = serde_json::to_vec(alias).map_err(|e| e.to_string())?;
        cuts.push((span_of(upstream_json, model), alias));
    }
    if let Some(null) = body.usage.filter(|_| hide_usage && usage_value.is_none()) {
        if let Some(member) = member_span(upstream_json, span_of(upstream_json, null), b"usage") {
            cuts.push((member, Vec::new()));
        }
    }
    Ok(RewrittenBody {
        json: Some(splice(upstream_json, cuts)),
        usage,
        usage_error,
        starts_reply,
        ends_stream: false,
        failure: None,
    })
}

/// A whole answer in `format` with `model` set to `alias`, its usage read
/// and its text collected into `text`.
pub fn rewrite_whole(
    format: ApiFormat,
    body: &[u8],
    alias: &str,
    text: &mut String,
) -> Result<RewrittenBody, String> {
    match format {
        ApiFormat::OpenAi => rewrite_model(body, alias, false, text),
        ApiFormat::Anthropic => crate::anthropic::passthrough::rewrite_message(body, alias, text),
        ApiFormat::Responses => crate::responses::passthrough::rewrite_response(body, alias, text),
    }
}

/// Reads a stream's events in the format the upstream answered in, each
/// rewritten as [`rewrite_model`] rewrites a chunk.
#[derive(Debug)]
pub enum StreamRewriter {
    /// OpenAI chunks, then `[DONE]`.
    OpenAi { hide_usage: bool },
    /// Anthropic's events, passed through to an Anthropic client.
    Anthropic(crate::anthropic::passthrough::EventReader),
    /// The Responses API's events, passed through to its client.
    Responses(crate::responses::passthrough::EventReader),
}

impl StreamRewriter {
    /// A reader for a stream in `format`. `hide_usage` holds OpenAI's
    /// usage chunk back; Anthropic's and Responses events carry usage the
    /// client always gets.
    pub fn new(format: ApiFormat, hide_usage: bool) -> Self {
        match format {
            ApiFormat::OpenAi => StreamRewriter::OpenAi { hide_usage },
            ApiFormat::Anthropic => StreamRewriter::Anthropic(Default::default()),
            ApiFormat::Responses => StreamRewriter::Responses(Default::default()),
        }
    }

    /// The SSE event that ends this stream when it broke after its client
    /// got content, in its format: OpenAI's `error` event, Anthropic's
    /// (which its SDK raises as the error `status` maps to), or the
    /// Responses API's next in sequence.
    pub fn error_frame(&self, status: u16, error: &crate::ErrorBody) -> bytes::Bytes {
        match self {
            StreamRewriter::OpenAi { .. } => crate::sse::error_frame(error),
            StreamRewriter::Anthropic(_) => {
                crate::anthropic::stream::error_event_for(status, error)
            }
            StreamRewriter::Responses(reader) => reader.error_frame(error),
        }
    }

    /// One event's data with `model` set to `alias`; `text` collects what
    /// it says, for estimating tokens.
    pub fn event(
        &mut self,
        data: &[u8],
        alias: &str,
        text: &mut String,
    ) -> Result<RewrittenBody, String> {
        match self {
            StreamRewriter::OpenAi { .. } if data.trim_ascii() == crate::sse::DONE.as_bytes() => {
                Ok(RewrittenBody {
                    json: Some(data.to_vec()),
                    usage: None,
                    usage_error: None,
                    starts_reply: true,
                    ends_stream: true,
                    failure: None,
                })
            }
            StreamRewriter::OpenAi { hide_usage } => rewrite_model(data, alias, *hide_usage, text),
            StreamRewriter::Anthropic(reader) => reader.event(data, alias, text),
            StreamRewriter::Responses(reader) => reader.event(data, alias, text),
        }
    }
}

/// A chunk choice that carries none of the reply: it only opens the
/// assistant's message (a `role`, no or empty `content`, nothing else, no
/// `finish_reason`).
fn opens_only(choice: &ChoiceView) -> bool {
    let Some(delta) = &choice.delta else {
        return false;
    };
    choice.finish_reason.is_none()
        && delta.iter().all(|(field, value)| match field.as_ref() {
            "role" => true,
            "content" => matches!(value.get(), "null" | "\"\""),
            _ => value.get() == "null",
        })
}

/// Appends the text a choice produced: a text completion's text, or its
/// message's or delta's content, refusal and tool-call arguments.
fn choice_text(choice: &ChoiceView, out: &mut String) {
    if let Some(text) = &choice.text {
        out.push_str(text);
    }
    for message in [&choice.message, &choice.delta].into_iter().flatten() {
        for field in ["content", "refusal"] {
            if let Some(raw) = message.get(field) {
                raw_text(raw, out);
            }
        }
        if let Some(raw) = message.get("tool_calls") {
            let calls: Vec<&RawValue> = serde_json::from_str(raw.get()).unwrap_or_default();
            for call in calls {
                let call: Option<ToolCallView> = serde_json::from_str(call.get()).ok();
                let arguments = call.and_then(|call| call.function?.arguments);
                if let Some(arguments) = arguments {
                    out.push_str(&arguments);
                }
            }
        }
    }
}

/// Appends a string's text, or the text parts of an array of parts.
fn raw_text(raw: &RawValue, out: &mut String) {
    match raw.get().as_bytes().first() {
        Some(b'"') => {
            if let Ok(text) = serde_json::from_str::<Cow<str>>(raw.get()) {
                out.push_str(&text);
            }
        }
        Some(b'[') => {
            if let Ok(parts) = serde_json::from_str::<Value>(raw.get()) {
                crate::chat::content_text(Some(&parts), out);
            }
        }
        _ => {}
    }
}

/// `object`, the text of a JSON object, with each top-level member named
/// in `set` given that value (JSON text): in place when the member is
/// there, appended when not. Every other byte stays as it was, so what a
/// client sent reaches an upstream unchanged but for these members.
/// `None` when `object` is not a JSON object.
pub fn set_members(object: &[u8], set: &[(&str, &[u8])]) -> Option<Vec<u8>> {
    let members: BTreeMap<Cow<str>, &RawValue> = serde_json::from_slice(object).ok()?;
    let mut cuts = Vec::with_capacity(set.len());
    let mut appended = Vec::new();
    for (key, value) in set {
        match members.get(*key) {
            Some(raw) => cuts.push((span_of(object, raw), value.to_vec())),
            None => {
                if !(members.is_empty() && appended.is_empty()) {
                    appended.push(b',');
                }
                appended.extend(serde_json::to_vec(key).ok()?);
                appended.push(b':');
                appended.extend_from_slice(value);
            }
        }
    }
    if !appended.is_empty() {
        let close = object.iter().rposition(|&b| b == b'}')?;
        cuts.push((close..close, appended));
    }
    Some(splice(object, cuts))
}

/// `body` with the value of `model` (borrowed from it) replaced by the
/// alias; unchanged when there is no `model`.
pub(crate) fn with_model(
    body: &[u8],
    model: Option<&RawValue>,
    alias: &str,
) -> Result<Vec<u8>, String> {
    let Some(model) = model else {
        return Ok(body.to_vec());
    };
    let alias = serde_json::to_vec(alias).map_err(|e| e.to_string())?;
    Ok(splice(body, vec![(span_of(body, model), alias)]))
}

/// Where `part`, borrowed from `whole`, lies in it.
pub(crate) fn span_of(whole: &[u8], part: &RawValue) -> Range<usize> {
    let start = (part.get().as_ptr() as usize).saturating_sub(whole.as_ptr() as usize);
    start..start + part.get().len()
}

/// The bytes of the object member `"key": <value at value_span>` with the
/// comma that separates it from a neighbour, so removing them leaves valid
/// JSON. `None` when the key is not written plainly (an escaped key, say):
/// the member then stays.
fn member_span(json: &[u8], value_span: Range<usize>, key: &[u8]) -> Option<Range<usize>> {
    let before = |mut at: usize| {
        while at > 0 && json[at - 1].is_ascii_whitespace() {
            at -= 1;
        }
        at
    };
    let colon = before(value_span.start).checked_sub(1)?;
    if json[colon] != b':' {
        return None;
    }
    let key_end = before(colon);
    let key_start = key_end.checked_sub(key.len() + 2)?;
    let quoted = &json[key_start..key_end];
    if quoted.first() != Some(&b'"')
        || &quoted[1..quoted.len() - 1] != key
        || quoted.last() != Some(&b'"')
    {
        return None;
    }
    let previous = before(key_start).checked_sub(1)?;
    if json[previous] == b',' {
        return Some(previous..value_span.end);
    }
    // The first member: take the comma after it instead, if any.
    let mut after = value_span.end;
    while after < json.len() && json[after].is_ascii_whitespace() {
        after += 1;
    }
    match json.get(after) {
        Some(b',') => Some(key_start..after + 1),
        _ => Some(key_start..value_span.end),
    }
}

/// `json` with each range replaced by its bytes; ranges do not overlap.
pub(crate) fn splice(json: &[u8], mut cuts: Vec<(Range<usize>, Vec<u8>)>) -> Vec<u8> {
    cuts.sort_by_key(|(range, _)| range.start);
    let mut out = Vec::with_capacity(json.len() + 32);
    let mut at = 0;
    for (range, bytes) in cuts {
        out.extend_from_slice(&json[at..range.start]);
        out.extend_from_slice(&bytes);
        at = range.end;
    }
    out.extend_from_slice(&json[at..]);
    out
}

#[cfg(test)]
mod tests;
