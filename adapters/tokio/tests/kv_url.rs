//! `from_env()` with a `KV_URL` in the shape Vercel KV and Upstash hand out
//! (`rediss://default:TOKEN@host:port`), against a redis-server serving TLS only with
//! that password on its `default` user. One test in its own process: it sets the
//! environment, which no other test may see changing.

use futures_util::StreamExt;
use resumable_stream::Error;
use resumable_stream_testkit::RedisServer;
use resumable_stream_tokio::ResumableStreamContext;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn from_env_reads_a_kv_url_with_tls_and_a_password() {
    let server = RedisServer::start_tls();
    let url = server.url();
    assert!(url.starts_with("rediss://default:"), "{url}");
    std::env::remove_var("REDIS_URL");
    std::env::remove_var("REDIS_CLUSTER_URLS");
    std::env::set_var("KV_URL", &url);
    let ca = server.root_certificates().expect("a TLS server");
    // The test CA is not among the system's roots: from_env() itself refuses it.
    let refused = ResumableStreamContext::from_env().await;
    assert!(
        matches!(
            &refused,
            Err(Error::Redis {
                command: "CONNECT",
                ..
            })
        ),
        "{:?}",
        refused.err()
    );
    // The builder without a backend reads the environment as from_env() does.
    let ctx = ResumableStreamContext::builder()
        .tls_root_certificates(ca)
        .build()
        .await
        .expect("a context from KV_URL");
    let chunks = || futures_util::stream::iter([Ok::<_, Error>("over "), Ok("TLS")]);
    let stream = ctx
        .resumable_stream("kv", chunks, None)
        .await
        .expect("no error")
        .expect("a new stream");
    let bytes: Vec<_> = stream.map(Result::unwrap).collect().await;
    assert_eq!(bytes.concat(), b"over TLS");
    let done: Option<String> = redis::cmd("GET")
        .arg("resumable-stream:rs:sentinel:kv")
        .query(&mut server.connection())
        .expect("GET");
    assert_eq!(done.as_deref(), Some("DONE"));
}
