//! A private Redis Cluster: `n` masters (`redis-server --cluster-enabled yes`) on free
//! loopback ports, started and stopped by the test itself.
//!
//! The slots are assigned as `redis-cli --cluster create 127.0.0.1:P1 ... --cluster-replicas 0`
//! assigns them (16384 split evenly, in port order), but with the cluster commands
//! themselves (`CLUSTER ADDSLOTSRANGE`, `SET-CONFIG-EPOCH`, `MEET`), which is faster and
//! also makes the one-master cluster that `redis-cli` refuses to create.
//!
//! A cluster may serve TLS only (`tls-cluster yes`: clients, the cluster bus and
//! replication), with the test CA's certificates, and may fail a dead master over
//! quickly (a short `cluster-node-timeout`).

use crate::redis_server::free_port;
use resumable_stream::cluster::{key_slot, SLOTS};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// One master of a [`RedisCluster`].
struct Node {
    port: u16,
    child: Option<Child>,
    /// The first slot it owns (each node owns one contiguous range).
    first_slot: u16,
    /// The last slot it owns.
    last_slot: u16,
    /// The node it replicates (it then owns no slot itself), if it is a replica.
    replica_of: Option<usize>,
}

/// A Redis Cluster of child processes on 127.0.0.1, killed (and its files removed) on
/// drop.
pub struct RedisCluster {
    nodes: Vec<Node>,
    dir: PathBuf,
    /// Slots moved by [`move_slot`](RedisCluster::move_slot), and their new owner.
    moved: std::collections::HashMap<u16, usize>,
    options: ClusterOptions,
    /// Whose URLs [`urls`](RedisCluster::urls) gives: (user, password).
    user: Option<(String, String)>,
}

/// What kind of cluster [`RedisCluster::start_with`] starts.
#[derive(Clone, Debug)]
pub struct ClusterOptions {
    /// How many masters.
    pub masters: usize,
    /// One replica per master (the replica of master `i` is node `masters + i`).
    pub replicated: bool,
    /// TLS only, with the test CA's certificates ([`crate::tls::certificates`]).
    pub tls: bool,
    /// `cluster-node-timeout`: how long a node may be unreachable before it is failed
    /// (and a replica of a failed master promoted); Redis's default is 15 s.
    pub node_timeout: Option<Duration>,
}

impl ClusterOptions {
    /// `masters` masters, no replica, no TLS, Redis's node timeout.
    pub fn masters(masters: usize) -> ClusterOptions {
        ClusterOptions {
            masters,
            replicated: false,
            tls: false,
            node_timeout: None,
        }
    }
}

fn deadline_check(deadline: Instant, what: &str) {
    assert!(Instant::now() < deadline, "the Redis Cluster: {what}");
    std::thread::sleep(Duration::from_millis(20));
}

impl RedisCluster {
    /// Starts a cluster of `masters` nodes (no replicas) and waits until every node
    /// says `cluster_state:ok` and knows every other node.
    ///
    /// # Panics
    /// When `redis-server` is missing or the cluster does not form within 30 s.
    pub fn start(masters: usize) -> RedisCluster {
        Self::start_with(ClusterOptions::masters(masters))
    }

    /// Starts a cluster of `masters` masters, each with one replica when `replicated`
    /// (the replica of master `i` is node `masters + i`), and waits until every node
    /// says `cluster_state:ok`, knows every node, and every replica is in sync.
    ///
    /// # Panics
    /// When `redis-server` is missing or the cluster does not form within 30 s.
    pub fn start_with_replicas(masters: usize, replicated: bool) -> RedisCluster {
        Self::start_with(ClusterOptions {
            replicated,
            ..ClusterOptions::masters(masters)
        })
    }

