//! Reading an SSE stream into whole events, each kept as the bytes that
//! came, so a gateway can forward every line it does not need to change
//! (`id:`, `retry:`, comments) byte for byte. An event may not grow past a
//! bound: an upstream that never ends its event cannot make the node
//! buffer without end.

use std::ops::Range;

use bytes::{BufMut, Bytes, BytesMut};

/// The largest event accepted, blank line included: far above any chunk
/// a model streams (a few hundred bytes to a few KB).
pub const MAX_EVENT_BYTES: usize = 1024 * 1024;

/// One event as it arrived, through the blank line that ends it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseEvent {
    raw: Bytes,
    /// Its `data`, lines joined by `\n`; `None` when it has no data line
    /// (a comment or keep-alive).
    data: Option<Bytes>,
    /// Where the value of its one `data:` line is in `raw`, when it has
    /// exactly one: the common case, rewritten in place.
    data_span: Option<Range<usize>>,
    /// The value of its `event:` line; empty for the default `message`.
    name: Bytes,
}

impl SseEvent {
    /// `data: <payload>\n\n`, an event made here rather than read.
    pub fn from_data(payload: &[u8]) -> Self {
        let raw = super::data_frame(payload);
        let span = 6..6 + payload.len();
        SseEvent {
            data: Some(raw.slice(span.clone())),
            data_span: Some(span),
            raw,
            name: Bytes::new(),
        }
    }

    /// Reads one whole event (its lines and the blank line after them),
    /// such as a frame Chorus wrote itself.
    pub fn parse(raw: Bytes) -> Self {
        let mut data: Option<BytesMut> = None;
        let mut spans = Vec::new();
        let mut name = Bytes::new();
        let mut start = 0;
        while start < raw.len() {
            let end = raw[start..]
                .iter()
                .position(|&b| b == b'\n')
                .map_or(raw.len(), |at| start + at);
            let line_end = if end > start && raw[end - 1] == b'\r' {
                end - 1
            } else {
                end
            };
            let line = &raw[start..line_end];
            // `field: value`, one optional space after the colon; a line
            // starting with `:` is a comment.
            if !line.is_empty() && line[0] != b':' {
                let colon = line.iter().position(|&b| b == b':');
                let field = &line[..colon.unwrap_or(line.len())];
                let mut value_start = colon.map_or(line_end, |at| start + at + 1);
                if raw.get(value_start) == Some(&b' ') && value_start < line_end {
                    value_start += 1;
                }
                let value = value_start..line_end;
                match field {
                    b"data" => {
                        let joined = data.get_or_insert_with(BytesMut::new);
                        if !spans.is_empty() {
                            joined.put_u8(b'\n');
                        }
                        joined.put_slice(&raw[value.clone()]);
                        spans.push(value);
                    }
                    b"event" => name = raw.slice(value),
                    _ => {}
                }
            }
            start = end + 1;
        }
        let data_span = match spans.as_slice() {
            [only] => Some(only.clone()),
            _ => None,
        };
        // An event whose data is empty is not dispatched (WHATWG): it
        // counts as a keep-alive.
        let data = match &data_span {
            Some(span) => Some(raw.slice(span.clone())),
            None => data.map(BytesMut::freeze),
        };
        SseEvent {
            data: data.filter(|data| !data.is_empty()),
            data_span,
            raw,
            name,
        }
    }

    /// The event as it came.
    pub fn raw(&self) -> &Bytes {
        &self.raw
    }

    pub fn data(&self) -> Option<&Bytes> {
        self.data.as_ref()
    }

    /// The event type: `message` unless an `event:` line names another.
    pub fn name(&self) -> &[u8] {
        if self.name.is_empty() {
            b"message"
        } else {
            &self.name
        }
    }

