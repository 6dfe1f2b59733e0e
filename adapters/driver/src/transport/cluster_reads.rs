//! Blocking reads (`XREAD ... BLOCK`) on a Redis Cluster, and the cluster's slot map.
//!
//! redis-rs's cluster connection multiplexes one connection per node, which a parked
//! read would stall; so each read goes to the master owning its key's slot on a
//! connection of a pool of that node's own ([`ReadPool`]), opened with the credentials
//! and TLS settings of the cluster's URLs. Where each slot lives comes from
//! `CLUSTER SLOTS` (asked through the cluster connection), kept until a reply says it
//! changed: a `MOVED` redirect goes where it says (and the map is asked again next
//! time), an `ASK` redirect sends `ASKING` then the read to the node it names,
//! `TRYAGAIN` and `CLUSTERDOWN` are tried again for up to the reconnect window, and a
//! connection error fails the read and forgets the map (a failover may have moved the
//! slot).

use super::read_pool::ReadPool;
use crate::runtime::Runtime;
use crate::sync::lock;
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{RoutingInfo, SingleNodeRoutingInfo};
use redis::{ConnectionAddr, ConnectionInfo, IntoConnectionInfo, Value};
use resumable_stream::cluster::key_slot;
use resumable_stream::{Command, Error, Reply, ReplyError};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A range of slots and the address of its master, as `CLUSTER SLOTS` names it.
pub(super) struct SlotRange {
    /// The first slot of the range.
    pub(super) start: u16,
    /// The last one, included.
    pub(super) end: u16,
    /// The master's host.
    pub(super) host: String,
    /// The master's port.
    pub(super) port: u16,
}

/// The masters of every slot range, by `CLUSTER SLOTS` asked of any node.
pub(super) async fn slot_ranges(
    connection: &mut ClusterConnection,
) -> redis::RedisResult<Vec<SlotRange>> {
    let any_node = RoutingInfo::SingleNode(SingleNodeRoutingInfo::Random);
    let mut slots_command = redis::cmd("CLUSTER");
    slots_command.arg("SLOTS");
    let slots = connection.route_command(slots_command, any_node).await?;
    let Value::Array(ranges) = slots else {
        return Err(unreadable("CLUSTER SLOTS did not answer an array"));
    };
    let mut out = Vec::with_capacity(ranges.len());
    for range in ranges {
        // [start, end, [host, port, id, ...], replicas...]
        let Value::Array(fields) = range else {
            return Err(unreadable("a CLUSTER SLOTS range is not an array"));
        };
        let (Some(Value::Int(start)), Some(Value::Int(end))) = (fields.first(), fields.get(1))
        else {
            return Err(unreadable("a CLUSTER SLOTS range has no bounds"));
        };
        let Some(Value::Array(master)) = fields.get(2) else {
            return Err(unreadable("a CLUSTER SLOTS range names no master"));
        };
        let (Some(host), Some(Value::Int(port))) = (master.first(), master.get(1)) else {
            return Err(unreadable("a CLUSTER SLOTS master has no address"));
        };
        let host = match host {
            Value::BulkString(bytes) => String::from_utf8_lossy(bytes).into_owned(),
            Value::SimpleString(text) => text.clone(),
            _ => return Err(unreadable("a CLUSTER SLOTS master's host is not a string")),
        };
        let number = |n: i64| u16::try_from(n).map_err(|_| unreadable("a number out of range"));
        out.push(SlotRange {
            start: number(*start)?,
            end: number(*end)?,
            host,
            port: number(*port)?,
        });
    }
    Ok(out)
}

/// A reply of the cluster this transport cannot read.
pub(super) fn unreadable(what: &'static str) -> redis::RedisError {
    redis::RedisError::from((redis::ErrorKind::Parse, what))
}

/// A master's address: host and port.
type Address = (String, u16);

/// One master's client and its connections for blocking reads.
struct Node {
    client: redis::Client,
    pool: ReadPool,
}

/// The most times one read follows a redirect.
const MAX_REDIRECTS: usize = 5;

/// How long a read waits before trying again after `TRYAGAIN` or `CLUSTERDOWN`.
const RETRY_PAUSE: Duration = Duration::from_millis(100);

/// Where a cluster's blocking reads go, and their connections.
pub(super) struct ClusterReads {
    /// The first URL's settings (user, password, TLS), for every node's client.
    seed: ConnectionInfo,
    /// The root certificates to trust over TLS, if given.
    roots: Option<Vec<u8>>,
    /// The slot map, until a reply says it changed.
    slots: Mutex<Option<Arc<Vec<SlotRange>>>>,
    nodes: Mutex<HashMap<Address, Arc<Node>>>,
}

/// What an error reply of a cluster asks of a read.
enum Redirect {
    /// The slot lives at this address now.
    Moved(Address),
    /// Ask this address, this once.
    Ask(Address),
    /// Try again shortly.
    Retry,
}

/// The redirect an error reply's text (`MOVED 3999 127.0.0.1:6381`) asks for, if any.
fn redirect(text: &str) -> Option<Redirect> {
    let mut words = text.split_ascii_whitespace();
    let code = words.next()?;
    if matches!(code, "TRYAGAIN" | "CLUSTERDOWN") {
        return Some(Redirect::Retry);
    }
    let (host, port) = words.nth(1)?.rsplit_once(':')?;
    let address = (host.to_owned(), port.parse().ok()?);
    match code {
        "MOVED" => Some(Redirect::Moved(address)),
        "ASK" => Some(Redirect::Ask(address)),
        _ => None,
    }
}

