//! Cases of the behaviour suite about the user's code and configuration: a source or
//! `make_stream` that panics, a `make_stream` that calls its context or blocks, and
//! the configuration knobs whose effect is observable from outside (the sentinel's
//! TTL, the done watchdog's interval).

use crate::harness::{fixed, manual, Context, Feed, Harness, Reader, Source};
use crate::store::Store;
use crate::suite::{read_all, read_exactly};
use resumable_stream::{Config, Error, Role, StreamState};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

const SENTINEL: &str = "resumable-stream:rs:sentinel:s";

/// Runs `f` on its own thread and returns its result, or fails the test if it takes
/// longer than `bound`: a deadlock fails instead of hanging the suite.
fn within<T: Send + 'static>(
    bound: Duration,
    what: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> T {
    let (done, result) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = done.send(f());
    });
    match result.recv_timeout(bound) {
        Ok(value) => value,
        Err(_) => panic!("{what} did not finish within {bound:?} (a deadlock?)"),
    }
}

fn open(context: &dyn Context, id: &str, source: Source) -> Box<dyn Reader> {
    context
        .resumable_stream(id, source, None)
        .expect("no error")
        .expect("a new stream")
}

/// Stream "s" produced on `a` from a manual source, and resumed on `b`: both readers
/// have read the first chunk, "before ".
fn mid_stream(a: &dyn Context, b: &dyn Context) -> (Feed, Box<dyn Reader>, Box<dyn Reader>) {
    let (feed, source) = manual();
    let mut producer = open(a, "s", source);
    feed.chunk("before ");
    assert_eq!(read_exactly(&mut producer, 7), b"before ");
    let mut resumer = b
        .resumable_stream("s", fixed(Vec::<String>::new()), None)
        .unwrap()
        .unwrap();
    assert_eq!(resumer.role(), Role::Resumer);
    assert_eq!(read_exactly(&mut resumer, 7), b"before ");
    (feed, producer, resumer)
}

fn is_panic_error(error: &Option<Error>, what: &str, message: &str) -> bool {
    matches!(error, Some(Error::Source(text)) if text.message().contains(what) && text.message().contains("panicked") && text.message().contains(message))
}

/// A source that panics mid-stream ends the stream as a source error, for its local
/// reader and for a resumer of ours on another instance, after the chunk before the
/// panic; the stream is done, and the context goes on serving.
pub fn a_panicking_source_ends_the_stream_as_a_source_error(harness: &dyn Harness, store: &Store) {
    let (a, b) = (
        harness.context(store, Config::default()),
        harness.context(store, Config::default()),
    );
    let (feed, producer, resumer) = mid_stream(&*a, &*b);
    feed.panic("the model exploded");
    for reader in [producer, resumer] {
        let (rest, error) = read_all(reader);
        assert_eq!(rest, b"");
        assert!(
            is_panic_error(&error, "the source", "the model exploded"),
            "{error:?}"
        );
    }
    assert_eq!(a.has_existing_stream("s").unwrap(), StreamState::Done);
    // The context is still usable.
    let again = open(&*a, "t", fixed(["still ", "here"]));
    assert_eq!(read_all(again), (b"still here".to_vec(), None));
}

/// A `make_stream` that panics ends its stream as a source error at once; the context
/// goes on serving.
pub fn a_panicking_make_stream_ends_the_stream_as_a_source_error(
    harness: &dyn Harness,
    store: &Store,
) {
    let a = harness.context(store, Config::default());
    let source = fixed(["never"]).after(|| panic!("no model configured"));
    let producer = open(&*a, "s", source);
    assert_eq!(producer.role(), Role::Producer);
    let (bytes, error) = read_all(producer);
    assert_eq!(bytes, b"");
    assert!(
        is_panic_error(&error, "make_stream", "no model configured"),
        "{error:?}"
    );
    assert_eq!(a.has_existing_stream("s").unwrap(), StreamState::Done);
    let again = open(&*a, "t", fixed(["ok"]));
    assert_eq!(read_all(again), (b"ok".to_vec(), None));
}

