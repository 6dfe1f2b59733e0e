//! What the command-line tool's test files share: the built binary run against a
//! private redis-server, with a bound on every step.

#![allow(dead_code)] // Each test file uses its own part of it.

use resumable_stream_testkit::RedisServer;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_resumable-stream");
/// Nothing a step does should take this long; a step that does fails instead of hanging.
pub const STEP_TIMEOUT: Duration = Duration::from_secs(30);

/// `resumable-stream ARGS --redis URL`, not yet started.
pub fn cli(server: &RedisServer, args: &[&str]) -> Command {
    let mut command = Command::new(BIN);
    command
        .args(args)
        .args(["--redis", &server.url()])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    command
}

/// Waits for a child, killing it (and failing) past the step timeout.
pub fn finish(mut child: Child, what: &str) -> Output {
    let deadline = Instant::now() + STEP_TIMEOUT;
    while child.try_wait().expect("try_wait").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("{what} did not finish within {STEP_TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    child.wait_with_output().expect("output")
}

pub fn run(server: &RedisServer, args: &[&str]) -> Output {
    let child = cli(server, args).spawn().expect("run the CLI");
    finish(child, &args.join(" "))
}

pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}