    /// Starts a cluster as `options` say, and waits as
    /// [`start_with_replicas`](Self::start_with_replicas) does.
    ///
    /// # Panics
    /// When `redis-server` is missing or the cluster does not form within 30 s.
    pub fn start_with(options: ClusterOptions) -> RedisCluster {
        let (masters, replicated) = (options.masters, options.replicated);
        assert!(masters >= 1 && masters <= usize::from(SLOTS));
        let dir = std::env::temp_dir().join(format!(
            "rs-test-cluster-{}-{}",
            std::process::id(),
            free_port()
        ));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let per = usize::from(SLOTS) / masters;
        let replicas = if replicated { masters } else { 0 };
        let mut cluster = RedisCluster {
            nodes: (0..masters)
                .map(|i| Node {
                    port: cluster_port(),
                    child: None,
                    first_slot: (i * per) as u16,
                    last_slot: if i + 1 == masters {
                        SLOTS - 1
                    } else {
                        ((i + 1) * per - 1) as u16
                    },
                    replica_of: None,
                })
                .chain((0..replicas).map(|i| Node {
                    port: cluster_port(),
                    child: None,
                    first_slot: 1,
                    last_slot: 0,
                    replica_of: Some(i),
                }))
                .collect(),
            dir,
            moved: std::collections::HashMap::new(),
            options,
            user: None,
        };
        for index in 0..cluster.nodes.len() {
            cluster.spawn(index);
        }
        let first = cluster.nodes[0].port;
        for (index, node) in cluster.nodes.iter().enumerate() {
            let mut conn = cluster
                .connect(node.port)
                .expect("connect to a cluster node");
            if node.replica_of.is_none() {
                let _: () = redis::cmd("CLUSTER")
                    .arg("ADDSLOTSRANGE")
                    .arg(node.first_slot)
                    .arg(node.last_slot)
                    .query(&mut conn)
                    .expect("CLUSTER ADDSLOTSRANGE");
            }
            let _: () = redis::cmd("CLUSTER")
                .arg("SET-CONFIG-EPOCH")
                .arg(index + 1)
                .query(&mut conn)
                .expect("CLUSTER SET-CONFIG-EPOCH");
            if node.port != first {
                let _: () = redis::cmd("CLUSTER")
                    .arg("MEET")
                    .arg("127.0.0.1")
                    .arg(first)
                    .query(&mut conn)
                    .expect("CLUSTER MEET");
            }
        }
        cluster.wait_until_ok();
        for index in masters..cluster.nodes.len() {
            let master = cluster.node_id(index - masters);
            let deadline = Instant::now() + Duration::from_secs(30);
            // The replica must know its master (by gossip) before it can follow it.
            while redis::cmd("CLUSTER")
                .arg("REPLICATE")
                .arg(&master)
                .query::<()>(&mut cluster.connection(index))
                .is_err()
            {
                deadline_check(deadline, "a replica could not follow its master");
            }
        }
        cluster.wait_until_ok();
        for index in masters..cluster.nodes.len() {
            let deadline = Instant::now() + Duration::from_secs(30);
            while !cluster
                .info(index, "replication")
                .contains("master_link_status:up")
            {
                deadline_check(deadline, "a replica did not sync");
            }
        }
        cluster
    }

    /// A connection to the node on `port`, over TLS for a TLS cluster.
    fn connect(&self, port: u16) -> redis::RedisResult<redis::Connection> {
        let url = self.url_of(port);
        let client = if self.options.tls {
            crate::tls::certificates().client(&url)?
        } else {
            redis::Client::open(url)?
        };
        client.get_connection_with_timeout(Duration::from_secs(2))
    }

    fn url_of(&self, port: u16) -> String {
        let scheme = if self.options.tls { "rediss" } else { "redis" };
        format!("{scheme}://127.0.0.1:{port}/")
    }

    /// The root certificates a client must trust to reach it: the test CA, for TLS.
    pub fn root_certificates(&self) -> Option<Vec<u8>> {
        self.options
            .tls
            .then(|| crate::tls::certificates().ca_pem.clone().into_bytes())
    }

    fn info(&self, index: usize, section: &str) -> String {
        self.connect(self.nodes[index].port)
            .and_then(|mut c| redis::cmd("INFO").arg(section).query::<String>(&mut c))
            .unwrap_or_default()
    }

