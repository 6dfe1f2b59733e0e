//! Wire exactness: the commands our driver sends to a real redis-server, read back
//! through `MONITOR`, are those of the deployed TypeScript library, byte for byte.

mod support;

use futures_util::StreamExt;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;
use support::{fixed_source, manual_source, within, RedisServer};

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_commands_on_the_wire_are_the_v1_protocol() {
    let server = RedisServer::start();
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

    let url = server.url();
    let producer_ctx = resumable_stream_tokio::ResumableStreamContext::builder()
        .redis_url(url.clone())
        .build()
        .await
        .unwrap();
    let resumer_ctx = resumable_stream_tokio::ResumableStreamContext::builder()
        .redis_url(url)
        .build()
        .await
        .unwrap();
    let (tx, source) = manual_source();
    let mut producer = producer_ctx
        .resumable_stream("w", source, None)
        .await
        .unwrap()
        .unwrap();
    tx.send(Ok("héllo".into())).unwrap();
    let first = within("first chunk", producer.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(first, "héllo");
    let resumer = resumer_ctx
        .resumable_stream("w", fixed_source(vec![]), Some(2))
        .await
        .unwrap()
        .unwrap();
    tx.send(Ok(" 🚀".into())).unwrap();
    drop(tx);
    let mut resumer = resumer;
    let mut received = Vec::new();
    while let Some(chunk) = within("resumer", resumer.next()).await {
        received.extend_from_slice(&chunk.unwrap());
    }
    assert_eq!(received, "llo 🚀".as_bytes());
    while within("producer", producer.next()).await.is_some() {}
    // Let the last UNSUBSCRIBE reach the monitor.
    tokio::time::sleep(Duration::from_millis(300)).await;
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
