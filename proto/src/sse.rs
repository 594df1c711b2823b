//! Server-sent-event framing of OpenAI streams: `data:` frames, the `[DONE]`
//! terminator, and the `error` event that ends a stream which broke upstream.

use bytes::{BufMut, Bytes, BytesMut};

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

/// A frame written by the functions above, read back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Frame<'a> {
    /// A `data:` frame's payload.
    Data(&'a [u8]),
    Done,
    /// An `error` event's payload: an OpenAI error object.
    Error(&'a [u8]),
}

/// Reads one whole frame made by [`data_frame`], [`done_frame`] or
/// [`error_frame`]; `None` for anything else.
pub fn parse_frame(frame: &[u8]) -> Option<Frame<'_>> {
    let frame = frame.strip_suffix(b"\n\n")?;
    if let Some(payload) = frame.strip_prefix(b"event: error\ndata: ") {
        return Some(Frame::Error(payload));
    }
    let payload = frame.strip_prefix(b"data: ")?;
    Some(if payload == DONE.as_bytes() {
        Frame::Done
    } else {
        Frame::Data(payload)
    })
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

    #[test]
    fn frames_read_back() {
        assert_eq!(parse_frame(&data_frame(b"{}")), Some(Frame::Data(b"{}")));
        assert_eq!(parse_frame(&done_frame()), Some(Frame::Done));
        let error = ErrorBody::new(ErrorType::Upstream, "cut");
        assert_eq!(
            parse_frame(&error_frame(&error)),
            Some(Frame::Error(&error.to_json()))
        );
        assert_eq!(parse_frame(b"id: 1\n\n"), None);
    }
}
