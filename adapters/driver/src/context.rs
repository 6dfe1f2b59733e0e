//! The context, written once for every driver: one engine (behind the hub), its
//! transport and loops, and the five requests, each answering a [`Request`] typed by
//! what it asks. The async drivers await a request; the blocking driver waits for it
//! on the thread. A driver adds only how its user's source is pulled (a
//! [`Starter`](crate::hub::Starter)) and the names its users see.

use crate::hub::{Hub, Starter, Waiter};
use crate::reader::Reader;
use crate::request::{Cancelled, Request, Resumed};
use crate::runtime::{start_loops, Runtime};
use crate::transport::{Inbox, Transport};
use resumable_stream::{Config, Engine, Position, Stats, StreamState};
use std::sync::Arc;

/// One engine, its connections and loops: the object a server keeps, whatever the
/// driver.
///
/// Cheap to clone; every clone shares the engine and connections. Dropping the last
/// clone closes the connections; streams still being read then end with
/// [`Error::Closed`](resumable_stream::Error::Closed).
#[derive(Clone)]
pub struct Context {
    inner: Arc<ContextInner>,
}

struct ContextInner {
    hub: Hub,
    runtime: Arc<dyn Runtime>,
}

impl Drop for ContextInner {
    fn drop(&mut self) {
        // Ends every queue, so every loop of this context returns and drops its
        // connection.
        self.hub.close();
    }
}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context").finish_non_exhaustive()
    }
}

impl Context {
    /// A context on `transport`, its loops running on `runtime`.
    pub(crate) fn start(
        config: Config,
        transport: Arc<dyn Transport>,
        runtime: Arc<dyn Runtime>,
    ) -> Context {
        let (hub, queues) = Hub::new(engine_for(config));
        transport.attach(Inbox::for_hub(&hub));
        start_loops(&hub, queues, transport, &runtime);
        Context {
            inner: Arc::new(ContextInner { hub, runtime }),
        }
    }

    /// The runtime the context's loops run on (a task starter spawns there).
    pub fn runtime(&self) -> &Arc<dyn Runtime> {
        &self.inner.runtime
    }

    fn hub(&self) -> &Hub {
        &self.inner.hub
    }

    /// Creates the stream `stream_id`, or resumes it at `position` if it exists: the
    /// deployed libraries' idempotent `resumableStream`. `starter` starts the source
    /// if this caller becomes the producer. `None` when the stream already finished.
    pub fn resumable_stream(
        &self,
        stream_id: &str,
        position: Position,
        starter: Starter,
    ) -> Request<Option<Reader>> {
        self.hub().request(
            |engine| engine.resumable_stream(stream_id, position),
            |answer| Waiter::Open { answer, starter },
        )
    }

    /// Creates the stream `stream_id` unconditionally and produces it from `starter`.
    pub fn create_new_resumable_stream(
        &self,
        stream_id: &str,
        starter: Starter,
    ) -> Request<Reader> {
        self.hub().request(
            |engine| engine.create_new_resumable_stream(stream_id),
            |answer| Waiter::Create { answer, starter },
        )
    }

    /// Resumes the existing stream `stream_id` at `position`.
    pub fn resume_existing_stream(
        &self,
        stream_id: &str,
        position: Position,
    ) -> Request<Resumed<Reader>> {
        self.hub().request(
            |engine| engine.resume_existing_stream(stream_id, position),
            Waiter::Resume,
        )
    }

    /// Whether the stream `stream_id` exists: none, active or done.
    pub fn has_existing_stream(&self, stream_id: &str) -> Request<StreamState> {
        self.hub().request(
            |engine| engine.has_existing_stream(stream_id),
            Waiter::State,
        )
    }

    /// Stops the stream `stream_id` wherever it is produced, if its producer is ours.
    pub fn cancel(&self, stream_id: &str) -> Request<Cancelled> {
        self.hub()
            .request(|engine| engine.cancel(stream_id), Waiter::Cancel)
    }

    /// Records `stream_id` as `owner`'s active stream (a chat's, a job's), for
    /// [`active_stream`](Self::active_stream) to find from any instance: in the same
    /// Redis (or memory), under the key prefix, with the sentinels' TTL. Resolves to
    /// `Some(stream_id)`.
    pub fn set_active_stream(&self, owner: &str, stream_id: &str) -> Request<Option<String>> {
        self.hub().request(
            |engine| engine.set_active_stream(owner, stream_id),
            Waiter::Active,
        )
    }

    /// `owner`'s active stream, as last recorded by
    /// [`set_active_stream`](Self::set_active_stream); `None` if none is (or it
    /// expired).
    pub fn active_stream(&self, owner: &str) -> Request<Option<String>> {
        self.hub()
            .request(|engine| engine.active_stream(owner), Waiter::Active)
    }

    /// Shuts the context down gracefully: at once it takes no new request (they fail
    /// with [`Error::ShuttingDown`](resumable_stream::Error::ShuttingDown)); the
    /// streams it produces run to their end, their readers and listeners served; the
    /// returned future resolves when none is left, or at `deadline`, whichever comes
    /// first. Then the context closes (as when its last clone is dropped): readers
    /// still open end with `Error::Closed`. The Rust counterpart of Vercel's
    /// `waitUntil`: call it on SIGTERM, while other instances serve new streams.
    pub fn shutdown(
        &self,
        deadline: std::time::Instant,
    ) -> impl std::future::Future<Output = ()> + Send + 'static {
        let drained = self.hub().shut_down();
        let sleep = self.inner.runtime.sleep_until(deadline);
        let hub = self.hub().clone();
        async move {
            let drained = std::pin::pin!(drained.recv());
            futures_util::future::select(drained, sleep).await;
            hub.close();
        }
    }

    /// [`shutdown`](Self::shutdown), waiting on the thread.
    pub fn shutdown_blocking(&self, deadline: std::time::Instant) {
        let drained = self.hub().shut_down();
        let _ = drained.recv_deadline(deadline);
        self.hub().close();
    }

    /// Counters of the inputs the engine dropped (malformed requests, stray messages).
    pub fn stats(&self) -> Stats {
        self.hub().with_engine(|engine| engine.stats())
    }
}

/// The engine of a new context: `config`, its listener-id seed mixed with entropy.
fn engine_for(config: Config) -> Engine {
    let seed = config.seed() ^ entropy();
    Engine::new(config.with_seed(seed))
}

/// A seed for listener ids from the standard library's per-process random keys, mixed
/// into the configured one so that two processes never share a sequence.
fn entropy() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    hasher.write_u128(nanos);
    hasher.finish()
}
