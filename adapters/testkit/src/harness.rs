//! What a driver implements to run the suite: its API, seen through one blocking shape.
//! An async driver blocks on its runtime; the blocking driver is that shape already.

use crate::setup::Setup;
use crate::store::Store;
use async_channel::{Receiver, Sender};
use bytes::Bytes;
use resumable_stream::{Config, Error, Position, Role, Stats, StreamState};
use resumable_stream_driver::Cancelled;

/// A source for a producer: chunks fed by the test, or a fixed list, possibly behind
/// a `make_stream` that does something first.
pub enum Source {
    /// Items the test sends through a [`Feed`]; the source ends when the feed is dropped.
    Manual(Receiver<Item>),
    /// These chunks, as fast as they are pulled.
    Fixed(Vec<String>),
    /// `make_stream` runs `setup` (which may block, panic, or call the context), then
    /// returns the source `then`.
    Setup {
        /// What `make_stream` does before it returns the source.
        setup: Box<dyn FnOnce() + Send>,
        /// The source it returns.
        then: Box<Source>,
    },
}

/// One item of a manual source.
pub enum Item {
    /// The next chunk.
    Chunk(String),
    /// The source yields an error with this message.
    Fail(String),
    /// The source panics with this message when pulled.
    Panic(String),
}

impl Source {
    /// This source behind a `make_stream` that runs `setup` first.
    pub fn after(self, setup: impl FnOnce() + Send + 'static) -> Source {
        Source::Setup {
            setup: Box::new(setup),
            then: Box::new(self),
        }
    }

    /// What a driver's `make_stream` does with this source: runs the setups, then
    /// returns what to pull.
    pub fn make(self) -> Made {
        match self {
            Source::Setup { setup, then } => {
                setup();
                then.make()
            }
            Source::Manual(feed) => Made::Manual(feed),
            Source::Fixed(chunks) => Made::Fixed(chunks),
        }
    }
}

/// A [`Source`] once made: what the producer pulls.
pub enum Made {
    /// Items the test sends through a [`Feed`].
    Manual(Receiver<Item>),
    /// These chunks.
    Fixed(Vec<String>),
}

/// The test's end of a manual source.
pub struct Feed(Sender<Item>);

impl Feed {
    /// The next chunk.
    pub fn chunk(&self, chunk: impl Into<String>) {
        let _ = self.0.try_send(Item::Chunk(chunk.into()));
    }

    /// The source fails with `message`.
    pub fn fail(&self, message: impl Into<String>) {
        let _ = self.0.try_send(Item::Fail(message.into()));
    }

    /// The source panics with `message` when next pulled.
    pub fn panic(&self, message: impl Into<String>) {
        let _ = self.0.try_send(Item::Panic(message.into()));
    }
}

/// A source the test feeds by hand.
pub fn manual() -> (Feed, Source) {
    let (tx, rx) = async_channel::unbounded();
    (Feed(tx), Source::Manual(rx))
}

/// A source of `chunks`.
pub fn fixed<S: Into<String>>(chunks: impl IntoIterator<Item = S>) -> Source {
    Source::Fixed(chunks.into_iter().map(Into::into).collect())
}

/// What `resume_existing_stream` answered.
pub enum Resumed {
    /// A stream to read.
    Stream(Box<dyn Reader>),
    /// Already finished.
    Done,
    /// No such stream.
    NotFound,
}

/// One reader: the next item, waiting at most `within` (a test that would hang fails).
pub trait Reader: Send {
    /// Producer or resumer.
    fn role(&self) -> Role;
    /// The next chunk, the end (`None`) or an error.
    ///
    /// # Panics
    /// When nothing arrives within 30 s.
    fn next(&mut self) -> Option<Result<Bytes, Error>>;
    /// The chunk position after what was read (see `chunk_position` of the drivers).
    fn chunk_position(&self) -> Option<u64>;
}

/// One context (server instance) of the driver under test.
pub trait Context: Send + Sync {
    /// `resumable_stream`.
    fn resumable_stream(
        &self,
        id: &str,
        source: Source,
        skip: Option<u64>,
    ) -> Result<Option<Box<dyn Reader>>, Error> {
        self.resumable_stream_at(id, source, Position::from_skip(skip))
    }
    /// `resumable_stream_at`.
    fn resumable_stream_at(
        &self,
        id: &str,
        source: Source,
        position: Position,
    ) -> Result<Option<Box<dyn Reader>>, Error>;
    /// `cancel`.
    fn cancel(&self, id: &str) -> Result<Cancelled, Error>;
    /// `create_new_resumable_stream`.
    fn create_new_resumable_stream(
        &self,
        id: &str,
        source: Source,
    ) -> Result<Box<dyn Reader>, Error>;
    /// `resume_existing_stream`.
    fn resume_existing_stream(&self, id: &str, skip: Option<u64>) -> Result<Resumed, Error>;
    /// `has_existing_stream`.
    fn has_existing_stream(&self, id: &str) -> Result<StreamState, Error>;
    /// The engine's counters.
    fn stats(&self) -> Stats;
    /// `shutdown(deadline)`: returns once it has.
    fn shutdown(&self, deadline: std::time::Instant);
}

/// A driver under test.
pub trait Harness: Send + Sync {
    /// A context built as `setup` says, through the driver's builder; `Err` when
    /// `build()` fails.
    fn build(&self, setup: Setup) -> Result<Box<dyn Context>, Error>;

    /// A new context on `store`, as one more server instance.
    fn context(&self, store: &Store, config: Config) -> Box<dyn Context> {
        self.build(store.setup(config)).expect("a context")
    }

    /// A context on Redis at `url` (for fault tests); `Err` when it cannot connect.
    fn redis_context(&self, url: &str, config: Config) -> Result<Box<dyn Context>, Error> {
        self.build(Setup::url(url, config))
    }
}
