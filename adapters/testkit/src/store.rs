//! The store a test's contexts share: a private redis-server, the in-memory backend, or
//! a custom publisher/subscriber store; and raw access to it, as an operator has.

use crate::custom::CustomStore;
use crate::redis_server::RedisServer;
use bytes::Bytes;
use resumable_stream_driver::MemoryBackend;
use std::time::Instant;

/// One shared store that several contexts ("server instances") use.
pub enum Store {
    /// The in-process backend.
    Memory(MemoryBackend),
    /// A private redis-server.
    Redis(RedisServer),
    /// The application's own publisher and subscriber.
    Custom(CustomStore),
}

impl Store {
    /// A fresh in-memory store.
    pub fn memory() -> Store {
        Store::Memory(MemoryBackend::new())
    }

    /// A fresh redis-server.
    pub fn redis() -> Store {
        Store::Redis(RedisServer::start())
    }

    /// A fresh custom store.
    pub fn custom() -> Store {
        Store::Custom(CustomStore::default())
    }

    /// `SET key value`.
    pub fn set(&self, key: &str, value: &str) {
        match self {
            Store::Memory(memory) => {
                memory.with_store(|store| store.set_raw(key.to_owned(), value.to_owned()))
            }
            Store::Redis(server) => {
                let _: () = redis::cmd("SET")
                    .arg(key)
                    .arg(value)
                    .query(&mut server.connection())
                    .expect("SET");
            }
            Store::Custom(store) => store.set_raw(key, value),
        }
    }

    /// `GET key`.
    pub fn get(&self, key: &str) -> Option<Bytes> {
        match self {
            Store::Memory(memory) => {
                memory.with_store(|store| store.get_raw(Instant::now(), key.as_bytes()))
            }
            Store::Redis(server) => redis::cmd("GET")
                .arg(key)
                .query::<Option<Vec<u8>>>(&mut server.connection())
                .expect("GET")
                .map(Bytes::from),
            Store::Custom(store) => store.get_raw(key),
        }
    }

    /// `PUBLISH channel message`; the number of receivers.
    pub fn publish(&self, channel: &str, message: &[u8]) -> i64 {
        match self {
            Store::Memory(memory) => memory.publish(channel.to_owned(), message.to_vec()),
            Store::Redis(server) => redis::cmd("PUBLISH")
                .arg(channel)
                .arg(message)
                .query(&mut server.connection())
                .expect("PUBLISH"),
            Store::Custom(store) => store.publish_raw(channel, message),
        }
    }

    /// The redis-server, when the store is one.
    pub fn redis_server(&mut self) -> Option<&mut RedisServer> {
        match self {
            Store::Redis(server) => Some(server),
            _ => None,
        }
    }
}
