//! Test support: a private `redis-server` on a free loopback port, started and stopped
//! by the test itself (as redis-rs's own suite does), and a backend-neutral fixture so
//! that one behaviour suite runs on Redis and on the in-memory backend.

#![allow(dead_code)]

use bytes::Bytes;
use resumable_stream_tokio::{Config, MemoryBackend, ResumableStreamContext};
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A redis-server child process on 127.0.0.1, killed on drop.
pub struct RedisServer {
    child: Child,
    pub port: u16,
    _dir: TempDir,
}

struct TempDir(std::path::PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn free_port() -> u16 {
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

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

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

/// One shared store that several contexts ("server instances") use.
pub enum Fixture {
    Memory(MemoryBackend),
    Redis(RedisServer),
    /// The application's own publisher and subscriber (the deployed libraries'
    /// custom-client shape), here over a store written for the test.
    Custom(custom::Store),
}

impl Fixture {
    pub fn memory() -> Fixture {
        Fixture::Memory(MemoryBackend::new())
    }

    pub fn redis() -> Fixture {
        Fixture::Redis(RedisServer::start())
    }

    pub fn custom() -> Fixture {
        Fixture::Custom(custom::Store::default())
    }

    /// A new context, as another server instance on the same store.
    pub async fn context(&self) -> ResumableStreamContext {
        self.context_with(Config::default()).await
    }

    pub async fn context_with(&self, config: Config) -> ResumableStreamContext {
        let builder = ResumableStreamContext::builder().config(config);
        let builder = match self {
            Fixture::Memory(memory) => builder.memory(memory.clone()),
            Fixture::Redis(server) => builder.redis_url(server.url()),
            Fixture::Custom(store) => {
                builder.publisher_subscriber(store.clone(), store.subscriber())
            }
        };
        builder.build().await.expect("context")
    }

    /// `SET key value`, as an operator would.
    pub fn set(&self, key: &str, value: &str) {
        match self {
            Fixture::Memory(memory) => {
                memory.with_store(|store| store.set_raw(key.to_owned(), value.to_owned()))
            }
            Fixture::Redis(server) => {
                let _: () = redis::cmd("SET")
                    .arg(key)
                    .arg(value)
                    .query(&mut server.connection())
                    .expect("SET");
            }
            Fixture::Custom(store) => store.set_raw(key, value),
        }
    }

    /// `GET key`.
    pub fn get(&self, key: &str) -> Option<Bytes> {
        match self {
            Fixture::Memory(memory) => {
                memory.with_store(|store| store.get_raw(Instant::now(), key.as_bytes()))
            }
            Fixture::Redis(server) => redis::cmd("GET")
                .arg(key)
                .query::<Option<Vec<u8>>>(&mut server.connection())
                .expect("GET")
                .map(Bytes::from),
            Fixture::Custom(store) => store.get_raw(key),
        }
    }

    /// `PUBLISH channel message`; the number of receivers.
    pub fn publish(&self, channel: &str, message: &[u8]) -> i64 {
        match self {
            Fixture::Memory(memory) => memory.publish(channel.to_owned(), message.to_vec()),
            Fixture::Redis(server) => redis::cmd("PUBLISH")
                .arg(channel)
                .arg(message)
                .query(&mut server.connection())
                .expect("PUBLISH"),
            Fixture::Custom(store) => store.publish_raw(channel, message),
        }
    }
}

/// What a test feeds a manual source: a chunk, or the source's error.
pub type Feed = tokio::sync::mpsc::UnboundedSender<Result<String, String>>;

/// A source the test feeds by hand: send `Ok(chunk)`, `Err(message)`, or drop the
/// sender to end it.
pub fn manual_source() -> (
    Feed,
    impl FnOnce() -> futures_util::stream::BoxStream<'static, Result<String, String>> + Send + 'static,
) {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<Result<String, String>>();
    let factory = move || {
        use futures_util::StreamExt;
        futures_util::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|item| (item, rx))
        })
        .boxed()
    };
    (tx, factory)
}

/// A source that yields `chunks` as fast as it is pulled.
pub fn fixed_source(
    chunks: Vec<String>,
) -> impl FnOnce() -> futures_util::stream::Iter<
    std::vec::IntoIter<Result<String, std::convert::Infallible>>,
> + Send
       + 'static {
    move || futures_util::stream::iter(chunks.into_iter().map(Ok).collect::<Vec<_>>())
}

/// Fails a test that would otherwise hang.
pub async fn within<T>(what: &str, future: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(30), future)
        .await
        .unwrap_or_else(|_| panic!("{what} did not finish within 30 s"))
}

