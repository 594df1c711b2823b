//! Fuzz targets (bolero) for everything this crate reads from outside:
//! client bodies in the OpenAI, Anthropic and Responses formats, upstream
//! answers and stream events, the SSE reader, and the values peers gossip.
//! Whatever the input, the result is a value or an error: never a panic,
//! and never an allocation out of proportion to the input.
//!
//! `cargo test` runs each target on the corpus kept beside this file
//! (`__fuzz__/fuzz__<target>/corpus`) and on random inputs for a
//! second; `bash bench/fuzz.sh` runs a million random inputs per target.
//! Random bytes alone rarely parse as a body, so the body targets also
//! read their input as a recipe for a JSON document made of the fields
//! and values those formats use ([`document`]), which reaches the checks
//! and translations behind the parser.

use bolero::check;
use bytes::BytesMut;
use serde_json::{Map, Value};

use crate::admin::{AdminEntry, EntryId};
use crate::anthropic;
use crate::chat::ChatRequest;
use crate::counter::{decode_tallies, CounterKey, Tally, Window};
use crate::endpoint::Endpoint;
use crate::gossip::DeploymentReport;
use crate::responses;
use crate::sse::EventReader;

/// Field names and string values the three request formats, their
/// answers and their stream events use.
const WORDS: [&str; 48] = [
    "model",
    "messages",
    "role",
    "content",
    "user",
    "assistant",
    "system",
    "developer",
    "tool",
    "text",
    "type",
    "image_url",
    "url",
    "tools",
    "tool_calls",
    "tool_call_id",
    "function",
    "name",
    "arguments",
    "parameters",
    "stream",
    "stream_options",
    "include_usage",
    "max_tokens",
    "max_completion_tokens",
    "max_output_tokens",
    "input",
    "instructions",
    "prompt",
    "thinking",
    "budget_tokens",
    "reasoning",
    "effort",
    "tool_use",
    "tool_result",
    "input_text",
    "output_text",
    "message_start",
    "content_block_start",
    "content_block_delta",
    "message_delta",
    "message_stop",
    "choices",
    "delta",
    "usage",
    "index",
    "id",
    "previous_response_id",
];

/// A JSON document built from `recipe`, one byte per choice: objects
/// keyed by [`WORDS`], arrays, and leaves from the words, numbers,
/// booleans and null. At most six levels deep, and never more nodes than
/// the recipe has bytes.
fn document(recipe: &[u8]) -> Value {
    let mut bytes = recipe.iter().copied();
    build(&mut bytes, 0)
}

fn build(bytes: &mut impl Iterator<Item = u8>, depth: usize) -> Value {
    let Some(choice) = bytes.next() else {
        return Value::Null;
    };
    let word = |byte: u8| WORDS[usize::from(byte) % WORDS.len()];
    match (choice % 8, depth < 6) {
        (0 | 1, true) => {
            let fields = bytes.next().unwrap_or(0) % 5;
            let mut object = Map::new();
            for _ in 0..fields {
                let key = word(bytes.next().unwrap_or(0));
                object.insert(key.to_owned(), build(bytes, depth + 1));
            }
            Value::Object(object)
        }
        (2, true) => {
            let items = bytes.next().unwrap_or(0) % 4;
            Value::Array((0..items).map(|_| build(bytes, depth + 1)).collect())
        }
        (3 | 4, _) => Value::String(word(bytes.next().unwrap_or(0)).to_owned()),
        (5, _) => {
            let high = i64::from(bytes.next().unwrap_or(0) as i8);
            Value::from(high * 1_000 + i64::from(choice))
        }
        (6, _) => Value::Bool(choice & 8 == 0),
        _ => Value::Null,
    }
}

/// `input` as it came, and as a recipe for a document, serialised.
fn bodies(input: &[u8]) -> [Vec<u8>; 2] {
    let recipe = serde_json::to_vec(&document(input)).unwrap_or_default();
    [input.to_vec(), recipe]
}

fn object(body: &[u8]) -> Option<Map<String, Value>> {
    match serde_json::from_slice(body) {
        Ok(Value::Object(fields)) => Some(fields),
        _ => None,
    }
}

#[test]
fn openai_bodies() {
    check!().for_each(|input: &[u8]| {
        for body in bodies(input) {
            for endpoint in [
                Endpoint::ChatCompletions,
                Endpoint::Completions,
                Endpoint::Embeddings,
            ] {
                let _ = ChatRequest::parse_at(endpoint, &body);
            }
        }
    });
}

