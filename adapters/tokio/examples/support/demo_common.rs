//! What the two demo servers share (the tokio `demo` and the blocking
//! `blocking_server`, which includes this file with `#[path]`): the command line and
//! the stream ids they accept. (Their SSE framing is `resumable_stream::sse`.)

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
