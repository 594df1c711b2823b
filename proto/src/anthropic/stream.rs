//! Streams both ways. Anthropic streams in typed events that open and
//! close content blocks (text, tool use) with deltas in between; OpenAI in
//! chunks whose `delta` grows one message. [`ToChunks`] reads an
//! Anthropic stream as OpenAI chunk payloads, [`ToEvents`] writes an
//! OpenAI stream as Anthropic SSE events. Each keeps the little state the
//! mapping needs: which block is open, which tool call is which.

use bytes::{BufMut, Bytes, BytesMut};
use serde_json::{json, Value};

use super::{finish_reason, stop_reason, usage};
use crate::error::ErrorBody;
use crate::sse::DONE;

/// Reads an Anthropic event stream as OpenAI `chat.completion.chunk`
/// payloads: a role chunk at `message_start`, a chunk per text or tool
/// input delta, a finish chunk at `message_delta`, then the usage chunk
/// and `[DONE]` at `message_stop`.
#[derive(Debug, Default)]
pub struct ToChunks {
    id: String,
    model: String,
    created: u64,
    input_tokens: Option<Value>,
    output_tokens: Option<Value>,
    /// (content block index, tool call index) of each tool block so far:
    /// a list, not a table by index, since the upstream picks the indexes.
    tool_of_block: Vec<(u64, u64)>,
    /// The thinking block being streamed: its index, and the block as it
    /// grows, handed on whole when it stops so it can be sent back.
    thinking: Option<(u64, Value)>,
}

impl ToChunks {
    /// `created` is the caller's clock in seconds, stamped on every chunk.
    pub fn new(created: u64) -> Self {
        ToChunks {
            created,
            ..ToChunks::default()
        }
    }

    /// The OpenAI payloads (JSON, or `[DONE]`) for one event's data.
    /// An `error` event, or data that is not an event, is an error.
    pub fn event(&mut self, data: &str) -> Result<Vec<String>, String> {
        let event: Value = serde_json::from_str(data).map_err(|e| e.to_string())?;
        let kind = event.get("type").and_then(Value::as_str).unwrap_or("");
        let chunks = match kind {
            "message_start" => {
                let message = &event["message"];
                self.id = message["id"].as_str().unwrap_or("").to_owned();
                self.model = message["model"].as_str().unwrap_or("").to_owned();
                self.input_tokens = Some(message["usage"].clone());
                vec![self.chunk(json!({"role": "assistant", "content": ""}), None)]
            }
            "content_block_start" => {
                let block = &event["content_block"];
                let index = event["index"].as_u64().unwrap_or(0);
                match block["type"].as_str() {
                    Some("tool_use") => {
                        let tool = self.tool_of_block.len() as u64;
                        self.tool_of_block.push((index, tool));
                        let mut call = super::reply::tool_call(block);
                        call["index"] = tool.into();
                        // The input arrives as deltas.
                        call["function"]["arguments"] = "".into();
                        vec![self.chunk(json!({"tool_calls": [call]}), None)]
                    }
                    Some("text") => match block["text"].as_str().filter(|t| !t.is_empty()) {
                        Some(text) => vec![self.chunk(json!({"content": text}), None)],
                        None => Vec::new(),
                    },
                    Some("thinking") => {
                        self.thinking = Some((index, block.clone()));
                        match block["thinking"].as_str().filter(|t| !t.is_empty()) {
                            Some(text) => {
                                vec![self.chunk(json!({"reasoning_content": text}), None)]
                            }
                            None => Vec::new(),
                        }
                    }
                    Some("redacted_thinking") => {
                        vec![self.chunk(json!({"thinking_blocks": [block]}), None)]
                    }
                    _ => Vec::new(),
                }
            }
            "content_block_stop" => {
                let index = event["index"].as_u64();
                match self.thinking.take() {
                    Some((open, block)) if Some(open) == index => {
                        vec![self.chunk(json!({"thinking_blocks": [block]}), None)]
                    }
                    open => {
                        self.thinking = open;
                        Vec::new()
                    }
                }
            }
            "content_block_delta" => {
                let delta = &event["delta"];
                let index = event["index"].as_u64().unwrap_or(0);
                match delta["type"].as_str() {
                    Some("text_delta") => vec![self.chunk(json!({"content": delta["text"]}), None)],
                    Some("input_json_delta") => {
                        let tool = self.tool_of_block.iter().find(|(block, _)| *block == index);
                        let (_, tool) =
                            tool.ok_or("an input delta for a block that is not a tool")?;
                        let call = json!({"index": tool, "function": {"arguments": delta["partial_json"]}});
                        vec![self.chunk(json!({"tool_calls": [call]}), None)]
                    }
                    Some("thinking_delta") => {
                        let text = delta["thinking"].as_str().unwrap_or("");
                        self.grow_thinking(index, "thinking", text);
                        vec![self.chunk(json!({"reasoning_content": text}), None)]
                    }
                    Some("signature_delta") => {
                        let signature = delta["signature"].as_str().unwrap_or("");
                        self.grow_thinking(index, "signature", signature);
                        Vec::new()
                    }
                    // Citations have no chunk field.
                    _ => Vec::new(),
                }
            }
            "message_delta" => {
                if let Some(usage) = event.get("usage") {
                    self.output_tokens = Some(usage.clone());
                }
                let stop = event.pointer("/delta/stop_reason").and_then(Value::as_str);
                vec![self.chunk(json!({}), Some(finish_reason(stop.unwrap_or("end_turn"))))]
            }
            "message_stop" => vec![self.usage_chunk(), DONE.to_owned()],
            "error" => {
                let message = event.pointer("/error/message").and_then(Value::as_str);
                return Err(message
                    .unwrap_or("the upstream reported an error")
                    .to_owned());
            }
            // ping and any event type added later.
            _ => Vec::new(),
        };
        Ok(chunks)
    }

