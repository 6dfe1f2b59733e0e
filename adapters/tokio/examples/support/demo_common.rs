//! What the two demo servers share (the tokio `demo` and the blocking
//! `blocking_server`, which includes this file with `#[path]`): the command line, the
//! stream ids they accept, and decoding the stream's bytes as text for SSE.

/// `--port N` (or `--port=N`), else `PORT`, else `default`.
pub fn port_from_args_or_env(default: u16) -> Result<u16, String> {
    let mut args = std::env::args().skip(1);
    let mut port = std::env::var("PORT").ok();
    while let Some(arg) = args.next() {
        if arg == "--port" {
            port = Some(args.next().ok_or("--port needs a value")?);
        } else if let Some(value) = arg.strip_prefix("--port=") {
            port = Some(value.to_owned());
        } else {
            return Err(format!("unknown argument {arg:?} (only --port N)"));
        }
    }
    match port {
        Some(port) => port
            .parse()
            .map_err(|_| format!("the port must be a port number, not {port:?}")),
        None => Ok(default),
    }
}

/// Ids become parts of Redis keys and channel names; the demo keeps them short and
/// plain so that a typo in the URL hash cannot make odd keys.
pub fn is_plain_id(id: &str) -> bool {
    let plain = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_';
    (1..=64).contains(&id.len()) && id.chars().all(plain)
}

/// Decodes a stream of byte chunks as UTF-8 without breaking a character that a
/// producer split across two chunks (this demo's producer never does, but a producer
/// elsewhere on the same Redis may publish arbitrary bytes).
#[derive(Default)]
pub struct Utf8Decoder {
    /// The start of a character whose end has not arrived yet.
    pending: Vec<u8>,
}

impl Utf8Decoder {
    pub fn push(&mut self, bytes: &[u8]) -> String {
        self.pending.extend_from_slice(bytes);
        let complete = self.pending.len() - incomplete_tail(&self.pending);
        let tail = self.pending.split_off(complete);
        let text = String::from_utf8_lossy(&self.pending).into_owned();
        self.pending = tail;
        text
    }

    /// Whether every byte pushed so far was decoded.
    pub fn is_clear(&self) -> bool {
        self.pending.is_empty()
    }

    /// What is left at the end of the stream: a truncated character, as U+FFFD.
    pub fn finish(self) -> String {
        String::from_utf8_lossy(&self.pending).into_owned()
    }
}

/// How many bytes at the end of `bytes` begin a character that is not complete yet.
/// Invalid bytes earlier on are left for lossy decoding.
fn incomplete_tail(mut bytes: &[u8]) -> usize {
    loop {
        match std::str::from_utf8(bytes) {
            Ok(_) => return 0,
            Err(e) => match e.error_len() {
                // The input ended in the middle of a character.
                None => return bytes.len() - e.valid_up_to(),
                Some(invalid) => bytes = &bytes[e.valid_up_to() + invalid..],
            },
        }
    }
}
