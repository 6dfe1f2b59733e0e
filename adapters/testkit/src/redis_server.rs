//! A private `redis-server` on a free loopback port, started and stopped by the test
//! itself (as redis-rs's own suite does): never a shared server, never a mock. It may
//! serve TLS only, with a password on the `default` user, as a managed Redis does
//! (Upstash, Vercel KV: `rediss://default:TOKEN@host:port`), and hand its contexts the
//! URL of a user with fewer rights than the test's own connections.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A redis-server child process on 127.0.0.1, killed on drop.
pub struct RedisServer {
    child: Child,
    /// The port it listens on, on 127.0.0.1.
    pub port: u16,
    options: ServerOptions,
    /// Whose URL [`url`](RedisServer::url) gives: (user, password); the test's own
    /// connections stay the `default` user's.
    user: Option<(String, String)>,
    dir: TempDir,
}

/// How a [`RedisServer`] serves.
#[derive(Clone, Debug, Default)]
pub struct ServerOptions {
    /// TLS only (`--port 0 --tls-port`), with the test CA's certificate
    /// ([`crate::tls::certificates`]).
    pub tls: bool,
    /// The `default` user's password (`--requirepass`).
    pub password: Option<String>,
    /// Persist every write to an append-only file, fsynced at once (`--appendonly yes
    /// --appendfsync always`): a [`restart`](RedisServer::restart) then reloads it.
    pub appendonly: bool,
}

/// The password of the `default` user of a managed-Redis-like server, as Upstash and
/// Vercel KV hand out a token.
pub const TOKEN: &str = "test-token-0123456789";

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
        Self::start_with(port, ServerOptions::default())
    }

    /// Starts a server as a managed Redis serves: TLS only, the `default` user's
    /// password [`TOKEN`].
    pub fn start_tls() -> RedisServer {
        let options = ServerOptions {
            tls: true,
            password: Some(TOKEN.to_owned()),
            appendonly: false,
        };
        Self::start_with(free_port(), options)
    }

    /// Starts a server on `port`, serving as `options` say.
    pub fn start_with(port: u16, options: ServerOptions) -> RedisServer {
        let dir = std::env::temp_dir().join(format!("rs-test-redis-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let child = spawn(&dir, port, &options);
        let server = RedisServer {
            child,
            port,
            options,
            user: None,
            dir: TempDir(dir),
        };
        server.wait_until_up();
        server
    }

    fn wait_until_up(&self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(mut conn) = self.try_connection() {
                if redis::cmd("PING").query::<String>(&mut conn).is_ok() {
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "redis-server did not start on port {}",
                self.port
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kills the server (SIGKILL) and starts it again on its port, as it served: empty,
    /// unless it keeps an append-only file ([`ServerOptions::appendonly`]), which it
    /// then reloads; the user [`as_user`](Self::as_user) made is gone with the rest.
    pub fn restart(&mut self) {
        self.kill();
        self.child = spawn(&self.dir.0, self.port, &self.options);
        self.wait_until_up();
    }

    /// Whether it serves TLS only.
    pub fn tls(&self) -> bool {
        self.options.tls
    }

    /// From now on [`url`](Self::url) names `user` (which the test created, with
    /// `ACL SETUSER`) and its `password`; the test's own connections stay `default`'s.
    pub fn as_user(&mut self, user: &str, password: &str) {
        self.user = Some((user.to_owned(), password.to_owned()));
    }

    /// The URL a context connects to: `redis://127.0.0.1:{port}/`, or
    /// `rediss://default:TOKEN@127.0.0.1:{port}/` for TLS with a password (the shape
    /// Vercel KV and Upstash hand out), naming the user [`as_user`](Self::as_user) set.
    pub fn url(&self) -> String {
        match &self.user {
            Some((user, password)) => self.url_as(user, password),
            None => self.admin_url(),
        }
    }

    /// The URL of `user` with `password`.
    pub fn url_as(&self, user: &str, password: &str) -> String {
        format!(
            "{}://{user}:{password}@127.0.0.1:{}/",
            self.scheme(),
            self.port
        )
    }

    fn scheme(&self) -> &'static str {
        if self.options.tls {
            "rediss"
        } else {
            "redis"
        }
    }

    /// The URL of the test's own connections (the `default` user).
    fn admin_url(&self) -> String {
        match &self.options.password {
            Some(password) => self.url_as("default", password),
            None => format!("{}://127.0.0.1:{}/", self.scheme(), self.port),
        }
    }

    /// The root certificates a client must trust to reach it: the test CA, for TLS.
    pub fn root_certificates(&self) -> Option<Vec<u8>> {
        self.options
            .tls
            .then(|| crate::tls::certificates().ca_pem.clone().into_bytes())
    }

    fn try_connection(&self) -> redis::RedisResult<redis::Connection> {
        let client = if self.options.tls {
            crate::tls::certificates().client(&self.admin_url())?
        } else {
            redis::Client::open(self.admin_url())?
        };
        client.get_connection_with_timeout(Duration::from_secs(5))
    }

    /// A synchronous redis-rs connection of the `default` user, for raw commands.
    pub fn connection(&self) -> redis::Connection {
        self.try_connection()
            .expect("connect to the test redis-server")
    }

    /// Kills the server at once (SIGKILL), as a crash would.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `redis-server` on `port`, its files in `dir`.
fn spawn(dir: &std::path::Path, port: u16, options: &ServerOptions) -> Child {
    let mut command = Command::new("redis-server");
    if options.tls {
        command.args(crate::tls::certificates().server_args(dir, port));
    } else {
        command.args(["--port", &port.to_string()]);
    }
    if let Some(password) = &options.password {
        command.args(["--requirepass", password]);
    }
    let appendonly: &[&str] = if options.appendonly {
        &["--appendonly", "yes", "--appendfsync", "always"]
    } else {
        &["--appendonly", "no"]
    };
    command
        .args(["--bind", "127.0.0.1", "--save", ""])
        .args(appendonly)
        .arg("--dir")
        .arg(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("redis-server must be installed (the test command in README.md installs it)")
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}
