//! A source's error reaches its local reader whole, chain included; a reader on another
//! instance gets its message.

use futures_util::{stream, StreamExt};
use resumable_stream_tokio::{Error, MemoryBackend, ResumableStreamContext};
use std::error::Error as _;
use std::fmt;

/// The model client's error, with a cause of its own.
#[derive(Debug)]
struct ModelError(std::io::Error);

impl fmt::Display for ModelError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the model stopped answering")
    }
}

impl std::error::Error for ModelError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.0)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_source_error_keeps_its_chain_for_the_local_reader() {
    let backend = MemoryBackend::new();
    let here = ResumableStreamContext::builder()
        .memory(backend.clone())
        .build()
        .await
        .unwrap();
    let there = ResumableStreamContext::builder()
        .memory(backend)
        .build()
        .await
        .unwrap();
    let (fail, failing) = tokio::sync::oneshot::channel::<()>();
    let source = move || {
        stream::iter([Ok::<_, ModelError>("partial")]).chain(stream::once(async move {
            let _ = failing.await;
            Err(ModelError(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "read timed out",
            )))
        }))
    };
    let mut producer = here
        .resumable_stream("s", source, None)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&producer.next().await.unwrap().unwrap()[..], b"partial");
    let mut resumer = there
        .resumable_stream("s", stream::empty::<Result<&str, Error>>, None)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&resumer.next().await.unwrap().unwrap()[..], b"partial");
    fail.send(()).unwrap();

    let local = producer.next().await.unwrap().unwrap_err();
    let Error::Source(error) = &local else {
        panic!("{local:?}")
    };
    assert_eq!(error.message(), "the model stopped answering");
    let model = local.source().expect("the source's own error");
    assert!(model.downcast_ref::<ModelError>().is_some(), "{model:?}");
    let io = model.source().expect("its cause");
    assert_eq!(io.to_string(), "read timed out");

    let remote = resumer.next().await.unwrap().unwrap_err();
    let Error::Source(error) = &remote else {
        panic!("{remote:?}")
    };
    assert_eq!(error.message(), "the model stopped answering");
    assert!(remote.source().is_none(), "only its message crosses Redis");
}
