//! The managed-Redis cases: TLS (a CA the client trusts, a wrong one refused, the
//! system's roots, a plain URL at a TLS port), a password on the `default` user, and
//! the least-privilege ACL of `docs/managed-redis.md`, read from that file: everything
//! works under a user with exactly that ACL, and with any one of its rules taken away
//! something fails, with a typed error or a refusal in `ACL LOG`, never a hang.

use crate::harness::{fixed, manual, Context, Harness};
use crate::redis_server::RedisServer;
use crate::setup::Setup;
use crate::store::Store;
use crate::suite::{read_all, read_exactly};
use resumable_stream::{Config, Error, ReplyError, StreamState};
use std::time::{Duration, Instant};

/// How long a refused connection may take to say so: the TLS handshake fails at once,
/// so this is all slack (a loaded machine, a cold start).
const REFUSAL_BOUND: Duration = Duration::from_secs(10);

/// Building `setup` fails with a connection error, within [`REFUSAL_BOUND`]; its
/// message.
fn refused(harness: &dyn Harness, setup: Setup) -> String {
    let started = Instant::now();
    let result = harness.build(setup);
    let elapsed = started.elapsed();
    assert!(elapsed < REFUSAL_BOUND, "refused after {elapsed:?}");
    match result {
        Err(Error::Redis {
            command: "CONNECT",
            error: ReplyError::Connection(message),
        }) => message,
        Err(other) => panic!("expected a connection error, got {other:?}"),
        Ok(_) => panic!("the connection was accepted"),
    }
}

/// A client trusting another CA than the server's is refused at `build()` with a
/// typed connection error naming the certificate, at once.
pub fn a_wrong_ca_is_refused_with_a_typed_error(harness: &dyn Harness) {
    let server = RedisServer::start_tls();
    let other = crate::tls::certificates().other_ca_pem.clone();
    let message = refused(
        harness,
        Setup::url(server.url(), Config::default()).trusting(other),
    );
    assert!(message.contains("certificate"), "{message}");
}

/// Without root certificates of its own a client trusts the system's roots, which
/// do not include the test CA: refused as well.
pub fn the_system_roots_do_not_trust_a_private_ca(harness: &dyn Harness) {
    let server = RedisServer::start_tls();
    let message = refused(harness, Setup::url(server.url(), Config::default()));
    assert!(message.contains("certificate"), "{message}");
}

/// `redis://` at a TLS-only port: the server drops the clear-text connection, and
/// the client says so at once, rather than waiting.
pub fn a_plain_url_at_a_tls_port_fails_at_once(harness: &dyn Harness) {
    let server = RedisServer::start_tls();
    let url = server.url().replacen("rediss://", "redis://", 1);
    refused(harness, Setup::url(url, Config::default()));
}

/// Root certificates with a `redis://` URL would go unused, the connection in clear
/// text: a configuration error instead.
pub fn root_certificates_need_a_tls_url(harness: &dyn Harness) {
    let server = RedisServer::start();
    let ca = crate::tls::certificates().ca_pem.clone();
    let result = harness.build(Setup::url(server.url(), Config::default()).trusting(ca));
    assert!(
        matches!(&result, Err(Error::Config(m)) if m.contains("rediss://")),
        "{:?}",
        result.err()
    );
}

/// A wrong password for the `default` user: a typed connection error, at once.
pub fn a_wrong_password_is_a_typed_error(harness: &dyn Harness) {
    let server = RedisServer::start_tls();
    let setup = Setup::url(server.url_as("default", "not-the-token"), Config::default());
    let ca = server.root_certificates().expect("a TLS server");
    refused(harness, setup.trusting(ca));
}

