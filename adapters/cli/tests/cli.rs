//! The command-line tool end to end: the built binary against a private redis-server on
//! a free loopback port, started and killed by the test (the testkit's harness).
//!
//! One test walks a stream's life: none, produced while resumers join the held-open
//! stream with skips, done, produced again (exit 3); then not found (exit 4) and a gone
//! producer (exit 1, "Timeout waiting for ack"). Others: a resume of an id that does not
//! exist (exit 4, with or without `--existing`), a killed producer detected within its
//! liveness bound, and `cancel`. Over TLS (a TLS-only redis-server with a password, as a
//! managed Redis serves): a stream produced with `--cacert` and resumed with the URL in
//! `KV_URL` and the CA in `SSL_CERT_FILE`; an untrusted CA refused at once.

mod support;

use resumable_stream_testkit::RedisServer;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};
use support::{cli, finish, run, stderr, BIN, STEP_TIMEOUT};

const TEXT: &str = "héllo 日本 🚀 done";

fn chunks_file(dir: &Path) -> PathBuf {
    let path = dir.join("chunks.json");
    std::fs::write(&path, r#"["héllo"," ","日本"," ","🚀"," done"]"#).expect("write chunks");
    path
}

#[test]
fn a_stream_from_start_to_done_and_the_error_exits() {
    let server = RedisServer::start();
    let dir = std::env::temp_dir().join(format!("rs-cli-life-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let chunks = chunks_file(&dir);
    let chunks = chunks.to_str().expect("utf-8 path");

    // The URL may come from the environment instead of --redis.
    let none = Command::new(BIN)
        .args(["state", "--id", "s"])
        .env("REDIS_URL", server.url())
        .output()
        .expect("state");
    assert_eq!(none.stdout, b"none\n", "{}", stderr(&none));

    // A producer that holds its source open after the last chunk, so that resumers
    // joining then see the whole content and their skips apply to all of it.
    let mut producer = cli(
        &server,
        &[
            "produce",
            "--id",
            "s",
            "--chunks",
            chunks,
            "--delay-ms",
            "20",
            "--hold-ms",
            "3000",
        ],
    )
    .spawn()
    .expect("produce");
    let mut producer_out = producer.stdout.take().expect("stdout");
    let (tx, rx) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        let mut all = Vec::new();
        let mut buf = [0u8; 256];
        while let Ok(n @ 1..) = producer_out.read(&mut buf) {
            all.extend_from_slice(&buf[..n]);
            let _ = tx.send(all.len());
        }
        all
    });
    let deadline = Instant::now() + STEP_TIMEOUT;
    while rx.recv_timeout(Duration::from_secs(1)).ok() != Some(TEXT.len()) {
        assert!(
            Instant::now() < deadline,
            "the producer never printed the whole text"
        );
    }

    let resumers = [
        (vec!["--skip", "2"], "llo 日本 🚀 done".as_bytes().to_vec()),
        // 10 UTF-16 units end inside "🚀": U+FFFD, then the rest, as Node sends it.
        (vec!["--skip", "10"], b"\xEF\xBF\xBD done".to_vec()),
        (
            vec!["--skip", "10", "--unit", "codepoint"],
            b" done".to_vec(),
        ),
        (
            vec!["--skip", "2", "--existing"],
            "llo 日本 🚀 done".as_bytes().to_vec(),
        ),
    ]
    .map(|(flags, expected)| {
        let mut args = vec!["resume", "--id", "s"];
        args.extend(flags);
        let child = cli(&server, &args).spawn().expect("resume");
        (args.join(" "), child, expected)
    });
    let active = run(&server, &["state", "--id", "s"]);
    assert_eq!(active.stdout, b"active\n", "{}", stderr(&active));
    for (what, child, expected) in resumers {
        let output = finish(child, &what);
        assert!(output.status.success(), "{what}: {}", stderr(&output));
        assert_eq!(output.stdout, expected, "{what}");
    }

    let produced = finish(producer, "produce");
    assert!(produced.status.success(), "{}", stderr(&produced));
    assert_eq!(reader.join().expect("reader"), TEXT.as_bytes());

    let done = run(&server, &["state", "--id", "s"]);
    assert_eq!(done.stdout, b"done\n");

    let again = run(&server, &["produce", "--id", "s", "--chunks", chunks]);
    assert_eq!(again.status.code(), Some(3), "{}", stderr(&again));
    assert!(again.stdout.is_empty());
    assert!(stderr(&again).contains("DONE"));

    let after = run(&server, &["resume", "--id", "s"]);
    assert_eq!(after.status.code(), Some(3), "{}", stderr(&after));

    let missing = run(&server, &["resume", "--existing", "--id", "missing"]);
    assert_eq!(missing.status.code(), Some(4), "{}", stderr(&missing));

    // A sentinel with no producer behind it: the resumer gives up after its ack timeout.
    let set = Command::new("redis-cli")
        .args([
            "-p",
            &server.port.to_string(),
            "SET",
            "resumable-stream:rs:sentinel:x",
            "1",
        ])
        .output()
        .expect("redis-cli");
    assert!(set.status.success());
    let started = Instant::now();
    let gone = run(
        &server,
        &[
            "resume",
            "--existing",
            "--id",
            "x",
            "--ack-timeout-ms",
            "300",
        ],
    );
    assert_eq!(gone.status.code(), Some(1), "{}", stderr(&gone));
    assert!(
        stderr(&gone).contains("Timeout waiting for ack"),
        "{}",
        stderr(&gone)
    );
    assert!(started.elapsed() < Duration::from_millis(300) + Duration::from_secs(2));
}

#[test]
fn usage_errors_exit_2() {
    let output = Command::new(BIN)
        .args(["state", "--id", "s"])
        .env_remove("REDIS_URL")
        .env_remove("KV_URL")
        .output()
        .expect("state");
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr(&output).contains("no Redis URL"));

    let help = Command::new(BIN).arg("--help").output().expect("help");
    let help = String::from_utf8_lossy(&help.stdout);
    for command in ["state", "produce", "resume"] {
        assert!(help.contains(command), "{help}");
    }
}