/// A minimal store behind the [`Publisher`] and [`Subscriber`] traits, written
/// independently of the crate's own in-memory backend.
pub mod custom {
    use bytes::Bytes;
    use futures_util::future::BoxFuture;
    use resumable_stream_tokio::{Inbox, Publisher, ReplyError, Subscriber};
    use std::collections::HashMap;
    use std::sync::{Arc, Mutex};

    #[derive(Default)]
    struct State {
        keys: HashMap<Bytes, Bytes>,
        /// channel -> (subscriber id, inbox)
        channels: HashMap<Bytes, Vec<(u64, Inbox)>>,
        next_subscriber: u64,
    }

    /// The publisher side; clones share the store.
    #[derive(Clone, Default)]
    pub struct Store(Arc<Mutex<State>>);

    /// One context's subscriber.
    pub struct StoreSubscriber {
        store: Store,
        id: u64,
    }

    impl Store {
        pub fn subscriber(&self) -> StoreSubscriber {
            let mut state = self.0.lock().unwrap();
            state.next_subscriber += 1;
            StoreSubscriber {
                store: self.clone(),
                id: state.next_subscriber,
            }
        }

        pub fn set_raw(&self, key: &str, value: &str) {
            let mut state = self.0.lock().unwrap();
            state.keys.insert(
                Bytes::copy_from_slice(key.as_bytes()),
                Bytes::copy_from_slice(value.as_bytes()),
            );
        }

        pub fn get_raw(&self, key: &str) -> Option<Bytes> {
            self.0.lock().unwrap().keys.get(key.as_bytes()).cloned()
        }

        pub fn publish_raw(&self, channel: &str, message: &[u8]) -> i64 {
            self.deliver(
                Bytes::copy_from_slice(channel.as_bytes()),
                Bytes::copy_from_slice(message),
            )
        }

        fn deliver(&self, channel: Bytes, message: Bytes) -> i64 {
            // Collected under the lock, delivered outside it.
            let inboxes: Vec<Inbox> = {
                let state = self.0.lock().unwrap();
                state
                    .channels
                    .get(&channel)
                    .map(|l| l.iter().map(|(_, inbox)| inbox.clone()).collect())
                    .unwrap_or_default()
            };
            for inbox in &inboxes {
                inbox.deliver(&channel, message.clone());
            }
            inboxes.len() as i64
        }
    }

    impl Publisher for Store {
        fn publish(
            &self,
            channel: Bytes,
            message: Bytes,
        ) -> BoxFuture<'_, Result<i64, ReplyError>> {
            Box::pin(async move { Ok(self.deliver(channel, message)) })
        }

        fn set(
            &self,
            key: Bytes,
            value: Bytes,
            _expire_seconds: u64,
        ) -> BoxFuture<'_, Result<(), ReplyError>> {
            self.0.lock().unwrap().keys.insert(key, value);
            Box::pin(async { Ok(()) })
        }

        fn get(&self, key: Bytes) -> BoxFuture<'_, Result<Option<Bytes>, ReplyError>> {
            let value = self.0.lock().unwrap().keys.get(&key).cloned();
            Box::pin(async move { Ok(value) })
        }

        fn incr(&self, key: Bytes) -> BoxFuture<'_, Result<i64, ReplyError>> {
            let mut state = self.0.lock().unwrap();
            let current = state.keys.get(&key).cloned();
            let result = match current {
                None => Ok(1),
                Some(value) => std::str::from_utf8(&value)
                    .ok()
                    .and_then(|s| s.parse::<i64>().ok())
                    .map(|n| n + 1)
                    .ok_or_else(|| {
                        ReplyError::Server("ERR value is not an integer or out of range".into())
                    }),
            };
            if let Ok(n) = result {
                state.keys.insert(key, Bytes::from(n.to_string()));
            }
            Box::pin(async move { result })
        }
    }

    impl Subscriber for StoreSubscriber {
        fn subscribe(&self, channel: Bytes, inbox: Inbox) -> BoxFuture<'_, Result<(), ReplyError>> {
            let mut state = self.store.0.lock().unwrap();
            let list = state.channels.entry(channel).or_default();
            if !list.iter().any(|(id, _)| *id == self.id) {
                list.push((self.id, inbox));
            }
            Box::pin(async { Ok(()) })
        }

        fn unsubscribe(&self, channel: Bytes) -> BoxFuture<'_, Result<(), ReplyError>> {
            let mut state = self.store.0.lock().unwrap();
            if let Some(list) = state.channels.get_mut(&channel) {
                list.retain(|(id, _)| *id != self.id);
            }
            Box::pin(async { Ok(()) })
        }
    }
}