    /// Appends `text` to `field` of the open thinking block at `index`.
    fn grow_thinking(&mut self, index: u64, field: &str, text: &str) {
        let Some((open, block)) = &mut self.thinking else {
            return;
        };
        if *open != index {
            return;
        }
        match &mut block[field] {
            Value::String(grown) => grown.push_str(text),
            slot => *slot = Value::String(text.to_owned()),
        }
    }

    fn chunk(&self, delta: Value, finish_reason: Option<&str>) -> String {
        json!({
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish_reason}],
        })
        .to_string()
    }

    /// Input tokens come at the start; output tokens, and in newer API
    /// versions a final input count, at the end.
    fn usage_chunk(&self) -> String {
        let mut reported = serde_json::Map::new();
        for part in [&self.input_tokens, &self.output_tokens]
            .into_iter()
            .flatten()
        {
            if let Value::Object(fields) = part {
                reported.extend(fields.iter().map(|(k, v)| (k.clone(), v.clone())));
            }
        }
        json!({
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": [],
            "usage": usage(Some(&Value::Object(reported))).openai_details(),
        })
        .to_string()
    }
}

/// Writes an OpenAI chunk stream as Anthropic SSE events, for clients of
/// `POST /v1/messages`: `message_start` before the first chunk's content,
/// a content block per run of text and per tool call, and at `[DONE]` the
/// `message_delta` with the stop reason and usage, then `message_stop`.
#[derive(Debug, Default)]
pub struct ToEvents {
    started: bool,
    /// The index the next content block gets.
    blocks: u64,
    open: Option<OpenBlock>,
    /// For each OpenAI tool call index, its block's index.
    block_of_tool: Vec<(u64, u64)>,
    stop_reason: Option<&'static str>,
    input_tokens: u64,
    output_tokens: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OpenBlock {
    Text(u64),
    Tool(u64),
}

impl ToEvents {
    /// Events whose `message_start` reports `input_tokens`, the prompt as
    /// estimated before the upstream counts it: an OpenAI stream reports
    /// its count only at the end, in `message_delta`.
    pub fn with_input_tokens(input_tokens: u64) -> Self {
        ToEvents {
            input_tokens,
            ..ToEvents::default()
        }
    }

