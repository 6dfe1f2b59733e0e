//! Reading the body the AI SDK's `DefaultChatTransport` posts to `POST /api/chat`:
//! `{ id, messages, trigger, messageId, ... }`, where `messages` are UI messages
//! (`{ id, role, parts: [{ type: "text", text }, ..] }`), or `{ id, message }` with the
//! last message only. Anything else in the body (fields a `body` option of `useChat`
//! adds) is ignored.
//!
//! Every way a body can be wrong is a one-line reason for a 400, never a panic.

use serde_json::Value;

/// What the example needs from a chat request.
#[derive(Debug)]
pub struct ChatRequest {
    /// The chat's id (`id`): the key of its active stream.
    pub chat_id: String,
    /// The text of the last user message: the prompt the model answers.
    pub prompt: String,
    /// The id the assistant message gets (sent in the stream's `start` part): derived
    /// from the user message it answers (else from its place in the chat), so a
    /// regenerated answer replaces the one before.
    pub message_id: String,
}

/// Chat ids become parts of Redis keys: short and plain, so that odd input cannot make
/// odd keys. The AI SDK's own ids (`generateId`: 16 alphanumerics) fit.
pub fn is_plain_id(id: &str) -> bool {
    let plain = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_';
    (1..=128).contains(&id.len()) && id.chars().all(plain)
}

/// Reads a chat request, or says in one line what is wrong with it.
pub fn parse(body: &Value) -> Result<ChatRequest, String> {
    let chat_id = body
        .get("id")
        .and_then(Value::as_str)
        .ok_or("the body needs \"id\", the chat id, a string")?;
    if !is_plain_id(chat_id) {
        return Err("chat ids are 1 to 128 characters of A-Z, a-z, 0-9, '-' and '_'".into());
    }
    match body.get("trigger").and_then(Value::as_str) {
        // Both ask for an answer to the last user message: a regenerate comes without
        // the assistant message it replaces.
        None | Some("submit-message" | "regenerate-message") => {}
        Some(other) => return Err(format!("unknown trigger {other:?}")),
    }
    // `messages` is what DefaultChatTransport sends; `message` (the last one only) is
    // what the AI SDK's resume guide has `prepareSendMessagesRequest` send instead.
    let single;
    let messages = match (body.get("messages"), body.get("message")) {
        (Some(messages), _) => messages
            .as_array()
            .ok_or("\"messages\" must be an array of UI messages")?,
        (None, Some(message)) => {
            single = [message.clone()];
            &single[..]
        }
        (None, None) => return Err("the body needs \"messages\", an array of UI messages".into()),
    };
    let (place, last_user) = messages
        .iter()
        .enumerate()
        .rev()
        .find(|(_, m)| m.get("role").and_then(Value::as_str) == Some("user"))
        .ok_or("the messages hold no user message to answer")?;
    let parts = last_user
        .get("parts")
        .and_then(Value::as_array)
        .ok_or("the last user message has no \"parts\" array")?;
    let prompt: String = parts
        .iter()
        .filter(|p| p.get("type").and_then(Value::as_str) == Some("text"))
        .filter_map(|p| p.get("text").and_then(Value::as_str))
        .collect::<Vec<_>>()
        .join("\n");
    if prompt.trim().is_empty() {
        return Err("the last user message has no text".into());
    }
    Ok(ChatRequest {
        chat_id: chat_id.to_owned(),
        prompt,
        message_id: match last_user.get("id").and_then(Value::as_str) {
            Some(user_id) => format!("{user_id}-answer"),
            None => format!("{chat_id}-{}", place + 1),
        },
    })
}
