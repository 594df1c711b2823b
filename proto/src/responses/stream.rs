//! A chat completion stream as the Responses API's typed events:
//! `response.created` and `response.in_progress` first, then for each
//! output item `response.output_item.added`, its deltas and its `.done`
//! events, and last `response.completed` (or `response.incomplete`) with
//! the whole response — or `response.failed` when the stream broke. Every
//! event carries the next `sequence_number`.

use bytes::{BufMut, BytesMut};
use serde_json::{json, Value};

use super::object::{
    call_item, message_item, reasoning_item, thinking_of, Draft, Envelope, PartKind,
};
use crate::error::ErrorBody;

/// Writes one chat stream as Responses events, keeping what the mapping
/// needs: the draft response, which content part is open, which output
/// item each tool call is.
#[derive(Debug)]
pub struct ToResponseEvents {
    draft: Draft,
    sequence: u64,
    started: bool,
    part: Option<OpenPart>,
    calls: Vec<OpenCall>,
    /// The reasoning item being streamed, before the answer's first part.
    reasoning: Option<OpenReasoning>,
    /// The response as `done` wrote it.
    ended: Option<Value>,
}

/// A reasoning item being streamed: its summary's text so far, and the
/// thinking blocks that come whole.
#[derive(Debug)]
struct OpenReasoning {
    output_index: usize,
    id: String,
    text: String,
    blocks: Vec<Value>,
}

/// The message item whose content part is being streamed.
#[derive(Debug)]
struct OpenPart {
    output_index: usize,
    id: String,
    kind: PartKind,
    text: String,
}

/// A function call item being streamed, by its chat tool call index.
#[derive(Debug)]
struct OpenCall {
    tool: u64,
    output_index: usize,
    id: String,
    call_id: String,
    name: String,
    arguments: String,
}

impl ToResponseEvents {
    pub fn new(envelope: Envelope) -> Self {
        ToResponseEvents {
            draft: Draft::new(envelope),
            sequence: 0,
            started: false,
            part: None,
            calls: Vec::new(),
            reasoning: None,
            ended: None,
        }
    }

    /// The events for one chunk's JSON payload.
    pub fn chunk(&mut self, payload: &[u8], out: &mut BytesMut) -> Result<(), String> {
        let chunk: Value = serde_json::from_slice(payload).map_err(|e| e.to_string())?;
        self.draft.set_model(&chunk["model"]);
        self.start(out);
        if let Some(choice) = chunk.pointer("/choices/0") {
            let delta = &choice["delta"];
            if let Some((reasoning, blocks)) = thinking_of(delta) {
                self.think(reasoning, blocks, out);
            }
            for (field, kind) in [("content", PartKind::Text), ("refusal", PartKind::Refusal)] {
                if let Some(text) = delta[field].as_str().filter(|text| !text.is_empty()) {
                    self.text(kind, text, out);
                }
            }
            for call in delta["tool_calls"].as_array().into_iter().flatten() {
                self.call(call, out);
            }
            self.draft
                .finish(choice["finish_reason"].as_str(), &Value::Null);
        }
        self.draft.finish(None, &chunk["usage"]);
        Ok(())
    }

    /// The events that end a finished stream: each open item done, then
    /// the response, completed or incomplete.
    pub fn done(&mut self, out: &mut BytesMut) {
        self.start(out);
        self.close_reasoning(out);
        self.close_part(out);
        for call in std::mem::take(&mut self.calls) {
            self.close_call(call, out);
        }
        let status = self.draft.end_status();
        let response = self.draft.object(status, None);
        self.emit(
            &format!("response.{status}"),
            json!({"response": &response}),
            out,
        );
        self.ended = Some(response);
    }

    /// The whole response once the stream has ended, completed or
    /// incomplete, for whoever keeps it; given once.
    pub fn take_ended(&mut self) -> Option<Value> {
        self.ended.take()
    }