    /// The events for one OpenAI chunk payload (JSON), appended to `out`.
    pub fn chunk(&mut self, payload: &[u8], out: &mut BytesMut) -> Result<(), String> {
        let chunk: Value = serde_json::from_slice(payload).map_err(|e| e.to_string())?;
        self.start(&chunk, out);
        if let Some(usage) = chunk.get("usage").filter(|usage| !usage.is_null()) {
            let count = |field: &str| usage.get(field).and_then(Value::as_u64).unwrap_or(0);
            self.input_tokens = count("prompt_tokens");
            self.output_tokens = count("completion_tokens");
        }
        let Some(choice) = chunk.pointer("/choices/0") else {
            return Ok(());
        };
        let delta = &choice["delta"];
        // A refusal is what the model said; Anthropic has no field for it.
        let text = ["content", "refusal"]
            .iter()
            .find_map(|field| delta[*field].as_str());
        if let Some(text) = text.filter(|text| !text.is_empty()) {
            let index = match self.open {
                Some(OpenBlock::Text(index)) => index,
                _ => self.open_block(OpenBlock::Text, json!({"type": "text", "text": ""}), out),
            };
            let delta = json!({"type": "text_delta", "text": text});
            frame(
                out,
                "content_block_delta",
                &json!({"type": "content_block_delta", "index": index, "delta": delta}),
            );
        }
        for call in delta["tool_calls"].as_array().into_iter().flatten() {
            let tool = call["index"].as_u64().unwrap_or(0);
            let known = self
                .block_of_tool
                .iter()
                .find(|(t, _)| *t == tool)
                .map(|(_, b)| *b);
            let index = match known {
                Some(index) => index,
                None => {
                    let block = json!({"type": "tool_use", "id": call["id"], "name": call.pointer("/function/name"), "input": {}});
                    let index = self.open_block(OpenBlock::Tool, block, out);
                    self.block_of_tool.push((tool, index));
                    index
                }
            };
            if let Some(arguments) = call
                .pointer("/function/arguments")
                .and_then(Value::as_str)
                .filter(|a| !a.is_empty())
            {
                let delta = json!({"type": "input_json_delta", "partial_json": arguments});
                frame(
                    out,
                    "content_block_delta",
                    &json!({"type": "content_block_delta", "index": index, "delta": delta}),
                );
            }
        }
        if let Some(finish) = choice["finish_reason"].as_str() {
            self.stop_reason = Some(stop_reason(finish));
        }
        Ok(())
    }

    /// The events that end a complete stream, at `[DONE]`.
    pub fn done(&mut self, out: &mut BytesMut) {
        self.start(&Value::Null, out);
        self.close_block(out);
        frame(
            out,
            "message_delta",
            &json!({
                "type": "message_delta",
                "delta": {"stop_reason": self.stop_reason(), "stop_sequence": null},
                "usage": {"input_tokens": self.input_tokens, "output_tokens": self.output_tokens},
            }),
        );
        frame(out, "message_stop", &json!({"type": "message_stop"}));
    }

    /// Why the message stopped. A reply that called tools stopped for
    /// them, whatever finish reason came with it: some OpenAI-compatible
    /// servers say `stop`, and Anthropic clients act on `tool_use` alone.
    fn stop_reason(&self) -> &'static str {
        match self.stop_reason {
            Some("end_turn") | None if !self.block_of_tool.is_empty() => "tool_use",
            Some(reason) => reason,
            None => "end_turn",
        }
    }

    /// `message_start`, before the first chunk's content.
    fn start(&mut self, chunk: &Value, out: &mut BytesMut) {
        if std::mem::replace(&mut self.started, true) {
            return;
        }
        let message = json!({
            "id": chunk.get("id").and_then(Value::as_str).unwrap_or("msg_chorus"),
            "type": "message",
            "role": "assistant",
            "model": chunk.get("model").and_then(Value::as_str).unwrap_or(""),
            "content": [],
            "stop_reason": null,
            "stop_sequence": null,
            "usage": {"input_tokens": self.input_tokens, "output_tokens": 0},
        });
        frame(
            out,
            "message_start",
            &json!({"type": "message_start", "message": message}),
        );
    }

    fn open_block(&mut self, open: fn(u64) -> OpenBlock, block: Value, out: &mut BytesMut) -> u64 {
        self.close_block(out);
        let index = self.blocks;
        self.blocks += 1;
        self.open = Some(open(index));
        frame(
            out,
            "content_block_start",
            &json!({"type": "content_block_start", "index": index, "content_block": block}),
        );
        index
    }

    fn close_block(&mut self, out: &mut BytesMut) {
        if let Some(OpenBlock::Text(index) | OpenBlock::Tool(index)) = self.open.take() {
            frame(
                out,
                "content_block_stop",
                &json!({"type": "content_block_stop", "index": index}),
            );
        }
    }
}

/// An Anthropic `error` event carrying `body`: the SDKs raise it.
pub fn error_event(body: &Value) -> Bytes {
    let mut out = BytesMut::new();
    frame(&mut out, "error", body);
    out.freeze()
}

/// The error event for an OpenAI error object, typed as Anthropic types it.
pub fn error_event_for(status: u16, error: &ErrorBody) -> Bytes {
    error_event(&super::error::body(status, error))
}

fn frame(out: &mut BytesMut, event: &str, data: &Value) {
    out.put_slice(b"event: ");
    out.put_slice(event.as_bytes());
    out.put_slice(b"\ndata: ");
    out.put_slice(data.to_string().as_bytes());
    out.put_slice(b"\n\n");
}

#[cfg(test)]
mod tests;