/// A `make_stream` that calls its own context (`stats`, the one synchronous call on
/// every driver) does not deadlock: user code never runs under the context's lock.
pub fn make_stream_may_call_its_context(harness: &dyn Harness, store: &Store) {
    let a: Arc<dyn Context> = harness.context(store, Config::default()).into();
    let inside = a.clone();
    let (seen, saw) = mpsc::channel();
    let source = fixed(["made"]).after(move || {
        let _ = seen.send(inside.stats().malformed_requests);
    });
    let outer = a.clone();
    let bytes = within(
        Duration::from_secs(20),
        "a re-entrant make_stream",
        move || read_all(open(&*outer, "s", source)),
    );
    assert_eq!(bytes, (b"made".to_vec(), None));
    let malformed = saw
        .recv_timeout(Duration::from_secs(1))
        .expect("make_stream ran");
    assert_eq!(malformed, 0);
}

/// How long `make_stream` blocks in [`a_slow_make_stream_stalls_no_other_stream`].
pub const SLOW_SETUP: Duration = Duration::from_secs(2);

/// The bound on another stream's first chunk while a `make_stream` blocks for
/// [`SLOW_SETUP`]: generous for a loaded 2-core machine (a stream starts in a few
/// milliseconds there), and well short of the stall the lock would cause.
pub const PROMPT_FIRST_CHUNK: Duration = Duration::from_millis(1000);

/// A `make_stream` that blocks for seconds (a slow model client's setup) delays only
/// its own stream: another stream on the same context gets its first chunk promptly.
/// Prints the figure measured.
pub fn a_slow_make_stream_stalls_no_other_stream(harness: &dyn Harness, store: &Store) {
    let a: Arc<dyn Context> = harness.context(store, Config::default()).into();
    let (started, setup_started) = mpsc::channel();
    let slow_source = fixed(["slow"]).after(move || {
        let _ = started.send(());
        std::thread::sleep(SLOW_SETUP);
    });
    let slow_context = a.clone();
    let slow = std::thread::spawn(move || read_all(open(&*slow_context, "slow", slow_source)));
    setup_started
        .recv_timeout(Duration::from_secs(20))
        .expect("the slow make_stream started");
    let begun = Instant::now();
    let mut other = open(&*a, "other", fixed(["quick"]));
    assert_eq!(read_exactly(&mut other, 5), b"quick");
    let waited = begun.elapsed();
    eprintln!(
        "first chunk of another stream while a make_stream blocks for {SLOW_SETUP:?}: {waited:?}"
    );
    assert!(
        waited < PROMPT_FIRST_CHUNK,
        "another stream waited {waited:?} for its first chunk (bound {PROMPT_FIRST_CHUNK:?})"
    );
    assert_eq!(slow.join().unwrap(), (b"slow".to_vec(), None));
}

/// `Config::with_sentinel_ttl` is what the sentinel's expiry says, while the stream
/// runs and after it ended.
pub fn the_sentinel_ttl_is_the_configured_one(harness: &dyn Harness, store: &Store) {
    let ttl = Duration::from_secs(600);
    let a = harness.context(store, Config::default().with_sentinel_ttl(ttl));
    let (feed, source) = manual();
    let mut producer = open(&*a, "s", source);
    feed.chunk("x");
    read_exactly(&mut producer, 1);
    let Some(active) = store.ttl(SENTINEL) else {
        return; // A store that keeps no expiries (the custom one).
    };
    let active = active.expect("the active sentinel expires");
    // Within the second it was set: the default (24 h) would be far above.
    assert!(
        active <= ttl && active > ttl - Duration::from_secs(60),
        "{active:?}"
    );
    drop(feed);
    assert_eq!(read_all(producer), (vec![], None));
    assert_eq!(store.get(SENTINEL).unwrap(), "DONE");
    let done = store
        .ttl(SENTINEL)
        .flatten()
        .expect("the done sentinel expires");
    assert!(
        done <= ttl && done > ttl - Duration::from_secs(60),
        "{done:?}"
    );
}

