//! The shared behaviour suite (resumable-stream-testkit) on the blocking driver:
//! against a private redis-server and the in-memory backend, plus the Redis fault and
//! wire-capture cases.

use bytes::Bytes;
use resumable_stream::{Config, Error, Position, Role, Stats, StreamState};
use resumable_stream_blocking::{Cancelled, ResumableStream, ResumableStreamContext, Resumed};
use resumable_stream_testkit::{harness, Harness, Item, Made, Setup, Source, Store};
use std::time::Duration;

/// The blocking driver: its API already has the suite's shape.
struct Blocking;

struct Context(ResumableStreamContext);

struct Reader(ResumableStream);

impl harness::Reader for Reader {
    fn role(&self) -> Role {
        self.0.role()
    }

    fn chunk_position(&self) -> Option<u64> {
        self.0.chunk_position()
    }

    fn next(&mut self) -> Option<Result<Bytes, Error>> {
        self.0
            .next_timeout(Duration::from_secs(30))
            .expect("nothing arrived within 30 s")
    }
}

type Items = Box<dyn Iterator<Item = Result<String, String>> + Send>;

fn items(source: Source) -> impl FnOnce() -> Items + Send + 'static {
    move || match source.make() {
        Made::Manual(feed) => Box::new(std::iter::from_fn(move || {
            Some(match feed.recv_blocking().ok()? {
                Item::Chunk(chunk) => Ok(chunk),
                Item::Fail(message) => Err(message),
                Item::Panic(message) => panic!("{message}"),
            })
        })),
        Made::Fixed(list) => Box::new(list.into_iter().map(Ok)),
    }
}

fn reader(stream: ResumableStream) -> Box<dyn harness::Reader> {
    Box::new(Reader(stream))
}

impl harness::Context for Context {
    fn resumable_stream_at(
        &self,
        id: &str,
        source: Source,
        position: Position,
    ) -> Result<Option<Box<dyn harness::Reader>>, Error> {
        Ok(self
            .0
            .resumable_stream(id, items(source), position)?
            .map(reader))
    }

    fn cancel(&self, id: &str) -> Result<Cancelled, Error> {
        self.0.cancel(id)
    }

    fn create_new_resumable_stream(
        &self,
        id: &str,
        source: Source,
    ) -> Result<Box<dyn harness::Reader>, Error> {
        Ok(reader(
            self.0.create_new_resumable_stream(id, items(source))?,
        ))
    }

    fn resume_existing_stream(
        &self,
        id: &str,
        skip: Option<u64>,
    ) -> Result<harness::Resumed, Error> {
        Ok(match self.0.resume_existing_stream(id, skip)? {
            Resumed::Stream(stream) => harness::Resumed::Stream(reader(stream)),
            Resumed::Done => harness::Resumed::Done,
            Resumed::NotFound => harness::Resumed::NotFound,
            _ => panic!("an answer the suite does not know"),
        })
    }

    fn has_existing_stream(&self, id: &str) -> Result<StreamState, Error> {
        self.0.has_existing_stream(id)
    }

    fn stats(&self) -> Stats {
        self.0.stats()
    }

    fn shutdown(&self, deadline: std::time::Instant) {
        self.0.shutdown(deadline);
    }
}

impl Harness for Blocking {
    fn build(&self, setup: Setup) -> Result<Box<dyn harness::Context>, Error> {
        let context = setup.apply(ResumableStreamContext::builder()).build()?;
        Ok(Box::new(Context(context)))
    }
}

resumable_stream_testkit::behaviour_suite!(super::Blocking; memory, redis, custom);
resumable_stream_testkit::cluster_suite!(super::Blocking);

#[test]
fn in_memory_contexts_need_no_redis() {
    let context = ResumableStreamContext::in_memory();
    let stream = context
        .resumable_stream("s", || [Ok::<_, Error>("a"), Ok("b")], None)
        .unwrap()
        .unwrap();
    let bytes: Vec<Bytes> = stream.map(Result::unwrap).collect();
    assert_eq!(bytes.concat(), b"ab");
}

#[test]
fn a_large_catch_up_arrives_whole() {
    // A message larger than a socket buffer arrives whole.
    let store = Store::redis();
    let (a, b) = (
        Blocking.context(&store, Config::default()),
        Blocking.context(&store, Config::default()),
    );
    let chunk = "0123456789abcdef".repeat(64 * 1024);
    let (feed, source) = resumable_stream_testkit::manual();
    let mut producer = a.resumable_stream("big", source, None).unwrap().unwrap();
    feed.chunk(chunk.clone());
    resumable_stream_testkit::suite::read_exactly(&mut producer, chunk.len());
    let resumer = b
        .resumable_stream(
            "big",
            resumable_stream_testkit::fixed(Vec::<String>::new()),
            None,
        )
        .unwrap()
        .unwrap();
    drop(feed);
    assert!(resumable_stream_testkit::suite::read_all(resumer) == (chunk.into_bytes(), None));
}

#[test]
fn connecting_to_no_cluster_is_a_typed_error() {
    let url = format!(
        "redis://127.0.0.1:{}/",
        resumable_stream_testkit::redis_server::free_port()
    );
    let result = ResumableStreamContext::builder()
        .redis_cluster([url])
        .build();
    assert!(
        matches!(
            result,
            Err(Error::Redis {
                command: "CONNECT",
                ..
            })
        ),
        "{result:?}"
    );
}