    /// The event that ends a stream broken by `error`: `response.failed`,
    /// with the items as far as they came.
    pub fn failed(&mut self, error: &ErrorBody, out: &mut BytesMut) {
        self.start(out);
        let detail = &error.error;
        let error = json!({"code": detail.code.as_deref().unwrap_or("server_error"),
            "message": detail.message});
        let response = self.draft.object("failed", Some(error));
        self.emit("response.failed", json!({"response": response}), out);
    }

    /// `response.created` and `response.in_progress`, once.
    fn start(&mut self, out: &mut BytesMut) {
        if std::mem::replace(&mut self.started, true) {
            return;
        }
        for kind in ["response.created", "response.in_progress"] {
            let response = self.draft.object("in_progress", None);
            self.emit(kind, json!({"response": response}), out);
        }
    }

    /// Reasoning text as summary deltas of the reasoning item, opened
    /// first; thinking blocks are kept for the item's end.
    fn think(&mut self, text: &str, blocks: Vec<Value>, out: &mut BytesMut) {
        let mut reasoning = match self.reasoning.take() {
            Some(reasoning) => reasoning,
            None => self.open_reasoning(out),
        };
        if !text.is_empty() {
            let delta = json!({"item_id": reasoning.id, "output_index": reasoning.output_index,
                "summary_index": 0, "delta": text});
            self.emit("response.reasoning_summary_text.delta", delta, out);
            reasoning.text.push_str(text);
        }
        reasoning.blocks.extend(blocks);
        self.reasoning = Some(reasoning);
    }

    fn open_reasoning(&mut self, out: &mut BytesMut) -> OpenReasoning {
        self.close_part(out);
        let id = self.draft.next_item_id("rs");
        let mut item = reasoning_item(&id, "", &[], "in_progress");
        item["summary"] = json!([]);
        let output_index = self.add_item(item, out);
        self.emit(
            "response.reasoning_summary_part.added",
            json!({"item_id": id, "output_index": output_index, "summary_index": 0,
                "part": {"type": "summary_text", "text": ""}}),
            out,
        );
        OpenReasoning {
            output_index,
            id,
            text: String::new(),
            blocks: Vec::new(),
        }
    }

    fn close_reasoning(&mut self, out: &mut BytesMut) {
        let Some(reasoning) = self.reasoning.take() else {
            return;
        };
        let (id, index, text) = (&reasoning.id, reasoning.output_index, &reasoning.text);
        self.emit(
            "response.reasoning_summary_text.done",
            json!({"item_id": id, "output_index": index, "summary_index": 0, "text": text}),
            out,
        );
        self.emit(
            "response.reasoning_summary_part.done",
            json!({"item_id": id, "output_index": index, "summary_index": 0,
                "part": {"type": "summary_text", "text": text}}),
            out,
        );
        let item = reasoning_item(id, text, &reasoning.blocks, "completed");
        self.finish_item(index, item, out);
    }

    /// A text or refusal delta, opening its message item first when the
    /// open one (if any) holds the other kind; the reasoning before it
    /// ends.
    fn text(&mut self, kind: PartKind, text: &str, out: &mut BytesMut) {
        self.close_reasoning(out);
        if self.part.as_ref().is_some_and(|part| part.kind != kind) {
            self.close_part(out);
        }
        let part = match self.part.take() {
            Some(part) => part,
            None => self.open_part(kind, out),
        };
        let mut delta = json!({"item_id": part.id, "output_index": part.output_index,
            "content_index": 0, "delta": text});
        if kind == PartKind::Text {
            delta["logprobs"] = json!([]);
        }
        self.emit(&format!("{}.delta", kind.event_prefix()), delta, out);
        let mut part = part;
        part.text.push_str(text);
        self.part = Some(part);
    }

    fn open_part(&mut self, kind: PartKind, out: &mut BytesMut) -> OpenPart {
        let id = self.draft.next_item_id("msg");
        let mut item = message_item(&id, kind, "", "in_progress");
        item["content"] = json!([]);
        let output_index = self.add_item(item, out);
        self.emit(
            "response.content_part.added",
            json!({"item_id": id, "output_index": output_index, "content_index": 0,
                "part": kind.part("")}),
            out,
        );
        OpenPart {
            output_index,
            id,
            kind,
            text: String::new(),
        }
    }

