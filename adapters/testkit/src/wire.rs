//! Wire exactness: the commands a driver sends to a real redis-server, read back through
//! `MONITOR`, are those of the deployed TypeScript library (npm 2.2.13), byte for byte.

use crate::harness::{fixed, manual, Context, Harness, Reader};
use crate::store::Store;
use crate::suite::{read_all, read_exactly};
use resumable_stream::Config;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

fn resume_with_skip(context: &dyn Context, id: &str, skip: u64) -> Box<dyn Reader> {
    context
        .resumable_stream(id, fixed(Vec::<String>::new()), Some(skip))
        .expect("no error")
        .expect("an active stream")
}

/// Splits one MONITOR line into its command's arguments, unescaped.
fn parse_monitor_line(line: &str) -> Option<Vec<Vec<u8>>> {
    let start = line.find("] ")? + 2;
    let bytes = &line.as_bytes()[start..];
    let mut args = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] != b'"' {
            i += 1;
            continue;
        }
        i += 1;
        let mut arg = Vec::new();
        while i < bytes.len() && bytes[i] != b'"' {
            if bytes[i] == b'\\' && i + 1 < bytes.len() {
                i += 1;
                match bytes[i] {
                    b'n' => arg.push(b'\n'),
                    b'r' => arg.push(b'\r'),
                    b't' => arg.push(b'\t'),
                    b'a' => arg.push(7),
                    b'b' => arg.push(8),
                    b'x' => {
                        let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok()?;
                        arg.push(u8::from_str_radix(hex, 16).ok()?);
                        i += 2;
                    }
                    other => arg.push(other),
                }
            } else {
                arg.push(bytes[i]);
            }
            i += 1;
        }
        i += 1;
        args.push(arg);
    }
    Some(args)
}

fn render(args: &[Vec<u8>]) -> String {
    args.iter()
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect::<Vec<_>>()
        .join(" | ")
}

/// The commands a producer and a resumer of this driver send, read back through
/// `MONITOR` on a real redis-server, are those of the deployed TypeScript library.
pub fn the_commands_on_the_wire_are_the_v1_protocol(harness: &dyn Harness, store: &Store) {
    let Store::Redis(server) = store else {
        panic!("the wire test needs a Redis store");
    };
    let mut monitor = Command::new("redis-cli")
        .args(["-p", &server.port.to_string(), "monitor"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("redis-cli is installed with redis-server");
    let stdout = monitor.stdout.take().unwrap();
    let (lines_tx, lines) = mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if lines_tx.send(line).is_err() {
                break;
            }
        }
    });
    assert_eq!(lines.recv_timeout(Duration::from_secs(10)).unwrap(), "OK");

    let producer_ctx = harness.context(store, Config::default());
    // A resumer that does not announce the extension protocol: the v1 wire exactly.
    let resumer_ctx = harness.context(store, Config::default().with_extensions(false));
    let (feed, source) = manual();
    let mut producer = producer_ctx
        .resumable_stream("w", source, None)
        .unwrap()
        .unwrap();
    feed.chunk("héllo");
    assert_eq!(
        read_exactly(&mut producer, "héllo".len()),
        "héllo".as_bytes()
    );
    let resumer = resume_with_skip(&*resumer_ctx, "w", 2);
    feed.chunk(" 🚀");
    drop(feed);
    let (received, error) = read_all(resumer);
    assert_eq!((received.as_slice(), error), ("llo 🚀".as_bytes(), None));
    assert_eq!(read_all(producer), (" 🚀".as_bytes().to_vec(), None));
    // Let the last UNSUBSCRIBE reach the monitor.
    std::thread::sleep(Duration::from_millis(300));
    let _ = monitor.kill();
    let _ = monitor.wait();

    let commands: Vec<Vec<Vec<u8>>> = lines
        .try_iter()
        .filter_map(|line| parse_monitor_line(&line))
        .filter(|args| {
            let name = args
                .first()
                .map(|a| a.to_ascii_uppercase())
                .unwrap_or_default();
            // Connection set-up of the client library is not part of the protocol.
            !matches!(name.as_slice(), b"CLIENT" | b"HELLO" | b"PING" | b"SELECT")
        })
        .collect();
    let printed: Vec<String> = commands.iter().map(|c| render(c)).collect();

    // The listener id is random: read it from the resumer's SUBSCRIBE.
    let listener = printed
        .iter()
        .find_map(|c| c.strip_prefix("SUBSCRIBE | resumable-stream:rs:chunk:"))
        .expect("the resumer subscribes to its chunk channel")
        .to_owned();
    assert_eq!(listener.len(), 36, "a UUID");
    let chunk_channel = format!("resumable-stream:rs:chunk:{listener}");
    let done = "\n\n\nDONE_SENTINEL_hasdfasudfyge374%$%^$EDSATRTYFtydryrte\n";
    let expected = vec![
        "INCR | resumable-stream:rs:sentinel:w".to_owned(),
        "SUBSCRIBE | resumable-stream:rs:request:w".to_owned(),
        "SET | resumable-stream:rs:sentinel:w | 1 | EX | 86400".to_owned(),
        "INCR | resumable-stream:rs:sentinel:w".to_owned(),
        format!("SUBSCRIBE | {chunk_channel}"),
        format!("PUBLISH | resumable-stream:rs:request:w | {{\"listenerId\":\"{listener}\",\"skipCharacters\":2}}"),
        format!("PUBLISH | {chunk_channel} | llo"),
        format!("PUBLISH | {chunk_channel} |  🚀"),
        "SET | resumable-stream:rs:sentinel:w | DONE | EX | 86400".to_owned(),
        "UNSUBSCRIBE | resumable-stream:rs:request:w".to_owned(),
        format!("PUBLISH | {chunk_channel} | {done}"),
        format!("UNSUBSCRIBE | {chunk_channel}"),
    ];
    // The two connections interleave freely; within each stream of causally ordered
    // commands the order is fixed. Compare as multisets, then check the orders that
    // matter on the command connection.
    let mut got_sorted = printed.clone();
    got_sorted.sort();
    let mut expected_sorted = expected.clone();
    expected_sorted.sort();
    assert_eq!(got_sorted, expected_sorted, "commands seen: {printed:#?}");
    let position = |needle: &str| printed.iter().position(|c| c == needle).unwrap();
    assert!(
        position(&format!("PUBLISH | {chunk_channel} | llo"))
            < position(&format!("PUBLISH | {chunk_channel} |  🚀"))
    );
    assert!(
        position(&format!("PUBLISH | {chunk_channel} |  🚀"))
            < position(&format!("PUBLISH | {chunk_channel} | {done}"))
    );
    assert!(
        position("SET | resumable-stream:rs:sentinel:w | DONE | EX | 86400")
            < position(&format!("PUBLISH | {chunk_channel} | {done}"))
    );
    // The raw bytes of the emoji chunk, not a re-encoding.
    let emoji = commands
        .iter()
        .find(|c| {
            c.len() == 3 && c[1] == chunk_channel.as_bytes() && c[2].ends_with("🚀".as_bytes())
        })
        .unwrap();
    assert_eq!(emoji[2], b" \xf0\x9f\x9a\x80");
}