/// A body in another API's format, translated to chat as the node does:
/// by `to_chat`, or by `to_chat_text` when that cannot express it.
type ToChat = fn(&Map<String, Value>) -> Result<Map<String, Value>, crate::chat::RequestError>;

fn translated(
    input: &[u8],
    to_chat: ToChat,
    to_chat_text: fn(&Map<String, Value>) -> Map<String, Value>,
) {
    for fields in bodies(input).iter().filter_map(|body| object(body)) {
        if let Ok(chat) = to_chat(&fields) {
            let _ = ChatRequest::from_body(chat);
        }
        let _ = ChatRequest::from_body(to_chat_text(&fields));
    }
}

#[test]
fn anthropic_bodies() {
    check!().for_each(|input: &[u8]| {
        translated(
            input,
            anthropic::request::to_chat,
            anthropic::request::to_chat_text,
        );
    });
}

#[test]
fn responses_bodies() {
    check!().for_each(|input: &[u8]| {
        translated(
            input,
            responses::request::to_chat,
            responses::request::to_chat_text,
        );
    });
}

/// Upstream answers and stream events, translated both ways.
#[test]
fn upstream_answers() {
    check!().for_each(|input: &[u8]| {
        for body in bodies(input) {
            let _ = anthropic::reply::to_completion(&body, 0);
            let _ = anthropic::reply::to_message(&body);
            let mut chunks = anthropic::stream::ToChunks::new(0);
            let mut events = anthropic::stream::ToEvents::with_input_tokens(1);
            let mut out = BytesMut::new();
            for _ in 0..2 {
                let _ = chunks.event(&String::from_utf8_lossy(&body));
                let _ = events.chunk(&body, &mut out);
            }
            events.done(&mut out);
        }
    });
}

/// Pieces an SSE stream is made of, so random inputs make streams of
/// many events, long and short, with every kind of line end.
const SSE_PIECES: [&[u8]; 12] = [
    b"data: ",
    b"event: ",
    b"id: 7",
    b"retry: 10",
    b": keep-alive",
    b"\n",
    b"\r\n",
    b"\r",
    b"{\"type\":\"message_delta\"}",
    b"[DONE]",
    b"\xEF\xBB\xBF",
    b"0123456789abcdef0123456789abcdef",
];

/// A stream made of [`SSE_PIECES`], one byte per piece, cut in two where
/// the first byte says. No event may hold more than the reader's limit
/// plus what the push that completed it brought.
#[test]
fn sse_reader() {
    check!().for_each(|input: &[u8]| {
        let Some((cut, recipe)) = input.split_first() else {
            return;
        };
        let stream: Vec<u8> = recipe
            .iter()
            .flat_map(|byte| {
                SSE_PIECES[usize::from(*byte) % SSE_PIECES.len()]
                    .iter()
                    .copied()
            })
            .collect();
        let mut reader = EventReader::new(256);
        let cut = (usize::from(*cut) * stream.len() / 256).min(stream.len());
        let (first, rest) = stream.split_at(cut);
        for piece in [first, rest] {
            let Ok(events) = reader.push(piece) else {
                return;
            };
            for event in events {
                let size = event.raw().len();
                assert!(
                    size <= 256 + piece.len(),
                    "{size} bytes from a push of {}",
                    piece.len()
                );
                let _ = (event.data(), event.name(), event.with_data(b"{}"));
            }
        }
    });
}

/// What peers gossip: counter tallies, deployment reports, admin
/// entries and keys, and the binary codec.
#[test]
fn gossip_values() {
    check!().for_each(|input: &[u8]| {
        let text = String::from_utf8_lossy(input);
        let _ = decode_tallies(&text);
        for window in [Window::Lifetime, Window::Minute, Window::Day, Window::Month] {
            let _ = Tally::decode(&text, window);
        }
        let _ = CounterKey::decode(&text);
        let _ = DeploymentReport::decode(&text);
        let (id, entry) = text.split_once('\n').unwrap_or((&text, ""));
        if let Some(id) = EntryId::decode(id) {
            let _ = AdminEntry::decode(&id, entry);
        }
        let _ = crate::codec::decode::<Vec<(String, u64)>>(input);
    });
}
