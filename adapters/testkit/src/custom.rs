//! A minimal store behind the [`Publisher`] and [`Subscriber`] traits (the deployed
//! libraries' custom-client shape), written independently of the crate's own in-memory
//! backend, so that the suite also runs through a custom backend.

use bytes::Bytes;
use futures_util::future::BoxFuture;
use resumable_stream::ReplyError;
use resumable_stream_driver::{Inbox, Publisher, Subscriber};
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
pub struct CustomStore(Arc<Mutex<State>>);

/// One context's subscriber.
pub struct StoreSubscriber {
    store: CustomStore,
    id: u64,
}

impl CustomStore {
    /// A subscriber for one more context.
    pub fn subscriber(&self) -> StoreSubscriber {
        let mut state = self.0.lock().unwrap();
        state.next_subscriber += 1;
        StoreSubscriber {
            store: self.clone(),
            id: state.next_subscriber,
        }
    }

    /// `SET key value`, as an operator would.
    pub fn set_raw(&self, key: &str, value: &str) {
        let mut state = self.0.lock().unwrap();
        state.keys.insert(
            Bytes::copy_from_slice(key.as_bytes()),
            Bytes::copy_from_slice(value.as_bytes()),
        );
    }

    /// `GET key`.
    pub fn get_raw(&self, key: &str) -> Option<Bytes> {
        self.0.lock().unwrap().keys.get(key.as_bytes()).cloned()
    }

    /// `PUBLISH channel message`; the number of receivers.
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

impl Publisher for CustomStore {
    fn publish(&self, channel: Bytes, message: Bytes) -> BoxFuture<'_, Result<i64, ReplyError>> {
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