/// The rules of the ACL that `docs/managed-redis.md` documents for `deployment`
/// (`"redis"` or `"cluster"`), as a service user gets them: the line
/// `ACL SETUSER my-service ...` of that deployment, its password replaced by
/// `password`.
pub fn documented_acl(deployment: &str, password: &str) -> Vec<String> {
    const DOC: &str = include_str!("../../../docs/managed-redis.md");
    let lines: Vec<&str> = DOC
        .lines()
        .filter_map(|line| line.trim().strip_prefix("ACL SETUSER my-service "))
        .collect();
    assert_eq!(lines.len(), 2, "docs/managed-redis.md documents two ACLs");
    let line = match deployment {
        "redis" => lines[0],
        "cluster" => lines[1],
        other => panic!("no ACL for {other}"),
    };
    line.split_whitespace()
        .map(|rule| match rule {
            ">PASSWORD" => format!(">{password}"),
            rule => rule.to_owned(),
        })
        .collect()
}

/// The name and password of the service user the ACL cases create.
pub const SERVICE_USER: (&str, &str) = ("my-service", "service-password-42");

/// Creates (or replaces) the service user with `rules` on the node `connection`
/// reaches, and empties `ACL LOG`.
pub fn set_user(connection: &mut redis::Connection, rules: &[String]) {
    let _: () = redis::cmd("ACL")
        .arg("DELUSER")
        .arg(SERVICE_USER.0)
        .query(connection)
        .map(|_: i64| ())
        .expect("ACL DELUSER");
    let _: () = redis::cmd("ACL")
        .arg("SETUSER")
        .arg(SERVICE_USER.0)
        .arg(rules)
        .query(connection)
        .expect("ACL SETUSER");
    let _: () = redis::cmd("ACL")
        .arg("LOG")
        .arg("RESET")
        .query(connection)
        .expect("ACL LOG RESET");
}

/// What the server refused since the last reset, as `ACL LOG` says (its entries'
/// `object`: a command, a key or a channel).
pub fn refusals(connection: &mut redis::Connection) -> Vec<String> {
    let entries: Vec<redis::Value> = redis::cmd("ACL")
        .arg("LOG")
        .query(connection)
        .expect("ACL LOG");
    entries
        .into_iter()
        .map(|entry| {
            let fields: std::collections::HashMap<String, redis::Value> =
                redis::FromRedisValue::from_redis_value(entry).expect("an ACL LOG entry");
            let text = |name: &str| match fields.get(name) {
                Some(redis::Value::BulkString(bytes)) => String::from_utf8_lossy(bytes).into(),
                Some(redis::Value::SimpleString(text)) => text.clone(),
                _ => String::new(),
            };
            format!("{} {}", text("reason"), text("object"))
        })
        .collect()
}

/// A TLS server whose contexts connect as the service user, with `rules`.
pub fn server_as_service(rules: &[String]) -> RedisServer {
    let mut server = RedisServer::start_tls();
    set_user(&mut server.connection(), rules);
    server.as_user(SERVICE_USER.0, SERVICE_USER.1);
    server
}

/// Everything a service does, each command the engine sends at least once: a producer
/// (`SUBSCRIBE` its request channel, `INCR` and `SET` the sentinel), a resumer on
/// another instance (`INCR`, `SUBSCRIBE` its channel, `PUBLISH` a request), chunks
/// and the end (`PUBLISH`, `SET ... DONE`, `UNSUBSCRIBE`), the state (`GET`), an
/// explicit resume of the finished stream, and a cancel. The first error, typed.
pub fn a_service_lifecycle(harness: &dyn Harness, store: &Store) -> Result<(), Error> {
    lifecycle_on(harness, &store.setup(Config::default()), "")
}

/// [`a_service_lifecycle`] on two contexts built with `setup`, its stream ids ending
/// with `tag`.
fn lifecycle_on(harness: &dyn Harness, setup: &Setup, tag: &str) -> Result<(), Error> {
    let (a, b) = (harness.build(setup.clone())?, harness.build(setup.clone())?);
    lifecycle(&*a, &*b, &format!("s{tag}"), &format!("t{tag}"))
}