impl ClusterReads {
    /// For the cluster of `urls`, whose first one gives every node's settings.
    ///
    /// # Errors
    /// [`Error::Config`] when there is no URL or the first does not parse.
    pub(super) fn new(urls: &[String], roots: Option<&[u8]>) -> Result<ClusterReads, Error> {
        let seed = urls
            .first()
            .ok_or_else(|| Error::Config("no Redis Cluster URL".into()))?
            .as_str()
            .into_connection_info()
            .map_err(|e| Error::Config(format!("invalid Redis Cluster URL: {e}")))?;
        Ok(ClusterReads {
            seed,
            roots: roots.map(<[u8]>::to_vec),
            slots: Mutex::new(None),
            nodes: Mutex::new(HashMap::new()),
        })
    }

    /// Runs the blocking read `command` on the master owning its key's slot.
    pub(super) async fn read(
        &self,
        connection: &ClusterConnection,
        command: &Command,
        runtime: &dyn Runtime,
        reconnect_window: Duration,
    ) -> Result<Reply, ReplyError> {
        let slot = key_slot(command.op.routing_key());
        let deadline = Instant::now() + reconnect_window;
        let mut next: Option<(Address, bool)> = None;
        let mut redirects = 0;
        loop {
            let (address, asking) = match next.take() {
                Some(redirected) => redirected,
                None => (self.owner(connection, slot).await?, false),
            };
            let node = self.node(address)?;
            let reply = node
                .pool
                .read(&node.client, command, asking, runtime, reconnect_window)
                .await;
            let wanted = match &reply {
                Err(ReplyError::Server(text)) => redirect(text),
                Err(ReplyError::Connection(_)) => {
                    // A failover may have moved the slot: ask again next time.
                    self.forget_slots();
                    None
                }
                _ => None,
            };
            match wanted {
                Some(Redirect::Moved(to)) if redirects < MAX_REDIRECTS => {
                    self.forget_slots();
                    next = Some((to, false));
                    redirects += 1;
                }
                Some(Redirect::Ask(to)) if redirects < MAX_REDIRECTS => {
                    next = Some((to, true));
                    redirects += 1;
                }
                Some(Redirect::Retry) if Instant::now() < deadline => {
                    self.forget_slots();
                    runtime.sleep_until(Instant::now() + RETRY_PAUSE).await;
                }
                _ => return reply,
            }
        }
    }

    /// The address of the master owning `slot`, from the slot map (asked for if
    /// forgotten).
    async fn owner(
        &self,
        connection: &ClusterConnection,
        slot: u16,
    ) -> Result<Address, ReplyError> {
        let known = lock(&self.slots).clone();
        let ranges = match known {
            Some(ranges) => ranges,
            None => {
                let ranges = slot_ranges(&mut connection.clone())
                    .await
                    .map_err(|e| super::wire::to_reply_error(&e))?;
                let ranges = Arc::new(ranges);
                *lock(&self.slots) = Some(ranges.clone());
                ranges
            }
        };
        ranges
            .iter()
            .find(|range| (range.start..=range.end).contains(&slot))
            .map(|range| (range.host.clone(), range.port))
            .ok_or_else(|| {
                self.forget_slots();
                ReplyError::Connection(format!("no Redis Cluster master serves slot {slot}"))
            })
    }

    /// Forgets the slot map: the next read asks for it again.
    fn forget_slots(&self) {
        *lock(&self.slots) = None;
    }

    /// The client and pool of the master at `address`, made on first use.
    fn node(&self, (host, port): Address) -> Result<Arc<Node>, ReplyError> {
        // A node that does not know its own address announces an empty host.
        let host = if host.is_empty() {
            match self.seed.addr() {
                ConnectionAddr::Tcp(host, _) | ConnectionAddr::TcpTls { host, .. } => host.clone(),
                _ => host,
            }
        } else {
            host
        };
        let key = (host, port);
        if let Some(node) = lock(&self.nodes).get(&key) {
            return Ok(node.clone());
        }
        let client = self.client_for(&key.0, key.1).map_err(|e| {
            ReplyError::Connection(format!("no client for Redis Cluster node {key:?}: {e}"))
        })?;
        let node = Arc::new(Node {
            client,
            pool: ReadPool::default(),
        });
        Ok(lock(&self.nodes).entry(key).or_insert(node).clone())
    }

    /// A client for the node at `host:port`, with the seed URL's settings.
    fn client_for(&self, host: &str, port: u16) -> redis::RedisResult<redis::Client> {
        let addr = match self.seed.addr() {
            ConnectionAddr::TcpTls {
                insecure,
                tls_params,
                ..
            } => ConnectionAddr::TcpTls {
                host: host.to_owned(),
                port,
                insecure: *insecure,
                tls_params: tls_params.clone(),
            },
            _ => ConnectionAddr::Tcp(host.to_owned(), port),
        };
        let info = self.seed.clone().set_addr(addr);
        match &self.roots {
            #[cfg(feature = "tls")]
            Some(roots) => {
                redis::Client::build_with_tls(info, super::wire::tls::certificates(roots))
            }
            _ => redis::Client::open(info),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{redirect, Redirect};

    #[test]
    fn redirects_are_read_from_the_error_text() {
        let moved = redirect("MOVED 3999 127.0.0.1:6381");
        assert!(matches!(moved, Some(Redirect::Moved((h, 6381))) if h == "127.0.0.1"));
        let ask = redirect("ASK 3999 ::1:7000");
        assert!(matches!(ask, Some(Redirect::Ask((h, 7000))) if h == "::1"));
        assert!(matches!(redirect("TRYAGAIN later"), Some(Redirect::Retry)));
        assert!(matches!(
            redirect("CLUSTERDOWN down"),
            Some(Redirect::Retry)
        ));
        assert!(redirect("ERR wrong type").is_none());
        assert!(redirect("MOVED nonsense").is_none());
    }
}