/// `resume` of an id that does not exist exits 4 (not found) with or without
/// `--existing`; without it, the idempotent call has made the id an empty, finished
/// stream, which stderr says and `state` then shows.
#[test]
fn resume_of_a_missing_id_exits_4() {
    let server = RedisServer::start();
    let existing = run(&server, &["resume", "--existing", "--id", "m"]);
    assert_eq!(existing.status.code(), Some(4), "{}", stderr(&existing));
    assert!(existing.stdout.is_empty());
    assert!(
        stderr(&existing).contains("NOT_FOUND"),
        "{}",
        stderr(&existing)
    );
    let state = run(&server, &["state", "--id", "m"]);
    assert_eq!(state.stdout, b"none\n", "--existing creates nothing");

    let idempotent = run(&server, &["resume", "--id", "m"]);
    assert_eq!(idempotent.status.code(), Some(4), "{}", stderr(&idempotent));
    assert!(idempotent.stdout.is_empty());
    let note = stderr(&idempotent);
    assert!(note.contains("NOT_FOUND"), "{note}");
    assert!(
        note.contains("now holds an empty, finished stream"),
        "{note}"
    );
    let state = run(&server, &["state", "--id", "m"]);
    assert_eq!(state.stdout, b"done\n", "{}", stderr(&state));
    // The id exists now, finished: a second resume finds it done.
    let again = run(&server, &["resume", "--id", "m"]);
    assert_eq!(again.status.code(), Some(3), "{}", stderr(&again));
}