fn lifecycle(a: &dyn Context, b: &dyn Context, s: &str, t: &str) -> Result<(), Error> {
    let (feed, source) = manual();
    let mut producer = a.resumable_stream(s, source, None)?.expect("a new stream");
    feed.chunk("one ");
    assert_eq!(read_exactly(&mut producer, 4), b"one ");
    let resumer = b
        .resumable_stream(s, fixed(Vec::<String>::new()), None)?
        .expect("an active stream");
    feed.chunk("two");
    drop(feed);
    let (bytes, error) = read_all(resumer);
    if let Some(error) = error {
        return Err(error);
    }
    assert_eq!(bytes, b"one two");
    assert_eq!(read_all(producer), (b"two".to_vec(), None));
    assert_eq!(b.has_existing_stream(s)?, StreamState::Done);
    assert!(matches!(
        b.resume_existing_stream(s, None)?,
        crate::harness::Resumed::Done
    ));
    let (_feed, source) = manual();
    let mut cancelled = a.create_new_resumable_stream(t, source)?;
    b.cancel(t)?;
    match cancelled.next() {
        Some(Err(Error::Cancelled)) => Ok(()),
        Some(Err(error)) => Err(error),
        other => panic!("expected the cancel, got {other:?}"),
    }
}

/// Under a user with exactly the documented ACL (TLS, password), a service's whole
/// lifecycle works, and the server refused nothing (not even what redis-rs sends on
/// connecting and ignores the answer of).
pub fn the_documented_acl_is_enough(harness: &dyn Harness) {
    let rules = documented_acl("redis", SERVICE_USER.1);
    let mut store = Store::Redis(server_as_service(&rules));
    a_service_lifecycle(harness, &store).expect("the documented ACL is enough");
    let server = store.redis_server().expect("a Redis store");
    assert_eq!(refusals(&mut server.connection()), Vec::<String>::new());
}

/// Each rule of the documented ACL is needed: without it the lifecycle ends with a
/// typed error, or the server refused something (`ACL LOG`); never a hang (every read
/// is bounded, and so is the whole run).
pub fn each_rule_of_the_documented_acl_is_needed(harness: &dyn Harness) {
    let rules = documented_acl("redis", SERVICE_USER.1);
    // The user's switches and password are not rights to take away.
    let rights = rules
        .iter()
        .filter(|r| !matches!(r.as_str(), "on" | "resetkeys" | "resetchannels" | "-@all"))
        .filter(|r| !r.starts_with('>'));
    for right in rights {
        let fewer: Vec<String> = rules.iter().filter(|r| *r != right).cloned().collect();
        let mut store = Store::Redis(server_as_service(&fewer));
        let started = Instant::now();
        let outcome = a_service_lifecycle(harness, &store);
        let server = store.redis_server().expect("a Redis store");
        let refused = refusals(&mut server.connection());
        assert!(
            outcome.is_err() || !refused.is_empty(),
            "without {right} everything still worked and nothing was refused"
        );
        if let Err(error) = &outcome {
            assert!(
                matches!(error, Error::Redis { .. } | Error::AckTimeout { .. }),
                "without {right}: {error:?}"
            );
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "without {right} the lifecycle took {:?}",
            started.elapsed()
        );
    }
}

/// The refusal of `command` by the server, as the engine reports it.
fn is_refused(error: &Error, command: &str) -> bool {
    matches!(error, Error::Redis { command: c, error: ReplyError::Server(m) }
        if *c == command && m.starts_with("NOPERM"))
}

/// Without `+publish` a producer still starts, but a resumer's request is refused: the
/// resumer ends at once with that refusal (`Error::Redis` for `PUBLISH`, `NOPERM`), and
/// the server logged it.
pub fn without_publish_a_resumer_fails_with_a_typed_error(harness: &dyn Harness) {
    let rules: Vec<String> = documented_acl("redis", SERVICE_USER.1)
        .into_iter()
        .filter(|r| r != "+publish")
        .collect();
    let mut store = Store::Redis(server_as_service(&rules));
    let (a, b) = (
        harness.context(&store, Config::default()),
        harness.context(&store, Config::default()),
    );
    let (feed, source) = manual();
    let mut producer = a
        .resumable_stream("s", source, None)
        .expect("a producer needs no PUBLISH to start")
        .expect("a new stream");
    feed.chunk("one");
    assert_eq!(read_exactly(&mut producer, 3), b"one");
    let started = Instant::now();
    let error = match b.resumable_stream("s", fixed(Vec::<String>::new()), None) {
        Err(error) => error,
        Ok(Some(resumer)) => read_all(resumer).1.expect("the resumer fails"),
        Ok(None) => panic!("the stream is not done"),
    };
    assert!(is_refused(&error, "PUBLISH"), "{error:?}");
    assert!(started.elapsed() < REFUSAL_BOUND, "{:?}", started.elapsed());
    let server = store.redis_server().expect("a Redis store");
    let refused = refusals(&mut server.connection());
    assert!(
        refused.iter().any(|r| r == "command publish"),
        "{refused:?}"
    );
}

