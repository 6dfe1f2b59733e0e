//! Durable mode end to end, through the built command-line tool on a private
//! redis-server: a durable producer killed with SIGKILL mid-stream, its resumers (one
//! attached before the kill, one started after it) printing exactly what reached the
//! log and exiting 5 within a few heartbeats; a finished stream replayed whole by
//! `resume --durable --existing`, also after Redis restarted from its append-only file;
//! and a resume by chunk position (an SSE `Last-Event-ID`) into the log.

mod support;

use resumable_stream_testkit::durable::logged;
use resumable_stream_testkit::{free_port, RedisServer, ServerOptions};
use std::io::Read;
use std::path::PathBuf;
use std::time::{Duration, Instant};
use support::{cli, finish, run, stderr, STEP_TIMEOUT};

const HEARTBEAT_MS: u64 = 200;

/// A chunks file of `count` numbered chunks, some with multi-byte characters.
fn chunks_file(name: &str, count: usize) -> (PathBuf, String) {
    let dir = std::env::temp_dir().join(format!("rs-cli-durable-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let chunks: Vec<String> = (0..count).map(|i| format!("{i}·é🚀 ")).collect();
    let path = dir.join("chunks.json");
    std::fs::write(&path, serde_json::to_vec(&chunks).expect("json")).expect("write chunks");
    (path, chunks.concat())
}

fn wait_active(server: &RedisServer, id: &str) {
    let deadline = Instant::now() + STEP_TIMEOUT;
    while String::from_utf8_lossy(&run(server, &["state", "--id", id]).stdout).trim() != "active" {
        assert!(Instant::now() < deadline, "the producer never started");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_killed_durable_producer_leaves_an_exact_prefix_and_its_resumers_exit_5() {
    let server = RedisServer::start();
    let (chunks, text) = chunks_file("kill", 400);
    let heartbeat = HEARTBEAT_MS.to_string();
    let mut producer = cli(
        &server,
        &[
            "produce",
            "--durable",
            "--id",
            "k",
            "--chunks",
            chunks.to_str().expect("utf-8 path"),
            "--delay-ms",
            "10",
            "--heartbeat-ms",
            &heartbeat,
        ],
    )
    .spawn()
    .expect("producer");
    wait_active(&server, "k");
    let resume = [
        "resume",
        "--durable",
        "--existing",
        "--id",
        "k",
        "--heartbeat-ms",
        &heartbeat,
    ];
    let mut attached = cli(&server, &resume).spawn().expect("attached resumer");
    // Kill mid-stream, once the attached resumer has printed a good part of it.
    let mut attached_out = attached.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    let printer = std::thread::spawn(move || {
        let mut all = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            match attached_out.read(&mut buf) {
                Ok(n @ 1..) => {
                    all.extend_from_slice(&buf[..n]);
                    let _ = tx.send(all.len());
                }
                _ => return all,
            }
        }
    });
    let deadline = Instant::now() + STEP_TIMEOUT;
    while rx.recv_timeout(Duration::from_secs(1)).unwrap_or(0) < text.len() / 4 {
        assert!(
            Instant::now() < deadline,
            "the attached resumer printed too little"
        );
    }
    producer.kill().expect("SIGKILL the producer");
    let _ = producer.wait();
    let killed = Instant::now();
    let later = cli(&server, &resume).spawn().expect("later resumer");

    let attached = finish(attached, "the attached resumer");
    let attached_took = killed.elapsed();
    let attached_printed = printer.join().expect("printer");
    let later = finish(later, "the later resumer");
    let later_took = killed.elapsed();

    // Exactly what reached the log, a strict prefix of what was produced.
    let log = logged(&mut server.connection(), "k");
    assert!(
        !log.is_empty() && log.len() < text.len(),
        "{} of {} bytes logged",
        log.len(),
        text.len()
    );
    assert!(text.as_bytes().starts_with(&log));
    assert_eq!(
        attached_printed, log,
        "the attached resumer printed other than the log"
    );
    assert_eq!(
        later.stdout, log,
        "the later resumer printed other than the log"
    );
    for (output, took, who) in [
        (&attached, attached_took, "attached"),
        (&later, later_took, "later"),
    ] {
        assert_eq!(output.status.code(), Some(5), "{who}: {}", stderr(output));
        assert!(
            stderr(output).contains("is gone"),
            "{who}: {}",
            stderr(output)
        );
        // The lease lapses three producer heartbeats after its last renewal (before the
        // kill); a quiet reader checks it every heartbeat of its own. The slack covers
        // process start (the later one), exit and this test's polling, for debug
        // binaries on two loaded cores.
        let bound = Duration::from_millis(4 * HEARTBEAT_MS) + Duration::from_millis(2500);
        eprintln!("the {who} resumer exited {took:?} after the kill");
        assert!(
            took <= bound,
            "{who}: {took:?} after the kill (bound {bound:?})"
        );
    }
    // The end was recorded: the stream is done for every library, v1 ones included.
    assert_eq!(run(&server, &["state", "--id", "k"]).stdout, b"done\n");
}

/// A finished durable stream: `resume --durable --existing` prints it whole and exits
/// 0, from the start or from a chunk position, also once Redis restarted from its
/// append-only file; a position past the end is an error.
#[test]
fn a_finished_durable_stream_replays_whole_even_after_redis_restarts_from_its_aof() {
    let options = ServerOptions {
        appendonly: true,
        ..ServerOptions::default()
    };
    let mut server = RedisServer::start_with(free_port(), options);
    let (chunks, text) = chunks_file("aof", 50);
    let produced = run(
        &server,
        &[
            "produce",
            "--durable",
            "--id",
            "f",
            "--chunks",
            chunks.to_str().expect("utf-8 path"),
        ],
    );
    assert_eq!(produced.status.code(), Some(0), "{}", stderr(&produced));
    assert_eq!(produced.stdout, text.as_bytes());
    // Without --durable the stream is done, as in v1.
    let v1 = run(&server, &["resume", "--existing", "--id", "f"]);
    assert_eq!(v1.status.code(), Some(3), "{}", stderr(&v1));

    server.restart();
    let mut conn = server.connection();
    let length: usize = redis::cmd("XLEN")
        .arg("resumable-stream:rs:log:f")
        .query(&mut conn)
        .expect("XLEN");
    assert!(
        length >= 2,
        "the log did not survive the restart ({length} entries)"
    );
    let replay = run(&server, &["resume", "--durable", "--existing", "--id", "f"]);
    assert_eq!(replay.status.code(), Some(0), "{}", stderr(&replay));
    assert_eq!(replay.stdout, text.as_bytes());
    // By chunk position: chunk 10 on.
    let from: String = (10..50).map(|i| format!("{i}·é🚀 ")).collect();
    let tail = run(
        &server,
        &[
            "resume",
            "--durable",
            "--existing",
            "--id",
            "f",
            "--from-chunk",
            "10",
        ],
    );
    assert_eq!(tail.status.code(), Some(0), "{}", stderr(&tail));
    assert_eq!(tail.stdout, from.as_bytes());
    let past = run(
        &server,
        &[
            "resume",
            "--durable",
            "--existing",
            "--id",
            "f",
            "--from-chunk",
            "51",
        ],
    );
    assert_eq!(past.status.code(), Some(1), "{}", stderr(&past));
    assert!(stderr(&past).contains("past its end"), "{}", stderr(&past));
    assert!(past.stdout.is_empty());
}
