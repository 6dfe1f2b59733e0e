//! The Redis store on a private three-master Redis Cluster (`RedisStore::connect_cluster`,
//! as `serve --redis-cluster`): streams whose keys land on different masters, each
//! stream's metadata hash on its log's master; two routers (as two `serve` processes)
//! appending concurrently to all of them, ordered and exactly once; a long-poll through
//! one woken by an append through the other (a Cluster wait polls); a fork on another
//! master than its source; and a stream made by `resumable_stream` in durable mode whose
//! appends are refused while its lease (in another slot) lives.

mod support;

use std::time::Duration;

use axum::http::StatusCode;
use resumable_stream_durable_streams::{router, Config, RedisStore};
use resumable_stream_testkit::RedisCluster;
use support::{log_key, offset, req, send, PREFIX};

const MASTERS: usize = 3;

async fn app(cluster: &RedisCluster) -> axum::Router {
    let store = RedisStore::connect_cluster(&cluster.urls(), PREFIX)
        .await
        .expect("Redis Cluster store");
    let config = Config {
        long_poll_timeout: Duration::from_secs(5),
        ..Config::default()
    };
    router(store, config)
}

/// The first id `{stem}{n}` whose log key lands on master `node`.
fn id_on(cluster: &RedisCluster, stem: &str, node: usize) -> String {
    (0..10_000)
        .map(|n| format!("{stem}{n}"))
        .find(|id| cluster.node_of(log_key(id).as_bytes()) == node)
        .expect("an id on every master")
}

/// The log as the master owning it holds it: every entry `{after}-{count}`, chunks in
/// order.
fn log_chunks(cluster: &RedisCluster, id: &str) -> Vec<String> {
    let key = log_key(id);
    support::log_chunks(&mut cluster.connection_for(key.as_bytes()), &key)
}