/// A killed producer process: our resumer fails with the typed "gone" error within
/// three heartbeat intervals of the kill (plus slack), where the deployed libraries
/// wait forever.
#[test]
fn a_killed_producer_fails_the_resumer_within_the_liveness_bound() {
    let server = RedisServer::start();
    let dir = std::env::temp_dir().join(format!("rs-cli-kill-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let chunks = chunks_file(&dir);
    let chunks = chunks.to_str().unwrap();
    let mut producer = cli(
        &server,
        &[
            "produce",
            "--id",
            "k",
            "--chunks",
            chunks,
            "--hold-ms",
            "60000",
            "--heartbeat-ms",
            "200",
        ],
    )
    .spawn()
    .expect("producer");
    // Wait until the stream is active.
    let deadline = Instant::now() + STEP_TIMEOUT;
    while String::from_utf8_lossy(&run(&server, &["state", "--id", "k"]).stdout).trim() != "active"
    {
        assert!(Instant::now() < deadline, "the producer never started");
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut resumer = cli(&server, &["resume", "--id", "k", "--existing"])
        .spawn()
        .expect("resumer");
    // Kill only once the resumer is acknowledged and live: it has printed the whole
    // text, which the producer sent at once and now holds open.
    let mut resumer_out = resumer.stdout.take().expect("stdout");
    let printed = std::thread::spawn(move || {
        let mut all = Vec::new();
        let mut buf = [0u8; 256];
        while all.len() < TEXT.len() {
            match resumer_out.read(&mut buf) {
                Ok(n @ 1..) => all.extend_from_slice(&buf[..n]),
                _ => break,
            }
        }
        all
    });
    let deadline = Instant::now() + STEP_TIMEOUT;
    while !printed.is_finished() {
        assert!(
            Instant::now() < deadline,
            "the resumer never printed the text"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(printed.join().expect("reader"), TEXT.as_bytes());
    let killed = Instant::now();
    producer.kill().expect("kill the producer");
    let _ = producer.wait();
    let output = finish(resumer, "resume of a killed producer");
    let waited = killed.elapsed();
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    assert!(stderr(&output).contains("is gone"), "{}", stderr(&output));
    // The liveness window is three 200 ms heartbeats from the last message heard,
    // which came before the kill. The slack covers what follows the window: the
    // resumer's timer firing, its error reaching stdout/stderr and its exit, and this
    // test's 10 ms polling, for debug binaries on a 2-core machine that also runs the
    // other tests' redis-servers and CLI processes in parallel.
    let bound = 3 * Duration::from_millis(200) + Duration::from_millis(1500);
    eprintln!("the resumer exited {waited:?} after the producer's kill");
    assert!(
        waited <= bound,
        "the resumer took {waited:?} after the kill (bound {bound:?})"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// `cancel` stops a stream produced by another process.
#[test]
fn cancel_stops_a_stream_produced_elsewhere() {
    let server = RedisServer::start();
    let dir = std::env::temp_dir().join(format!("rs-cli-cancel-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let chunks = chunks_file(&dir);
    let producer = cli(
        &server,
        &[
            "produce",
            "--id",
            "c",
            "--chunks",
            chunks.to_str().unwrap(),
            "--hold-ms",
            "60000",
        ],
    )
    .spawn()
    .expect("producer");
    let deadline = Instant::now() + STEP_TIMEOUT;
    while String::from_utf8_lossy(&run(&server, &["state", "--id", "c"]).stdout).trim() != "active"
    {
        assert!(Instant::now() < deadline, "the producer never started");
        std::thread::sleep(Duration::from_millis(50));
    }
    let cancelled = run(&server, &["cancel", "--id", "c"]);
    assert_eq!(cancelled.status.code(), Some(0), "{}", stderr(&cancelled));
    assert_eq!(
        String::from_utf8_lossy(&cancelled.stdout).trim(),
        "cancelled"
    );
    // The producer's own reader ends with the typed error: exit 1, not a 60 s hold.
    let produced = finish(producer, "the cancelled producer");
    assert_eq!(produced.status.code(), Some(1), "{}", stderr(&produced));
    assert!(
        stderr(&produced).contains("cancelled"),
        "{}",
        stderr(&produced)
    );
    assert_eq!(
        run(&server, &["cancel", "--id", "c"]).status.code(),
        Some(3)
    );
    assert_eq!(
        run(&server, &["cancel", "--id", "none"]).status.code(),
        Some(4)
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// The CA files of a TLS test, in their own directory: the test CA and the one
/// nobody trusts.
fn ca_files(name: &str) -> (PathBuf, PathBuf) {
    let dir = std::env::temp_dir().join(format!("rs-cli-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let certificates = resumable_stream_testkit::tls::certificates();
    let (ca, other) = (dir.join("ca.pem"), dir.join("other-ca.pem"));
    certificates.write_ca(&ca);
    std::fs::write(&other, &certificates.other_ca_pem).expect("write the other CA");
    (ca, other)
}

/// Over TLS, as on a managed Redis (a TLS-only redis-server, the `default` user's
/// password in a `rediss://` URL): a producer with `--cacert`, a resumer joining it
/// that finds the URL in `KV_URL` and the CA in `SSL_CERT_FILE` (the system roots'
/// override), and the state; the resumer gets the rest byte-exact.
#[test]
fn a_stream_over_rediss() {
    let server = RedisServer::start_tls();
    let (ca, _) = ca_files("tls");
    let dir = ca.parent().expect("a directory").to_path_buf();
    let chunks = chunks_file(&dir);
    let ca = ca.to_str().expect("utf-8 path");
    let producer = cli(
        &server,
        &[
            "produce",
            "--id",
            "s",
            "--chunks",
            chunks.to_str().expect("utf-8 path"),
            "--delay-ms",
            "20",
            "--hold-ms",
            "3000",
            "--cacert",
            ca,
        ],
    )
    .spawn()
    .expect("produce");
    // The producer has started once the stream is active.
    let deadline = Instant::now() + STEP_TIMEOUT;
    loop {
        let state = run(&server, &["state", "--id", "s", "--cacert", ca]);
        assert!(state.status.success(), "{}", stderr(&state));
        if state.stdout == b"active\n" {
            break;
        }
        assert!(Instant::now() < deadline, "the stream never became active");
        std::thread::sleep(Duration::from_millis(20));
    }
    let resumer = Command::new(BIN)
        .args(["resume", "--id", "s", "--skip", "2", "--existing"])
        .env_remove("REDIS_URL")
        .env("KV_URL", server.url())
        .env("SSL_CERT_FILE", ca)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("resume");
    let resumed = finish(resumer, "resume over rediss:// from KV_URL");
    assert!(resumed.status.success(), "{}", stderr(&resumed));
    assert_eq!(resumed.stdout, "llo 日本 🚀 done".as_bytes());
    let produced = finish(producer, "produce over rediss://");
    assert!(produced.status.success(), "{}", stderr(&produced));
    assert_eq!(produced.stdout, TEXT.as_bytes());
    let done = run(&server, &["state", "--id", "s", "--cacert", ca]);
    assert_eq!(done.stdout, b"done\n", "{}", stderr(&done));
    let _ = std::fs::remove_dir_all(dir);
}

/// A CA that did not sign the server's certificate, or none (the system's roots):
/// exit 1 at once, the certificate named on stderr; an unreadable `--cacert`: exit 2.
#[test]
fn an_untrusted_server_is_refused_at_once() {
    let server = RedisServer::start_tls();
    let (ca, other) = ca_files("untrusted");
    for args in [
        vec![
            "state",
            "--id",
            "s",
            "--cacert",
            other.to_str().expect("utf-8"),
        ],
        vec!["state", "--id", "s"],
    ] {
        let started = Instant::now();
        let output = run(&server, &args);
        assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
        assert!(
            stderr(&output).contains("certificate"),
            "{}",
            stderr(&output)
        );
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{:?}",
            started.elapsed()
        );
    }
    let missing = ca.with_file_name("missing.pem");
    let output = run(
        &server,
        &[
            "state",
            "--id",
            "s",
            "--cacert",
            missing.to_str().expect("utf-8"),
        ],
    );
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    let _ = std::fs::remove_dir_all(ca.parent().expect("a directory"));
}

/// A producer process that gets SIGTERM mid-stream (a deploy) finishes its stream
/// before it exits: it prints everything and exits 0, and a resumer in another process
/// gets every byte; the stream is done.
#[test]
fn a_producer_told_to_stop_finishes_its_stream() {
    let server = RedisServer::start();
    let dir = std::env::temp_dir().join(format!("rs-cli-term-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let chunks = chunks_file(&dir);
    let chunks = chunks.to_str().unwrap();
    // Six chunks, 300 ms apart: the signal arrives while most are still to come.
    let producer = cli(
        &server,
        &[
            "produce",
            "--id",
            "t",
            "--chunks",
            chunks,
            "--delay-ms",
            "300",
        ],
    )
    .spawn()
    .expect("producer");
    let deadline = Instant::now() + STEP_TIMEOUT;
    while String::from_utf8_lossy(&run(&server, &["state", "--id", "t"]).stdout).trim() != "active"
    {
        assert!(Instant::now() < deadline, "the producer never started");
        std::thread::sleep(Duration::from_millis(20));
    }
    let resumer = cli(&server, &["resume", "--id", "t", "--existing"])
        .spawn()
        .expect("resumer");
    std::thread::sleep(Duration::from_millis(400));
    let term = Command::new("kill")
        .args(["-TERM", &producer.id().to_string()])
        .status()
        .expect("kill -TERM");
    assert!(term.success());
    let produced = finish(producer, "the producer after SIGTERM");
    assert_eq!(produced.status.code(), Some(0), "{}", stderr(&produced));
    assert!(
        stderr(&produced).contains("SIGTERM"),
        "{}",
        stderr(&produced)
    );
    assert_eq!(produced.stdout, TEXT.as_bytes());
    let resumed = finish(resumer, "the resumer");
    assert_eq!(resumed.status.code(), Some(0), "{}", stderr(&resumed));
    assert_eq!(resumed.stdout, TEXT.as_bytes());
    assert_eq!(run(&server, &["state", "--id", "t"]).stdout, b"done\n");
    let _ = std::fs::remove_dir_all(&dir);
}