    /// The event with `payload` as its data and every other line as it
    /// came. An event whose data spread over several lines gets one
    /// `data:` line, after the others.
    pub fn with_data(&self, payload: &[u8]) -> Bytes {
        let one_line = !payload.contains(&b'\n');
        if let Some(span) = self.data_span.as_ref().filter(|_| one_line) {
            let mut out = BytesMut::with_capacity(self.raw.len() + payload.len());
            out.put_slice(&self.raw[..span.start]);
            out.put_slice(payload);
            out.put_slice(&self.raw[span.end..]);
            return out.freeze();
        }
        let mut out = BytesMut::with_capacity(self.raw.len() + payload.len() + 8);
        for line in self.raw.split(|&b| b == b'\n') {
            let text = line.strip_suffix(b"\r").unwrap_or(line);
            if !text.is_empty() && !text.starts_with(b"data") {
                out.put_slice(line);
                out.put_u8(b'\n');
            }
        }
        // A payload over several lines takes a `data:` line each.
        for line in payload.split(|&b| b == b'\n') {
            out.put_slice(b"data: ");
            out.put_slice(line);
            out.put_u8(b'\n');
        }
        out.put_u8(b'\n');
        out.freeze()
    }
}

/// The stream's bytes broke an event's bound.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("an SSE event grew past {0} bytes without ending")]
pub struct EventTooLarge(pub usize);

/// Cuts a byte stream into whole events, holding at most one unfinished
/// event of at most `max_event_bytes`.
#[derive(Debug)]
pub struct EventReader {
    buffer: BytesMut,
    /// Nothing read yet: a byte-order mark may open the stream.
    at_start: bool,
    /// The last byte read was a carriage return, which may be a line end
    /// of its own or the start of CRLF.
    after_cr: bool,
    /// How far `buffer` has been searched for an event's end.
    searched: usize,
    max_event_bytes: usize,
}

impl Default for EventReader {
    fn default() -> Self {
        EventReader::new(MAX_EVENT_BYTES)
    }
}

impl EventReader {
    pub fn new(max_event_bytes: usize) -> Self {
        EventReader {
            buffer: BytesMut::new(),
            at_start: true,
            after_cr: false,
            searched: 0,
            max_event_bytes,
        }
    }

    /// Adds the next bytes of the stream; the events they complete.
    pub fn push(&mut self, mut bytes: &[u8]) -> Result<Vec<SseEvent>, EventTooLarge> {
        if std::mem::take(&mut self.at_start) {
            bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
        }
        self.append(bytes);
        let mut events = Vec::new();
        while let Some(end) = event_end(&self.buffer, self.searched) {
            let raw = self.buffer.split_to(end).freeze();
            self.searched = 0;
            if raw.iter().all(|&b| b == b'\n' || b == b'\r') {
                continue; // blank lines between events
            }
            events.push(SseEvent::parse(raw));
        }
        // Resume a line back: the end may straddle this push and the next.
        self.searched = self.buffer.len().saturating_sub(2);
        if self.buffer.len() > self.max_event_bytes {
            return Err(EventTooLarge(self.max_event_bytes));
        }
        Ok(events)
    }
}

impl EventReader {
    /// Appends `bytes`, a lone carriage return (a line end of its own)
    /// made a line feed, so events are only ever cut at line feeds.
    fn append(&mut self, bytes: &[u8]) {
        if !self.after_cr && !bytes.contains(&b'\r') {
            self.buffer.extend_from_slice(bytes);
            return;
        }
        for &byte in bytes {
            if std::mem::take(&mut self.after_cr) {
                self.buffer
                    .put_u8(if byte == b'\n' { b'\r' } else { b'\n' });
            }
            if byte == b'\r' {
                self.after_cr = true;
            } else {
                self.buffer.put_u8(byte);
            }
        }
    }
}