    /// Node `index`'s cluster id (`CLUSTER MYID`).
    pub fn node_id(&self, index: usize) -> String {
        redis::cmd("CLUSTER")
            .arg("MYID")
            .query(&mut self.connection(index))
            .expect("CLUSTER MYID")
    }

    /// The replica of the master `index`, in a replicated cluster.
    pub fn replica_of(&self, index: usize) -> Option<usize> {
        self.nodes.iter().position(|n| n.replica_of == Some(index))
    }

    /// A manual failover (`CLUSTER FAILOVER` on `replica`, as an operator would): the
    /// replica becomes the master of its master's slots, and the old master its
    /// replica. Waits until the cluster agrees.
    pub fn failover(&mut self, replica: usize) {
        let master = self.nodes[replica]
            .replica_of
            .expect("failover is asked of a replica");
        // A manual failover needs the replica in sync first; one that is not is
        // aborted by the master after a few seconds, silently: wait for the link, then
        // ask again until the roles swap (a loaded machine may need a second try).
        let deadline = Instant::now() + Duration::from_secs(30);
        while !self
            .info(replica, "replication")
            .contains("master_link_status:up")
        {
            deadline_check(deadline, "the replica never synchronized with its master");
        }
        let swapped = |cluster: &Self| {
            cluster.info(replica, "replication").contains("role:master")
                && cluster.info(master, "replication").contains("role:slave")
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        'attempts: loop {
            // A refusal (a failover already under way) is judged by the roles too.
            let _ = redis::cmd("CLUSTER")
                .arg("FAILOVER")
                .query::<()>(&mut self.connection(replica));
            let attempt_ends = Instant::now() + Duration::from_secs(10);
            while Instant::now() < attempt_ends {
                if swapped(self) {
                    break 'attempts;
                }
                deadline_check(deadline, "the failover did not complete");
            }
        }
        self.swap_roles(master, replica);
    }

    /// Takes `replica` for the owner of `master`'s slots, and `master` for its
    /// replica (after a failover); waits until the live nodes agree.
    fn swap_roles(&mut self, master: usize, replica: usize) {
        let (first, last) = (self.nodes[master].first_slot, self.nodes[master].last_slot);
        self.nodes[replica].first_slot = first;
        self.nodes[replica].last_slot = last;
        self.nodes[replica].replica_of = None;
        self.nodes[master].first_slot = 1;
        self.nodes[master].last_slot = 0;
        self.nodes[master].replica_of = Some(replica);
        self.wait_until_ok();
    }

    /// After master `dead` was killed: waits until the cluster promoted its replica on
    /// its own (after `cluster-node-timeout`, an automatic failover) and every live
    /// node says `cluster_state:ok`, then takes the replica for the slots' owner.
    /// Returns the replica.
    ///
    /// # Panics
    /// When no promotion happens within 60 s.
    pub fn await_failover(&mut self, dead: usize) -> usize {
        let replica = self.replica_of(dead).expect("a replicated cluster");
        let deadline = Instant::now() + Duration::from_secs(60);
        while !self.info(replica, "replication").contains("role:master") {
            deadline_check(deadline, "the replica of a dead master was not promoted");
        }
        self.swap_roles(dead, replica);
        replica
    }