    fn close_part(&mut self, out: &mut BytesMut) {
        let Some(part) = self.part.take() else {
            return;
        };
        let (id, index) = (&part.id, part.output_index);
        let mut done = json!({"item_id": id, "output_index": index, "content_index": 0});
        match part.kind {
            PartKind::Text => {
                done["text"] = json!(part.text);
                done["logprobs"] = json!([]);
            }
            PartKind::Refusal => done["refusal"] = json!(part.text),
        }
        self.emit(&format!("{}.done", part.kind.event_prefix()), done, out);
        self.emit(
            "response.content_part.done",
            json!({"item_id": id, "output_index": index, "content_index": 0,
                "part": part.kind.part(&part.text)}),
            out,
        );
        let item = message_item(id, part.kind, &part.text, "completed");
        self.finish_item(index, item, out);
    }

    /// One tool call's delta: a call seen for the first time opens its
    /// function call item; its arguments follow as deltas.
    fn call(&mut self, delta: &Value, out: &mut BytesMut) {
        let tool = delta["index"].as_u64().unwrap_or(0);
        if !self.calls.iter().any(|call| call.tool == tool) {
            self.close_reasoning(out);
            self.close_part(out);
            let id = self.draft.next_item_id("fc");
            let field = |pointer: &str| delta.pointer(pointer).and_then(Value::as_str);
            let call_id = field("/id").unwrap_or(&id).to_owned();
            let name = field("/function/name").unwrap_or("").to_owned();
            let item = call_item(&id, &call_id, &name, "", "in_progress");
            let output_index = self.add_item(item, out);
            self.calls.push(OpenCall {
                tool,
                output_index,
                id,
                call_id,
                name,
                arguments: String::new(),
            });
        }
        let Some(arguments) = delta
            .pointer("/function/arguments")
            .and_then(Value::as_str)
            .filter(|arguments| !arguments.is_empty())
        else {
            return;
        };
        let Some(call) = self.calls.iter_mut().find(|call| call.tool == tool) else {
            return;
        };
        call.arguments.push_str(arguments);
        let delta = json!({"item_id": call.id, "output_index": call.output_index,
            "delta": arguments});
        self.emit("response.function_call_arguments.delta", delta, out);
    }

    fn close_call(&mut self, call: OpenCall, out: &mut BytesMut) {
        self.emit(
            "response.function_call_arguments.done",
            json!({"item_id": call.id, "output_index": call.output_index,
                "name": call.name, "arguments": call.arguments}),
            out,
        );
        let item = call_item(
            &call.id,
            &call.call_id,
            &call.name,
            &call.arguments,
            "completed",
        );
        self.finish_item(call.output_index, item, out);
    }

    /// Adds `item`, in progress, to the output: its index there.
    fn add_item(&mut self, item: Value, out: &mut BytesMut) -> usize {
        let output_index = self.draft.output.len();
        self.emit(
            "response.output_item.added",
            json!({"output_index": output_index, "item": &item}),
            out,
        );
        self.draft.output.push(item);
        output_index
    }

    fn finish_item(&mut self, output_index: usize, item: Value, out: &mut BytesMut) {
        if let Some(slot) = self.draft.output.get_mut(output_index) {
            *slot = item.clone();
        }
        self.emit(
            "response.output_item.done",
            json!({"output_index": output_index, "item": item}),
            out,
        );
    }

    /// Writes the SSE event `kind` with `fields`, its type and sequence
    /// number first.
    fn emit(&mut self, kind: &str, fields: Value, out: &mut BytesMut) {
        let mut event = json!({"type": kind, "sequence_number": self.sequence});
        if let (Value::Object(event), Value::Object(fields)) = (&mut event, fields) {
            event.extend(fields);
        }
        self.sequence += 1;
        out.put_slice(b"event: ");
        out.put_slice(kind.as_bytes());
        out.put_slice(b"\ndata: ");
        out.put_slice(event.to_string().as_bytes());
        out.put_slice(b"\n\n");
    }
}

#[cfg(test)]
mod tests;
