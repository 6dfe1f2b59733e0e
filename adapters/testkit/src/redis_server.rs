//! A private `redis-server` on a free loopback port, started and stopped by the test
//! itself (as redis-rs's own suite does): never a shared server, never a mock.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A redis-server child process on 127.0.0.1, killed on drop.
pub struct RedisServer {
    child: Child,
    /// The port it listens on, on 127.0.0.1.
    pub port: u16,
    _dir: TempDir,
}

struct TempDir(std::path::PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A loopback port nobody listens on right now, and that no live test cluster keeps for
/// a node it may restart (see `redis_cluster`).
pub fn free_port() -> u16 {
    loop {
        let port = ephemeral_port();
        if !crate::redis_cluster::is_reserved(port) {
            return port;
        }
    }
}

/// A loopback port nobody listens on right now.
pub(crate) fn ephemeral_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    listener.local_addr().expect("local address").port()
}

impl RedisServer {
    /// Starts a server; panics with a clear message if `redis-server` is not installed.
    pub fn start() -> RedisServer {
        Self::start_on(free_port())
    }

    /// Starts a server on `port` (to restart one where it was).
    pub fn start_on(port: u16) -> RedisServer {
        let dir = std::env::temp_dir().join(format!("rs-test-redis-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let child = Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .arg("--dir")
            .arg(&dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server must be installed (the test command in README.md installs it)");
        let server = RedisServer {
            child,
            port,
            _dir: TempDir(dir),
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(mut conn) = redis::Client::open(server.url()).and_then(|c| c.get_connection())
            {
                if redis::cmd("PING").query::<String>(&mut conn).is_ok() {
                    return server;
                }
            }
            assert!(
                Instant::now() < deadline,
                "redis-server did not start on port {port}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `redis://127.0.0.1:{port}/`
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// A synchronous redis-rs connection, for raw commands.
    pub fn connection(&self) -> redis::Connection {
        redis::Client::open(self.url())
            .and_then(|c| c.get_connection())
            .expect("connect to the test redis-server")
    }

    /// Kills the server at once (SIGKILL), as a crash would.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}