    fn spawn(&mut self, index: usize) {
        let port = self.nodes[index].port;
        let mut command = Command::new("redis-server");
        if self.options.tls {
            // The node's files are per port: a cluster's nodes share its directory.
            let dir = self.dir.join(format!("tls-{port}"));
            std::fs::create_dir_all(&dir).expect("temp dir");
            command.args(crate::tls::certificates().server_args(&dir, port));
            command.args(["--tls-cluster", "yes"]);
        } else {
            command.args(["--port", &port.to_string()]);
        }
        if let Some(timeout) = self.options.node_timeout {
            command.args(["--cluster-node-timeout", &timeout.as_millis().to_string()]);
        }
        let child = command
            .args([
                "--bind",
                "127.0.0.1",
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                &format!("nodes-{port}.conf"),
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .arg("--dir")
            .arg(&self.dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server must be installed (the test command in README.md installs it)");
        self.nodes[index].child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(mut conn) = self.connect(port) {
                if redis::cmd("PING").query::<String>(&mut conn).is_ok() {
                    return;
                }
            }
            deadline_check(deadline, "a node did not start");
        }
    }

    /// Waits until every live node says `cluster_state:ok` and knows every node.
    pub fn wait_until_ok(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        let known = format!("cluster_known_nodes:{}", self.nodes.len());
        for node in self.nodes.iter().filter(|n| n.child.is_some()) {
            loop {
                let info = self
                    .connect(node.port)
                    .and_then(|mut c| redis::cmd("CLUSTER").arg("INFO").query::<String>(&mut c));
                if let Ok(info) = info {
                    if info.contains("cluster_state:ok") && info.contains(&known) {
                        break;
                    }
                }
                deadline_check(deadline, "did not reach cluster_state:ok");
            }
        }
    }

    /// The URL of every node (`redis://127.0.0.1:{port}/`, `rediss://` for TLS),
    /// naming the user [`as_user`](Self::as_user) set.
    pub fn urls(&self) -> Vec<String> {
        let scheme = if self.options.tls { "rediss" } else { "redis" };
        let user = match &self.user {
            Some((user, password)) => format!("{user}:{password}@"),
            None => String::new(),
        };
        self.nodes
            .iter()
            .map(|n| format!("{scheme}://{user}127.0.0.1:{}/", n.port))
            .collect()
    }

    /// From now on [`urls`](Self::urls) name `user` (which the test created on every
    /// node) and its `password`; the test's own connections stay `default`'s.
    pub fn as_user(&mut self, user: &str, password: &str) {
        self.user = Some((user.to_owned(), password.to_owned()));
    }

    /// How many nodes it has (masters and replicas).
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Whether it has no node (never: a cluster has at least one).
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// The index of the node that owns the slot of `key` (a key or a channel).
    pub fn node_of(&self, key: &[u8]) -> usize {
        let slot = key_slot(key);
        if let Some(&owner) = self.moved.get(&slot) {
            return owner;
        }
        self.nodes
            .iter()
            .position(|n| (n.first_slot..=n.last_slot).contains(&slot))
            .expect("every slot has an owner")
    }

    /// A synchronous connection to node `index`, for raw commands.
    pub fn connection(&self, index: usize) -> redis::Connection {
        self.connect(self.nodes[index].port)
            .expect("connect to a cluster node")
    }

    /// A synchronous connection to the node owning `key`'s slot.
    pub fn connection_for(&self, key: &[u8]) -> redis::Connection {
        self.connection(self.node_of(key))
    }

    /// Kills node `index` at once (SIGKILL), as a crash would. Its cluster
    /// configuration file stays, so [`restart`](Self::restart) brings back the same
    /// node with the same slots (and no data).
    pub fn kill(&mut self, index: usize) {
        if let Some(mut child) = self.nodes[index].child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts node `index` again on its port, and waits for the cluster to be ok.
    pub fn restart(&mut self, index: usize) {
        self.kill(index);
        self.spawn(index);
        self.wait_until_ok();
    }

    /// Moves `slot` (and its keys) to node `to`, as `redis-cli --cluster reshard` does:
    /// `SETSLOT IMPORTING` / `MIGRATING`, `MIGRATE` of every key, then `SETSLOT NODE`
    /// on every node.
    pub fn move_slot(&mut self, slot: u16, to: usize) {
        let from = self.owner_of_slot(slot);
        assert_ne!(from, to, "the slot is already there");
        let (from_id, to_id) = (self.node_id(from), self.node_id(to));
        let setslot = |node: usize, args: &[&str]| {
            let _: () = redis::cmd("CLUSTER")
                .arg("SETSLOT")
                .arg(slot)
                .arg(args)
                .query(&mut self.connection(node))
                .expect("CLUSTER SETSLOT");
        };
        setslot(to, &["IMPORTING", &from_id]);
        setslot(from, &["MIGRATING", &to_id]);
        loop {
            let keys: Vec<Vec<u8>> = redis::cmd("CLUSTER")
                .arg("GETKEYSINSLOT")
                .arg(slot)
                .arg(100)
                .query(&mut self.connection(from))
                .expect("CLUSTER GETKEYSINSLOT");
            if keys.is_empty() {
                break;
            }
            let _: () = redis::cmd("MIGRATE")
                .arg("127.0.0.1")
                .arg(self.nodes[to].port)
                .arg("")
                .arg(0)
                .arg(5000)
                .arg("KEYS")
                .arg(keys)
                .query(&mut self.connection(from))
                .expect("MIGRATE");
        }
        setslot(to, &["NODE", &to_id]);
        setslot(from, &["NODE", &to_id]);
        for node in (0..self.nodes.len()).filter(|&n| n != from && n != to) {
            setslot(node, &["NODE", &to_id]);
        }
        self.moved.insert(slot, to);
    }

    fn owner_of_slot(&self, slot: u16) -> usize {
        if let Some(&owner) = self.moved.get(&slot) {
            return owner;
        }
        self.nodes
            .iter()
            .position(|n| (n.first_slot..=n.last_slot).contains(&slot))
            .expect("every slot has an owner")
    }

    /// The CPU time node `index` has used so far, user + system, in seconds
    /// (`INFO cpu`).
    pub fn cpu_seconds(&self, index: usize) -> f64 {
        let info: String = redis::cmd("INFO")
            .arg("cpu")
            .query(&mut self.connection(index))
            .expect("INFO cpu");
        info.lines()
            .filter(|l| l.starts_with("used_cpu_user:") || l.starts_with("used_cpu_sys:"))
            .filter_map(|l| l.split(':').nth(1)?.trim().parse::<f64>().ok())
            .sum()
    }

    /// The value of `name` in node `index`'s `INFO commandstats` line for `command`
    /// (for example the `calls` of `spublish`), 0 when the command never ran there.
    pub fn command_calls(&self, index: usize, command: &str) -> u64 {
        let info: String = redis::cmd("INFO")
            .arg("commandstats")
            .query(&mut self.connection(index))
            .expect("INFO commandstats");
        let prefix = format!("cmdstat_{command}:calls=");
        info.lines()
            .find_map(|line| line.strip_prefix(&prefix))
            .and_then(|rest| rest.split(',').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    }
}

impl Drop for RedisCluster {
    fn drop(&mut self) {
        for index in 0..self.nodes.len() {
            self.kill(index);
        }
        let mut reserved = lock_reserved();
        for node in &self.nodes {
            reserved.remove(&node.port);
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The ports of the nodes of every live cluster in this process. A node keeps its
/// port for the cluster's life (a restarted node comes back on it), so no other
/// server may take it meanwhile: its old peers would gossip with the newcomer.
static RESERVED: std::sync::Mutex<std::collections::BTreeSet<u16>> =
    std::sync::Mutex::new(std::collections::BTreeSet::new());

fn lock_reserved() -> std::sync::MutexGuard<'static, std::collections::BTreeSet<u16>> {
    RESERVED
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Whether `port` is a live cluster node's port or cluster bus port.
pub(crate) fn is_reserved(port: u16) -> bool {
    let reserved = lock_reserved();
    reserved.contains(&port)
        || port
            .checked_sub(10_000)
            .is_some_and(|p| reserved.contains(&p))
}

/// A port for a cluster node, reserved until its cluster is dropped: free now, as is
/// its cluster bus port (the port + 10000), and neither one reserved by another node.
fn cluster_port() -> u16 {
    let mut reserved = lock_reserved();
    loop {
        let port = crate::redis_server::ephemeral_port();
        let Some(bus) = port.checked_add(10_000) else {
            continue;
        };
        let taken = |p: u16| {
            reserved.contains(&p)
                || p.checked_sub(10_000)
                    .is_some_and(|data| reserved.contains(&data))
                || reserved.contains(&p.saturating_add(10_000))
        };
        if taken(port) || taken(bus) || std::net::TcpListener::bind(("127.0.0.1", bus)).is_err() {
            continue;
        }
        reserved.insert(port);
        return port;
    }
}
