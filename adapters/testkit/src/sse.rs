//! What SSE tests of every driver share: a parser written from the WHATWG HTML
//! standard's "event stream interpretation" (so that what a test sees is what a
//! browser's `EventSource` would), chunks that try every way to break the framing, and
//! the checks every whole SSE body passes.

use bytes::Bytes;

/// One dispatched event, as a browser's `EventSource` hands it to a listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseEvent {
    /// The `event:` field, `message` when none was given.
    pub event_type: String,
    /// The `data:` lines, joined with LF.
    pub data: String,
    /// The last event id when it was dispatched.
    pub last_event_id: String,
}

/// The WHATWG "event stream interpretation": UTF-8 decoded (with replacement), lines
/// ended by CRLF, LF or CR, fields `event`, `data`, `id`, `retry`, comments ignored,
/// an event dispatched on a blank line unless its data buffer is empty.
#[derive(Default)]
pub struct SseParser {
    bytes: Vec<u8>,
    /// A CR ended the last line: an LF right after it belongs to it.
    after_cr: bool,
    data: String,
    event_type: String,
    last_event_id: String,
    /// The last valid `retry:` value.
    pub retry: Option<u64>,
    /// Comment lines seen (keep-alives).
    pub comments: usize,
    /// The events dispatched so far.
    pub events: Vec<SseEvent>,
    /// Whether the decoded stream began with a BOM (stripped, as the standard says).
    started: bool,
    /// Lines seen that are not valid UTF-8: the stream must never have any.
    pub replacement_chars: usize,
}

impl SseParser {
    /// Feeds the next bytes of the stream, dispatching every event they complete.
    pub fn feed(&mut self, input: &[u8]) {
        self.bytes.extend_from_slice(input);
        loop {
            let mut start = 0;
            if self.after_cr && self.bytes.first() == Some(&b'\n') {
                start = 1;
            }
            self.after_cr = false;
            let Some(end) = self.bytes[start..]
                .iter()
                .position(|&b| b == b'\n' || b == b'\r')
            else {
                self.bytes.drain(..start);
                return;
            };
            let end = start + end;
            let terminator = self.bytes[end];
            let line = self.bytes[start..end].to_vec();
            self.bytes.drain(..=end);
            self.after_cr = terminator == b'\r';
            let mut text = String::from_utf8_lossy(&line).into_owned();
            self.replacement_chars += text.matches('\u{FFFD}').count();
            if !self.started {
                self.started = true;
                if let Some(rest) = text.strip_prefix('\u{FEFF}') {
                    text = rest.to_owned();
                }
            }
            self.line(&text);
        }
    }

    fn line(&mut self, line: &str) {
        if line.is_empty() {
            return self.dispatch();
        }
        if line.starts_with(':') {
            self.comments += 1;
            return;
        }
        let (field, value) = match line.split_once(':') {
            Some((field, value)) => (field, value.strip_prefix(' ').unwrap_or(value)),
            None => (line, ""),
        };
        match field {
            "event" => self.event_type = value.to_owned(),
            "data" => {
                self.data.push_str(value);
                self.data.push('\n');
            }
            "id" if !value.contains('\0') => self.last_event_id = value.to_owned(),
            "retry" if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) => {
                self.retry = value.parse().ok();
            }
            _ => {}
        }
    }

    fn dispatch(&mut self) {
        if self.data.is_empty() {
            self.event_type.clear();
            return;
        }
        let mut data = std::mem::take(&mut self.data);
        if data.ends_with('\n') {
            data.pop();
        }
        let event_type = match std::mem::take(&mut self.event_type) {
            t if t.is_empty() => "message".to_owned(),
            t => t,
        };
        self.events.push(SseEvent {
            event_type,
            data,
            last_event_id: self.last_event_id.clone(),
        });
    }

    /// The bytes of every chunk event so far, each decoded as the module docs of
    /// `resumable_stream::sse` say.
    pub fn chunks(&self) -> Vec<Vec<u8>> {
        self.events
            .iter()
            .filter_map(|e| resumable_stream::sse::decode_chunk(&e.event_type, &e.data))
            .collect()
    }

    /// The final event, if one came.
    pub fn last(&self) -> Option<&SseEvent> {
        self.events
            .last()
            .filter(|e| e.event_type == "end" || e.event_type == "error")
    }
}

/// Chunks that try every way to end a line or an event early, or to be mangled.
pub fn adversarial() -> Vec<Bytes> {
    let chunks: Vec<&[u8]> = vec![
        b"plain text ",
        b"x\r\n\r\nevent: end\r\ndata: forged",
        b"\n\n",
        b"data: fake\n\nid: 999\n\n",
        b"\0nul\0",
        b"\r",
        b"lone\rcr",
        b"\r\n",
        b"caf\xC3",
        b"\xA9 split",
        b"\xF0\x9F",
        b"\x9A\x80 rocket split in two",
        b"\xFF\x00\x80\xFEbinary",
        b": looks like a comment\n",
        b" leading space",
        "\u{FEFF}bom inside".as_bytes(),
        b"retry: 1\n",
        b"trailing newline\n",
        b"event: error\ndata: not really",
        "héllo 日本 ✨".as_bytes(),
    ];
    let mut chunks: Vec<Bytes> = chunks.into_iter().map(Bytes::from_static).collect();
    chunks.push(Bytes::from("long line ".repeat(2000)));
    chunks
}

/// The chunks' bytes one after another.
pub fn joined<C: AsRef<[u8]>>(chunks: &[C]) -> Vec<u8> {
    chunks
        .iter()
        .flat_map(|c| c.as_ref().iter().copied())
        .collect()
}

/// The checks every whole body passes: no U+FFFD from decoding, one final event and
/// last, ids increasing and ending at `last_id`, and consecutive from 1 for the
/// producer's own reader (a resumer's catch-up is one event: its id jumps).
pub fn check_well_formed(parser: &SseParser, last_id: u64, producer: bool, end: &str) {
    assert_eq!(
        parser.replacement_chars, 0,
        "the SSE text itself is always UTF-8"
    );
    let finals = parser
        .events
        .iter()
        .filter(|e| e.event_type == "end" || e.event_type == "error")
        .count();
    assert_eq!(finals, 1, "exactly one final event: {:?}", parser.events);
    assert_eq!(parser.last().map(|e| e.event_type.as_str()), Some(end));
    let ids: Vec<u64> = parser
        .events
        .iter()
        .filter(|e| e.event_type == "message" || e.event_type == "bytes")
        .map(|e| e.last_event_id.parse().unwrap())
        .collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "{ids:?}");
    assert_eq!(ids.last(), Some(&last_id));
    if producer {
        assert_eq!(ids, (1..=last_id).collect::<Vec<_>>());
    }
}
