//! Server-sent events: reading an upstream's stream into whole events
//! ([`EventReader`]), and the frames Chorus writes itself — `data:`
//! frames, the `[DONE]` terminator, and the `error` event that ends a
//! stream which broke upstream.

mod reader;

use bytes::{BufMut, Bytes, BytesMut};

pub use reader::{EventReader, EventTooLarge, SseEvent, MAX_EVENT_BYTES};

use crate::error::ErrorBody;

/// The data payload OpenAI sends as the last event of a successful stream.
pub const DONE: &str = "[DONE]";

/// `data: <payload>\n\n`
pub fn data_frame(payload: &[u8]) -> Bytes {
    let mut frame = BytesMut::with_capacity(payload.len() + 8);
    frame.put_slice(b"data: ");
    frame.put_slice(payload);
    frame.put_slice(b"\n\n");
    frame.freeze()
}

/// `data: [DONE]\n\n`
pub fn done_frame() -> Bytes {
    Bytes::from_static(b"data: [DONE]\n\n")
}

/// `event: error` carrying an OpenAI error object. The official SDKs raise an
/// `APIError` on it, so a broken stream is never mistaken for a finished one.
pub fn error_frame(error: &ErrorBody) -> Bytes {
    let payload = error.to_json();
    let mut frame = BytesMut::with_capacity(payload.len() + 24);
    frame.put_slice(b"event: error\ndata: ");
    frame.put_slice(&payload);
    frame.put_slice(b"\n\n");
    frame.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorType;

    #[test]
    fn frames_are_sse_shaped() {
        assert_eq!(&data_frame(b"{}")[..], b"data: {}\n\n");
        let frame = error_frame(&ErrorBody::new(ErrorType::Upstream, "cut"));
        assert!(frame.starts_with(b"event: error\ndata: {\"error\""));
        assert!(frame.ends_with(b"\n\n"));
    }
}