/// Where the first event in `buffer` ends (after its blank line), looking
/// from `from`: a line feed, an optional carriage return, a line feed.
fn event_end(buffer: &[u8], from: usize) -> Option<usize> {
    let mut at = from;
    while let Some(found) = buffer.get(at..)?.iter().position(|&b| b == b'\n') {
        let newline = at + found;
        match buffer.get(newline + 1) {
            Some(b'\n') => return Some(newline + 2),
            Some(b'\r') if buffer.get(newline + 2) == Some(&b'\n') => return Some(newline + 3),
            _ => at = newline + 1,
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn read(chunks: &[&[u8]]) -> Vec<SseEvent> {
        let mut reader = EventReader::default();
        chunks
            .iter()
            .flat_map(|chunk| reader.push(chunk).unwrap())
            .collect()
    }

    #[test]
    fn events_keep_every_line_and_expose_their_data() {
        let stream = b"id: 7\nretry: 100\n: keep\ndata: {\"a\":1}\n\n: ping\n\nevent: error\r\ndata:{\"b\"\r\n\r\n";
        let events = read(&[stream]);
        assert_eq!(events.len(), 3);
        assert_eq!(
            &events[0].raw()[..],
            b"id: 7\nretry: 100\n: keep\ndata: {\"a\":1}\n\n"
        );
        assert_eq!(events[0].data().map(|d| &d[..]), Some(&b"{\"a\":1}"[..]));
        assert_eq!(events[0].name(), b"message");
        assert_eq!(events[1].data(), None, "a comment has no data");
        assert_eq!(events[2].name(), b"error");
        assert_eq!(events[2].data().map(|d| &d[..]), Some(&b"{\"b\""[..]));
        assert_eq!(
            &events[0].with_data(b"{\"a\":2}")[..],
            b"id: 7\nretry: 100\n: keep\ndata: {\"a\":2}\n\n"
        );
    }

    #[test]
    fn data_over_several_lines_is_joined_and_written_back_so() {
        let events = read(&[b"id: 1\ndata: {\"a\":\ndata: 1}\n\n"]);
        assert_eq!(events[0].data().map(|d| &d[..]), Some(&b"{\"a\":\n1}"[..]));
        assert_eq!(&events[0].with_data(b"c")[..], b"id: 1\ndata: c\n\n");
        assert_eq!(
            &events[0].with_data(b"{\"a\":\n2}")[..],
            b"id: 1\ndata: {\"a\":\ndata: 2}\n\n"
        );
    }

    #[test]
    fn a_bom_lone_carriage_returns_and_empty_data_are_read_as_the_spec_says() {
        let events = read(&[b"\xEF\xBB\xBFdata: a\r\r", b"data:\n\ndata: b\r", b"\n\r\n"]);
        assert_eq!(events.len(), 3);
        assert_eq!(events[0].data().map(|d| &d[..]), Some(&b"a"[..]));
        assert_eq!(events[1].data(), None, "empty data is not dispatched");
        assert_eq!(events[2].data().map(|d| &d[..]), Some(&b"b"[..]));
        assert_eq!(&events[2].raw()[..], b"data: b\r\n\r\n");
    }

    #[test]
    fn an_event_past_the_bound_is_an_error() {
        let mut reader = EventReader::new(16);
        assert!(reader.push(b"data: 0123456").unwrap().is_empty());
        assert_eq!(reader.push(b"789abcdef"), Err(EventTooLarge(16)));
        let mut reader = EventReader::new(16);
        assert_eq!(
            reader.push(b"data: 0123456789\n\n").unwrap().len(),
            1,
            "whole events pass"
        );
    }

    proptest! {
        /// However the stream is cut into reads, the same events come out.
        #[test]
        fn cuts_do_not_matter(cuts in prop::collection::vec(0usize..120, 0..8)) {
            let stream: &[u8] = b"data: {\"x\":1}\n\n: c\n\nid: 2\r\ndata: [DONE]\r\n\r\nevent: e\ndata: a\ndata: b\n\n";
            let whole = read(&[stream]);
            let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c.min(stream.len())).collect();
            cuts.sort_unstable();
            let mut pieces = Vec::new();
            let mut last = 0;
            for cut in cuts.into_iter().chain([stream.len()]) {
                pieces.push(&stream[last..cut]);
                last = cut;
            }
            prop_assert_eq!(read(&pieces), whole.clone());
            prop_assert_eq!(whole.len(), 4);
        }
    }
}
