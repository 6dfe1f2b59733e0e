//! The simulated model behind the `ai_chat` example: a deterministic answer for a
//! prompt, and that answer as the Vercel AI SDK's UI message stream (SSE bytes), one
//! `text-delta` per token.
//!
//! Deterministic so that a test can ask `GET /api/answer?prompt=..` for the text a chat
//! must end with, on any instance, and compare it with what the AI SDK's client
//! assembled from the stream (a lost or repeated delta shows).

use bytes::Bytes;
use futures_util::{stream, Stream};
use std::convert::Infallible;
use std::time::Duration;

/// Sentences the answer is drawn from. They mix accents, CJK, an emoji outside the
/// Basic Multilingual Plane, a quote, a backslash and a newline, so that JSON escaping
/// and UTF-16 counting in the client are exercised.
const SENTENCES: [&str; 8] = [
    "A resumable stream keeps every token it has sent, so a reader that lost its connection comes back and asks for the rest. ",
    "The chat's active stream is found by the chat id: the frontend only has to ask GET /api/chat/{id}/stream. ",
    "Offsets are counted the way a browser counts them, in UTF-16 code units: 日本 costs two, and the rocket 🚀 costs two on its own. ",
    "Every reader ends with the same text, naïve façade and all, whichever instance it asked. ",
    "A producer that stays silent is kept alive by comments, and a stream that ended answers 204.\n",
    "The answer is written by a model that has read one book, twice: \"résumé\" is its favourite word. ",
    "Nothing here is sent twice; a path like C:\\chats\\42 survives the JSON on the way. ",
    "Two instances on one Redis share their chats: the second one resumes what the first one produces. ",
];

/// How many sentences follow the opening line.
const SENTENCES_PER_ANSWER: usize = 3;

/// The longest prefix of the prompt that the answer quotes, in characters.
const QUOTED_CHARS: usize = 60;

/// The answer to `prompt`: the same text for the same prompt, on every run and every
/// instance; a few hundred characters.
pub fn answer(prompt: &str) -> String {
    let quoted: String = prompt.trim().chars().take(QUOTED_CHARS).collect();
    // The prompt is echoed as JSON would quote it, so control characters in it (a CR,
    // an LF) stay visible and cannot end a line of the answer.
    let quoted = serde_json::Value::from(quoted).to_string();
    let mut text = format!("You asked {quoted}. ");
    let mut seed = fnv1a(prompt.as_bytes());
    let mut used = [false; SENTENCES.len()];
    for _ in 0..SENTENCES_PER_ANSWER {
        // A small deterministic shuffle: step a linear congruential generator and take
        // the next unused sentence from where it lands.
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let mut index = (seed >> 33) as usize % SENTENCES.len();
        while used[index] {
            index = (index + 1) % SENTENCES.len();
        }
        used[index] = true;
        text.push_str(SENTENCES[index]);
    }
    text.push_str("That is all. ✨");
    text
}

/// The tokens of an answer: each word with the whitespace after it.
pub fn tokens(answer: &str) -> impl Iterator<Item = &str> {
    answer.split_inclusive(char::is_whitespace)
}

/// 64-bit FNV-1a: a fixed, portable hash (std's `DefaultHasher` may change between
/// Rust releases, and the answer must not).
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf29ce484222325, |hash, &byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x100000001b3)
    })
}

/// One SSE event of the UI message stream: `data: <json>` and a blank line. JSON has
/// no raw newline, so one `data:` line is the whole event.
fn event(part: &serde_json::Value) -> Bytes {
    Bytes::from(format!("data: {part}\n\n"))
}

/// The answer to `prompt` as the AI SDK's UI message stream: `start` (with the
/// assistant message's id), `text-start`, one `text-delta` per token with a pause of
/// `token_interval` before each, `text-end`, `finish`, then `data: [DONE]`. Each item is
/// one whole SSE event, so each becomes one chunk of the resumable stream.
pub fn ui_message_stream(
    prompt: &str,
    message_id: String,
    token_interval: Duration,
) -> impl Stream<Item = Result<Bytes, Infallible>> + Send + 'static {
    use serde_json::json;
    const TEXT_ID: &str = "text-0";
    let text = answer(prompt);
    let deltas: Vec<Bytes> = tokens(&text)
        .map(|delta| event(&json!({ "type": "text-delta", "id": TEXT_ID, "delta": delta })))
        .collect();
    let head = [
        event(&json!({ "type": "start", "messageId": message_id })),
        event(&json!({ "type": "text-start", "id": TEXT_ID })),
    ];
    let tail = [
        event(&json!({ "type": "text-end", "id": TEXT_ID })),
        event(&json!({ "type": "finish", "finishReason": "stop" })),
        Bytes::from_static(b"data: [DONE]\n\n"),
    ];
    let paced = stream::unfold(deltas.into_iter(), move |mut deltas| async move {
        let delta = deltas.next()?;
        tokio::time::sleep(token_interval).await;
        Some((Ok(delta), deltas))
    });
    use futures_util::StreamExt;
    stream::iter(head.map(Ok))
        .chain(paced)
        .chain(stream::iter(tail.map(Ok)))
}