/// The done watchdog at a short interval: a resumer whose end message never comes
/// (the producer is gone, and the stream was marked done behind its back) ends by the
/// watchdog, two readings of "DONE" in a row, so within about two intervals.
pub fn the_done_watchdog_runs_at_the_configured_interval(harness: &dyn Harness, store: &Store) {
    let interval = Duration::from_millis(500);
    // A v1 resumer (no extensions), so the liveness bound does not end it first.
    let config = Config::default()
        .with_done_watchdog_interval(interval)
        .with_extensions(false);
    let (a, b) = (
        harness.context(store, Config::default()),
        harness.context(store, config),
    );
    let (feed, source) = manual();
    let mut producer = open(&*a, "s", source);
    feed.chunk("data");
    read_exactly(&mut producer, 4);
    let mut resumer = b
        .resumable_stream("s", fixed(Vec::<String>::new()), None)
        .unwrap()
        .unwrap();
    assert_eq!(read_exactly(&mut resumer, 4), b"data");
    // The producer's instance vanishes without a word; someone marks the stream done.
    drop(producer);
    drop(a);
    store.set(SENTINEL, "DONE");
    let begun = Instant::now();
    let ended = resumer.next();
    let waited = begun.elapsed();
    drop(feed);
    assert!(ended.is_none(), "a clean end by the watchdog: {ended:?}");
    // Two readings: between one and two intervals after the DONE appeared, plus the
    // first reading's phase; 4 intervals bound it generously; the default (1 s) would
    // take at least 2 s.
    assert!(
        waited < interval * 4,
        "the watchdog took {waited:?} at {interval:?}"
    );
}

/// A graceful shutdown mid-stream (a server that got SIGTERM) while a second instance
/// on the same store keeps serving: the shutting-down context takes no new request
/// (`Error::ShuttingDown`), lets its stream run to its end, then closes; its reader and
/// the resumer on the other instance get every byte and the end; the stream is done;
/// the other instance still serves new streams.
pub fn a_graceful_shutdown_loses_no_byte(harness: &dyn Harness, store: &Store) {
    let a: Arc<dyn Context> = harness.context(store, Config::default()).into();
    let b = harness.context(store, Config::default());
    let (feed, producer, resumer) = mid_stream(&*a, &*b);

    let shutting = a.clone();
    let begun = Instant::now();
    let deadline = begun + Duration::from_secs(20);
    let shutdown = std::thread::spawn(move || shutting.shutdown(deadline));
    // New requests are refused at once (retried until the shutdown has begun).
    let refused = loop {
        match a.resumable_stream("t", fixed(["x"]), None) {
            Err(error) => break error,
            Ok(reader) => {
                drop(reader);
                assert!(begun.elapsed() < Duration::from_secs(10), "never refused");
                std::thread::sleep(Duration::from_millis(5));
            }
        }
    };
    assert_eq!(refused, Error::ShuttingDown);
    assert!(!shutdown.is_finished(), "the shutdown waits for the stream");
    feed.chunk("during ");
    feed.chunk("the shutdown");
    drop(feed);
    assert_eq!(read_all(producer), (b"during the shutdown".to_vec(), None));
    assert_eq!(read_all(resumer), (b"during the shutdown".to_vec(), None));
    shutdown.join().unwrap();
    assert!(
        begun.elapsed() < Duration::from_secs(20),
        "returned before its deadline"
    );
    assert_eq!(store.get(SENTINEL).unwrap(), "DONE");
    assert_eq!(b.has_existing_stream("s").unwrap(), StreamState::Done);
    let other = open(&*b, "u", fixed(["still served"]));
    assert_eq!(read_all(other), (b"still served".to_vec(), None));
    assert!(matches!(
        a.has_existing_stream("s"),
        Err(Error::Closed | Error::ShuttingDown)
    ));
}

/// A shutdown whose stream outlives its deadline: it returns at the deadline and the
/// context closes; its reader ends with `Error::Closed`.
pub fn a_shutdown_returns_at_its_deadline(harness: &dyn Harness, store: &Store) {
    let a = harness.context(store, Config::default());
    let (_feed, source) = manual();
    let producer = open(&*a, "s", source);
    let begun = Instant::now();
    a.shutdown(begun + Duration::from_millis(300));
    let waited = begun.elapsed();
    assert!(
        waited >= Duration::from_millis(300) && waited < Duration::from_secs(5),
        "{waited:?}"
    );
    assert_eq!(read_all(producer), (vec![], Some(Error::Closed)));
}