/// On a TLS server whose service user has the documented ACL less the rules `less`
/// picks: the server, a context on it, and the error its first stream (or the call)
/// ends with, within [`REFUSAL_BOUND`].
fn first_stream_without(
    harness: &dyn Harness,
    less: impl Fn(&str) -> bool,
) -> (Store, Box<dyn Context>, Error) {
    let rules: Vec<String> = documented_acl("redis", SERVICE_USER.1)
        .into_iter()
        .filter(|r| !less(r))
        .collect();
    let store = Store::Redis(server_as_service(&rules));
    let a = harness.context(&store, Config::default());
    let started = Instant::now();
    let error = match a.resumable_stream("s", fixed(["one"]), None) {
        Err(error) => error,
        Ok(Some(producer)) => read_all(producer).1.expect("the producer fails"),
        Ok(None) => panic!("a new stream is not done"),
    };
    assert!(started.elapsed() < REFUSAL_BOUND, "{:?}", started.elapsed());
    (store, a, error)
}

/// Without the channel pattern no stream can start: its producer's `SUBSCRIBE` is
/// refused, and the call fails with `Error::Redis` naming it, at once.
pub fn without_the_channel_pattern_a_stream_fails_with_a_typed_error(harness: &dyn Harness) {
    let (_store, _context, error) = first_stream_without(harness, |rule| rule.starts_with('&'));
    assert!(is_refused(&error, "SUBSCRIBE"), "{error:?}");
}

/// Without the key pattern the sentinel cannot be read or written: the first call
/// fails with `Error::Redis` naming the refused command, at once, and so does a
/// state request.
pub fn without_the_key_pattern_a_stream_fails_with_a_typed_error(harness: &dyn Harness) {
    let (_store, context, error) = first_stream_without(harness, |rule| rule.starts_with('~'));
    assert!(
        ["INCR", "SET", "GET"].iter().any(|c| is_refused(&error, c)),
        "{error:?}"
    );
    let state = context.has_existing_stream("s");
    assert!(
        state.as_ref().is_err_and(|e| is_refused(e, "GET")),
        "{state:?}"
    );
}

/// Under a user with exactly the documented cluster ACL, on every node of a TLS
/// cluster, a service's whole lifecycle works with sharded pub/sub and with classic
/// pub/sub, and no node refused anything.
pub fn the_documented_cluster_acl_is_enough(harness: &dyn Harness) {
    let options = crate::redis_cluster::ClusterOptions {
        tls: true,
        ..crate::redis_cluster::ClusterOptions::masters(3)
    };
    let mut cluster = crate::RedisCluster::start_with(options);
    let rules = documented_acl("cluster", SERVICE_USER.1);
    for node in 0..cluster.len() {
        set_user(&mut cluster.connection(node), &rules);
    }
    cluster.as_user(SERVICE_USER.0, SERVICE_USER.1);
    for pubsub in [
        resumable_stream::PubSub::Sharded,
        resumable_stream::PubSub::Classic,
    ] {
        let backend = crate::setup::Backend::Cluster(cluster.urls(), pubsub);
        let setup = Setup::new(Config::default(), backend)
            .trusting(cluster.root_certificates().expect("a TLS cluster"));
        lifecycle_on(harness, &setup, &format!("{pubsub:?}"))
            .unwrap_or_else(|e| panic!("the documented ACL is enough for {pubsub:?}: {e:?}"));
    }
    for node in 0..cluster.len() {
        assert_eq!(
            refusals(&mut cluster.connection(node)),
            Vec::<String>::new(),
            "node {node}"
        );
    }
}