/// Whether master `node` itself holds `key` (a plain connection: a key of another
/// master's slot would be a `MOVED` error, not a 0).
fn holds(cluster: &RedisCluster, node: usize, key: &[u8]) -> bool {
    redis::cmd("EXISTS")
        .arg(key)
        .query::<i64>(&mut cluster.connection(node))
        .expect("EXISTS on the key's own master")
        == 1
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_on_three_masters_shared_by_two_servers_exactly_once() {
    let cluster = RedisCluster::start(MASTERS);
    let (a, b) = (app(&cluster).await, app(&cluster).await);
    let ids: Vec<String> = (0..MASTERS).map(|n| id_on(&cluster, "s", n)).collect();
    let json = [("content-type", "application/json")];
    for id in &ids {
        let (status, _, _) = send(&a, req("PUT", &format!("/v1/stream/{id}"), &json, "")).await;
        assert_eq!(status, StatusCode::CREATED, "{id}");
    }

    // Two idempotent producers per stream, each sending every append twice (through
    // one server, then the other): each lands once, in its producer's order.
    let writer = |id: String, name: &'static str, first: axum::Router, second: axum::Router| async move {
        let uri = format!("/v1/stream/{id}");
        for seq in 0..20u32 {
            let body = format!("\"{name}{seq}\"");
            let seq = seq.to_string();
            let headers = [
                ("content-type", "application/json"),
                ("producer-id", name),
                ("producer-epoch", "0"),
                ("producer-seq", seq.as_str()),
            ];
            let (status, _, _) = send(&first, req("POST", &uri, &headers, &body)).await;
            assert_eq!(status, StatusCode::OK, "{id} {name} {seq}");
            let (status, _, _) = send(&second, req("POST", &uri, &headers, &body)).await;
            assert_eq!(status, StatusCode::NO_CONTENT, "a retry is a duplicate");
        }
    };
    let mut writers = Vec::new();
    for id in &ids {
        writers.push(tokio::spawn(writer(id.clone(), "a", a.clone(), b.clone())));
        writers.push(tokio::spawn(writer(id.clone(), "b", b.clone(), a.clone())));
    }
    for w in writers {
        w.await.expect("writer");
    }

    for (node, id) in ids.iter().enumerate() {
        // The log and its metadata hash on the same master, the one the slot names.
        let key = log_key(id);
        assert!(holds(&cluster, node, key.as_bytes()), "{id}: log on {node}");
        let meta = format!("{{{key}}}:ds");
        assert!(
            holds(&cluster, node, meta.as_bytes()),
            "{id}: meta on {node}"
        );

        let chunks = log_chunks(&cluster, id);
        assert_eq!(chunks.len(), 40, "{id}");
        for name in ["a", "b"] {
            let mine: Vec<&str> = chunks
                .iter()
                .map(String::as_str)
                .filter(|c| c.starts_with(&format!("\"{name}")))
                .collect();
            let expected: Vec<String> = (0..20).map(|i| format!("\"{name}{i}\"")).collect();
            assert_eq!(mine, expected, "{id}");
        }
        // Both servers read the same 40 messages.
        for app in [&a, &b] {
            let (_, headers, body) = send(
                app,
                req("GET", &format!("/v1/stream/{id}?offset=-1"), &[], ""),
            )
            .await;
            let messages: Vec<String> = serde_json::from_slice(&body).expect("JSON array");
            assert_eq!(
                messages,
                chunks
                    .iter()
                    .map(|c| c.trim_matches('"'))
                    .collect::<Vec<_>>()
            );
            assert_eq!(headers["stream-next-offset"], offset(40).as_str());
        }
    }

    // A long-poll through b at the tail of the stream on master 2, woken by an append
    // through a, then one woken by a close.
    let id = &ids[2];
    let poll = |at: u64| {
        let b = b.clone();
        let uri = format!("/v1/stream/{id}?offset={}&live=long-poll", offset(at));
        tokio::spawn(async move { send(&b, req("GET", &uri, &[], "")).await })
    };
    let waiting = poll(40);
    tokio::time::sleep(Duration::from_millis(150)).await;
    let uri = format!("/v1/stream/{id}");
    let (status, _, _) = send(&a, req("POST", &uri, &json, "\"late\"")).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, headers, body) = waiting.await.expect("long-poll");
    assert_eq!(
        (status, body.as_slice()),
        (StatusCode::OK, &b"[\"late\"]"[..])
    );
    assert_eq!(headers["stream-next-offset"], offset(41).as_str());
    let waiting = poll(41);
    tokio::time::sleep(Duration::from_millis(150)).await;
    let closed = [("stream-closed", "true")];
    let (status, _, _) = send(&a, req("POST", &uri, &closed, "")).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, headers, _) = waiting.await.expect("long-poll");
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(headers["stream-closed"], "true");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fork_on_another_master_than_its_source() {
    let cluster = RedisCluster::start(MASTERS);
    let app = app(&cluster).await;
    let source = id_on(&cluster, "source", 0);
    let fork = id_on(&cluster, "fork", 1);
    let text = [("content-type", "text/plain")];
    let (status, _, _) = send(&app, req("PUT", &format!("/v1/stream/{source}"), &text, "")).await;
    assert_eq!(status, StatusCode::CREATED);
    for part in ["one ", "two ", "three "] {
        let (status, _, _) = send(
            &app,
            req("POST", &format!("/v1/stream/{source}"), &text, part),
        )
        .await;
        assert_eq!(status, StatusCode::NO_CONTENT);
    }
    let from = format!("/v1/stream/{source}");
    let at = offset(2);
    let headers = [
        ("content-type", "text/plain"),
        ("stream-forked-from", from.as_str()),
        ("stream-fork-offset", at.as_str()),
    ];
    let (status, _, _) = send(
        &app,
        req("PUT", &format!("/v1/stream/{fork}"), &headers, ""),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, _, _) = send(
        &app,
        req("POST", &format!("/v1/stream/{fork}"), &text, "four"),
    )
    .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert!(holds(&cluster, 1, log_key(&fork).as_bytes()));
    assert_eq!(log_chunks(&cluster, &fork), ["one ", "two ", "four"]);
    let (_, _, body) = send(
        &app,
        req("GET", &format!("/v1/stream/{fork}?offset=-1"), &[], ""),
    )
    .await;
    assert_eq!(body, b"one two four");
    let (_, _, body) = send(
        &app,
        req("GET", &format!("/v1/stream/{source}?offset=-1"), &[], ""),
    )
    .await;
    assert_eq!(body, b"one two three ");

    // The source deleted while forked: soft-deleted (410), the fork still reads; the
    // fork deleted: the source goes with it.
    let (status, _, _) = send(
        &app,
        req("DELETE", &format!("/v1/stream/{source}"), &[], ""),
    )
    .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _, _) = send(
        &app,
        req("GET", &format!("/v1/stream/{source}?offset=-1"), &[], ""),
    )
    .await;
    assert_eq!(status, StatusCode::GONE);
    let (_, _, body) = send(
        &app,
        req("GET", &format!("/v1/stream/{fork}?offset=-1"), &[], ""),
    )
    .await;
    assert_eq!(body, b"one two four");
    let (status, _, _) = send(&app, req("DELETE", &format!("/v1/stream/{fork}"), &[], "")).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert!(!holds(&cluster, 0, log_key(&source).as_bytes()), "cascade");
    let (status, _, _) = send(
        &app,
        req("GET", &format!("/v1/stream/{source}?offset=-1"), &[], ""),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_producers_log_refuses_appends_while_its_lease_lives() {
    let cluster = RedisCluster::start(MASTERS);
    let app = app(&cluster).await;
    // A log as a resumable_stream producer in durable mode leaves it (no metadata
    // hash), its lease in another slot, on another master.
    let id = (0..10_000)
        .map(|n| format!("talk{n}"))
        .find(|id| {
            let lease = format!("{PREFIX}:rs:lease:{id}");
            cluster.node_of(log_key(id).as_bytes()) != cluster.node_of(lease.as_bytes())
        })
        .expect("an id whose lease is on another master");
    let key = log_key(&id);
    let lease = format!("{PREFIX}:rs:lease:{id}");
    let _: () = redis::cmd("SET")
        .arg(&lease)
        .arg("producer")
        .arg("PX")
        .arg(60_000)
        .query(&mut cluster.connection_for(lease.as_bytes()))
        .expect("SET lease");
    let _: String = redis::cmd("XADD")
        .arg(&key)
        .arg("2-2")
        .arg("d")
        .arg("c0 ")
        .arg("d")
        .arg("c1 ")
        .query(&mut cluster.connection_for(key.as_bytes()))
        .expect("XADD");
    let uri = format!("/v1/stream/{id}");
    let (status, headers, body) =
        send(&app, req("GET", &format!("{uri}?offset=-1"), &[], "")).await;
    assert_eq!((status, body.as_slice()), (StatusCode::OK, &b"c0 c1 "[..]));
    assert_eq!(headers["stream-next-offset"], offset(2).as_str());
    let octets = [("content-type", "application/octet-stream")];
    let (status, _, reason) = send(&app, req("POST", &uri, &octets, "intruder")).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert!(
        String::from_utf8_lossy(&reason).contains("lease"),
        "{reason:?}"
    );
    assert_eq!(
        log_chunks(&cluster, &id),
        ["c0 ", "c1 "],
        "nothing appended"
    );
}
