//! The node runtime: one Raft node with a [`FileStorage`] log, a [`UdpTransport`] socket and
//! the KV state machine, driven from a monotonic clock.
//!
//! # One thread, on purpose
//!
//! The runtime is a single thread running one loop:
//!
//! 1. wait on the socket until a datagram arrives or the next tick is due;
//! 2. take every datagram already queued (up to [`RECV_BATCH_MAX`]): Raft messages are
//!    stepped into the node, client requests become proposals or ReadIndex requests;
//! 3. tick the node for each tick interval that has passed;
//! 4. run one ready round: send a leader's appends and heartbeats (the core's
//!    `early_messages`), persist with **one** fdatasync, send the other messages, then apply
//!    and answer the clients whose entries were applied, then serve confirmed reads.
//!
//! Everything that arrived during one loop turn shares the sync of step 4: that is the group
//! commit, and it needs no coordination because there is nothing to coordinate with. Raft
//! orders everything anyway, the core is `&mut self`, and the fsync is the bottleneck, which
//! more threads would not remove. A single thread also keeps the persistence contract easy to
//! see: nothing leaves the node (no vote, no answer to a peer, no client answer) before the
//! fsync of the state it reveals. The leader's appends leave before its own fsync on purpose
//! (Raft dissertation §10.2.1): the followers write the entries while the leader does, and
//! the core counts the leader toward a commit only once its fsync is done, so a lone write
//! waits for one fsync and a round trip rather than two fsyncs in a row. Async would add a
//! runtime dependency and buy nothing here: there is one socket and one file to wait on.
//!
//! The state shared with other threads is only the [`Shutdown`] flag and the published
//! [`NodeStatus`] (see [`crate::sync`], modelled with loom).
//!
//! # Membership
//!
//! The leader serves membership changes and leadership transfers (see [`crate::protocol`]):
//! a change becomes a configuration entry whose context carries the added nodes' addresses,
//! and is answered once that entry is applied (for a joint change, once the entry that leaves
//! the joint configuration is). Every node, on applying a configuration entry, updates its
//! address book and its socket's peers from it ([`members`]). A node started with
//! [`NodeOptions::join`] has an empty configuration: it waits, never campaigning, until a
//! leader adds it and sends it the log.

pub mod members;

use std::collections::HashMap;
use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use tinyraft::kv::{HashKvMap, KvMap, KvStore, Request, Response};
use tinyraft::{
    ConfChange, ConfChangeError, ConfChangeMode, Config, ConfigEntry, EntryKind, Index, Membership,
    NodeId, ProposeErrorKind, RawNode, ReadError, Role, TransferError, Transport,
};

use crate::file_storage::{FileStorage, FileStorageError, FileStorageOptions};
use crate::protocol::{
    self, ClientReply, ClientRequest, LeaderView, MembersView, NodeStatus, PeerView, Refusal,
    CLIENT_MESSAGE_BYTES_MAX,
};
use crate::sync::{Shutdown, StatusCell};
use crate::udp::{ClusterKey, Incoming, UdpConfig, UdpTransport};
use members::{AddressBook, PendingChange};

/// Encoded messages waiting between two ready rounds, in bytes.
pub const OUTBOX_BYTES: usize = 512 * 1024;
/// Accepted-but-not-persisted entries, in bytes.
pub const UNSTABLE_BYTES: usize = 512 * 1024;
/// Client sessions the KV store remembers (exactly-once writes).
pub const SESSIONS_MAX: usize = 4096;
/// Datagrams taken per loop turn before running a ready round.
pub const RECV_BATCH_MAX: usize = 512;
/// Client requests waiting for their entry to apply or their read to be confirmed.
pub const CLIENTS_PENDING_MAX: usize = 8192;

/// The Raft node type the runtime drives.
pub type NodeRaw = RawNode<FileStorage, OUTBOX_BYTES, UNSTABLE_BYTES>;
/// The KV state machine type the runtime applies to.
pub type NodeKv = KvStore<HashKvMap, SESSIONS_MAX>;

/// How to run one node.
#[derive(Clone, Debug)]
pub struct NodeOptions {
    /// This node's id.
    pub id: NodeId,
    /// Nodes and their addresses, this node included. Without `join`, these are the voters
    /// of a new cluster; either way they are the addresses the node starts with (it learns
    /// those of nodes added later from the log).
    pub peers: Vec<(NodeId, SocketAddr)>,
    /// Start with an empty configuration and wait to be added by a cluster's leader, instead
    /// of bootstrapping a cluster of `peers`. Only matters for a new data directory: once a
    /// node has a configuration on disk, that is what it uses.
    pub join: bool,
    /// Where the log lives.
    pub data_dir: PathBuf,
    /// The cluster key every datagram is authenticated with.
    pub key: ClusterKey,
    /// The cluster id every datagram carries.
    pub cluster_id: u64,
    /// Length of one logical tick.
    pub tick: Duration,
    /// Election timeout base, in ticks.
    pub election_ticks: u32,
    /// Heartbeat interval, in ticks.
    pub heartbeat_ticks: u32,
    /// Most keys the KV store holds (reserved up front).
    pub keys_max: usize,
    /// Serve reads from the leader lease (see `tinyraft::Config::lease_reads`).
    pub lease_reads: bool,
    /// Snapshot the state machine and compact the log every this many applied entries
    /// (0: never).
    pub compact_after: u64,
    /// Size at which the log rolls to a new segment file. Compaction deletes whole segments,
    /// so the log on disk holds at most about this much beyond what `compact_after` keeps.
    pub segment_bytes: u64,
}

impl NodeOptions {
    /// Options with the defaults: 20 ms ticks, election after 10–19 ticks, heartbeat every 2.
    pub fn new(
        id: NodeId,
        peers: Vec<(NodeId, SocketAddr)>,
        data_dir: PathBuf,
        key: ClusterKey,
    ) -> Self {
        Self {
            id,
            peers,
            join: false,
            data_dir,
            key,
            cluster_id: 0x7469_6e79_7261_6674, // "tinyraft"
            tick: Duration::from_millis(20),
            election_ticks: 10,
            heartbeat_ticks: 2,
            keys_max: 200_000,
            lease_reads: false,
            compact_after: 10_000,
            segment_bytes: 4 << 20,
        }
    }
}

/// Why the runtime stopped or could not start.
#[derive(Debug)]
pub enum RuntimeError {
    /// The log failed; after a failed sync the node must not go on (see `FileStorage`).
    Storage(FileStorageError),
    /// Taking a snapshot or restoring the state machine from one failed.
    Snapshot(tinyraft::SnapshotError),
    /// The socket failed.
    Io(io::Error),
    /// The options are inconsistent.
    Config(String),
}

impl fmt::Display for RuntimeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RuntimeError::Storage(e) => write!(f, "storage: {e}"),
            RuntimeError::Snapshot(e) => write!(f, "snapshot: {e}"),
            RuntimeError::Io(e) => write!(f, "socket: {e}"),
            RuntimeError::Config(e) => write!(f, "configuration: {e}"),
        }
    }
}

impl std::error::Error for RuntimeError {}

impl From<FileStorageError> for RuntimeError {
    fn from(e: FileStorageError) -> Self {
        RuntimeError::Storage(e)
    }
}

impl From<io::Error> for RuntimeError {
    fn from(e: io::Error) -> Self {
        RuntimeError::Io(e)
    }
}

/// A client waiting for its write to apply.
#[derive(Clone, Copy, Debug)]
struct PendingWrite {
    addr: SocketAddr,
    nonce: u64,
    client_id: u64,
    seq: u64,
}

/// A client waiting for its read to be confirmed (then for the apply point to reach it).
#[derive(Debug)]
struct PendingRead {
    addr: SocketAddr,
    nonce: u64,
    /// The encoded request, in a buffer reused across reads.
    request: Vec<u8>,
}

/// Counters of the runtime, for `status` and benchmarks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RuntimeStats {
    /// Ready rounds run.
    pub ready_rounds: u64,
    /// Ready rounds that synced the log.
    pub syncs: u64,
    /// Entries applied.
    pub applied_entries: u64,
    /// Client requests answered.
    pub client_replies: u64,
    /// Raft datagrams that did not decode into a valid message.
    pub bad_raft_messages: u64,
    /// Snapshots taken (log compactions).
    pub snapshots: u64,
    /// Valid messages the node refused (see the node's stderr for the first few reasons).
    pub step_errors: u64,
}

/// One running node. Build it with [`NodeRuntime::open`], then call [`NodeRuntime::run`].
pub struct NodeRuntime {
    raw: Box<NodeRaw>,
    kv: Box<NodeKv>,
    udp: UdpTransport,
    /// Where the members are (see [`members`]).
    book: AddressBook,
    /// The configuration as of the last entry this runtime applied (the core switches at
    /// `advance`; this is what the address book follows).
    membership: Membership,
    /// Membership changes waiting to apply before they are answered (leader only).
    changes: Vec<PendingChange>,
    /// Configuration entries applied in the current ready round, copied out of the log.
    applied_configs: Vec<(Index, Vec<u8>)>,
    /// How long a removed member's address is kept (two election timeouts).
    forget_after: Duration,
    /// The commit index found on disk at start: configuration entries up to it are replayed.
    replay_until: Index,
    tick: Duration,
    next_tick: Instant,
    writes: HashMap<Index, PendingWrite>,
    reads: HashMap<u64, PendingRead>,
    /// Confirmed reads waiting for `applied >= index`, in confirmation order.
    confirmed: Vec<(Index, PendingRead)>,
    spare_buffers: Vec<Vec<u8>>,
    next_read_id: u64,
    was_leader: bool,
    scratch: Vec<u8>,
    reply_buf: Vec<u8>,
    shutdown: Shutdown,
    status: StatusCell<NodeStatus>,
    last_published: Instant,
    stats: RuntimeStats,
    /// `TINYRAFT_TRACE=1`: print every Raft message sent and received (kind only) to stderr.
    trace: bool,
}

impl NodeRuntime {
    /// Opens (or creates) the log in `options.data_dir`, binds the socket at this node's
    /// address, and recovers the state machine by re-applying the committed log.
    pub fn open(options: NodeOptions) -> Result<Self, RuntimeError> {
        let ids: Vec<NodeId> = options.peers.iter().map(|p| p.0).collect();
        let bind = options
            .peers
            .iter()
            .find(|p| p.0 == options.id)
            .map(|p| p.1)
            .ok_or_else(|| {
                RuntimeError::Config(format!("node {} is not in --peers", options.id))
            })?;
        // A joining node may list more nodes than a cluster has voters; only a bootstrapping
        // node's list is a configuration.
        let voters = if options.join {
            &[options.id][..]
        } else {
            &ids
        };
        let mut config =
            Config::new(options.id, voters).map_err(|e| RuntimeError::Config(e.to_string()))?;
        if options.join {
            config.bootstrap = Membership::EMPTY;
        }
        config.election_ticks = options.election_ticks;
        config.heartbeat_ticks = options.heartbeat_ticks;
        config.lease_reads = options.lease_reads;
        config.compact_after = options.compact_after;
        config.seed = options.id ^ seed_from_clock();
        config
            .validate(OUTBOX_BYTES)
            .map_err(|e| RuntimeError::Config(e.to_string()))?;

        // The starting configuration is persisted with a new data directory, so a restart
        // uses what is on disk (and what the log changed since), never the flags.
        let storage_options = FileStorageOptions::default()
            .segment_bytes(options.segment_bytes)
            .bootstrap_membership(config.bootstrap.clone());
        let storage = FileStorage::open(&options.data_dir, storage_options)?;
        let keys_max = options.keys_max;
        let (raw, kv) = build_on_big_stack(move || {
            let raw = NodeRaw::new(config, storage).map_err(|e| match e {
                tinyraft::Error::Storage(e) => RuntimeError::Storage(e),
                other => RuntimeError::Config(other.to_string()),
            })?;
            let kv = KvStore::new(HashKvMap::with_capacity(keys_max));
            Ok((Box::new(raw), Box::new(kv)))
        })?;

        let book = AddressBook::open(&options.data_dir, options.id, &options.peers)
            .map_err(|e| RuntimeError::Config(format!("address book: {e}")))?;
        let mut udp_config = UdpConfig::new(options.id, bind, options.cluster_id, options.key);
        udp_config.peers = book.entries().to_vec();
        let udp = UdpTransport::bind(udp_config)?;
        let membership = raw.membership().clone();
        let replay_until = raw.committed();

        Ok(Self {
            raw,
            kv,
            udp,
            book,
            membership,
            changes: Vec::new(),
            applied_configs: Vec::new(),
            forget_after: options.tick * options.election_ticks * 2,
            replay_until,
            tick: options.tick,
            next_tick: Instant::now() + options.tick,
            writes: HashMap::with_capacity(CLIENTS_PENDING_MAX),
            reads: HashMap::with_capacity(tinyraft::limits::READS_PENDING_MAX),
            confirmed: Vec::with_capacity(tinyraft::limits::READS_PENDING_MAX),
            spare_buffers: Vec::new(),
            next_read_id: 1,
            was_leader: false,
            scratch: vec![0; CLIENT_MESSAGE_BYTES_MAX],
            reply_buf: vec![0; CLIENT_MESSAGE_BYTES_MAX],
            shutdown: Shutdown::new(),
            status: StatusCell::new(),
            last_published: Instant::now(),
            stats: RuntimeStats::default(),
            trace: std::env::var_os("TINYRAFT_TRACE").is_some_and(|v| v == "1"),
        })
    }

    /// A handle that stops [`NodeRuntime::run`] from another thread or a signal handler.
    pub fn shutdown_handle(&self) -> Shutdown {
        self.shutdown.clone()
    }

    /// Where the runtime publishes its status (about every 100 ms) for in-process observers.
    pub fn status_cell(&self) -> StatusCell<NodeStatus> {
        self.status.clone()
    }

    /// The socket's address.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.udp.local_addr()
    }

    /// The Raft node (for inspection).
    pub fn raw(&self) -> &NodeRaw {
        &self.raw
    }

    /// The runtime's counters.
    pub fn stats(&self) -> RuntimeStats {
        self.stats
    }

    /// Runs until shutdown is requested or the log fails.
    pub fn run(mut self) -> Result<(), RuntimeError> {
        while !self.shutdown.is_requested() {
            self.turn()?;
        }
        Ok(())
    }

    /// One loop turn (see the module docs). Public for tests that drive a runtime by hand.
    pub fn turn(&mut self) -> Result<(), RuntimeError> {
        let wait = self.next_tick.saturating_duration_since(Instant::now());
        let mut timeout = Some(wait);
        for _ in 0..RECV_BATCH_MAX {
            let Some(incoming) = self.udp.recv(timeout)? else {
                break;
            };
            timeout = Some(Duration::ZERO);
            match incoming {
                Incoming::Raft { from, payload } => match tinyraft::Message::decode(payload) {
                    Ok(m) if m.from == from => {
                        if self.trace {
                            eprintln!(
                                "node {} <- {from} t{} {}",
                                self.raw.id(),
                                m.term,
                                body_name(&m.body)
                            );
                        }
                        if let Err(e) = self.raw.step(&m) {
                            // Refused messages change nothing; say so (a few times) so a
                            // misbehaving peer or a failing disk is visible.
                            self.stats.step_errors += 1;
                            if self.stats.step_errors <= 10 {
                                eprintln!(
                                    "node {}: message from {from} refused: {e}",
                                    self.raw.id()
                                );
                            }
                        }
                    }
                    _ => self.stats.bad_raft_messages += 1,
                },
                Incoming::ClientRequest { addr, payload, .. } => {
                    let n = payload.len().min(self.scratch.len());
                    self.scratch[..n].copy_from_slice(&payload[..n]);
                    self.handle_client(addr, n);
                }
                Incoming::ClientResponse { .. } => {}
            }
        }
        let now = Instant::now();
        let mut ticks = 0;
        while now >= self.next_tick {
            self.raw.tick();
            self.next_tick += self.tick;
            ticks += 1;
            if ticks > 10 {
                // We fell far behind (a stalled disk?): don't fire a burst of ticks.
                self.next_tick = now + self.tick;
            }
        }
        self.process_ready()?;
        self.forget_removed();
        if now.duration_since(self.last_published) >= Duration::from_millis(100) {
            self.last_published = now;
            self.status.publish(self.node_status());
        }
        Ok(())
    }

    fn leader_addr(&self, leader: Option<NodeId>) -> Option<SocketAddr> {
        self.book.get(leader?)
    }

    fn reply(&mut self, addr: SocketAddr, reply: &ClientReply) {
        if let Some(n) = protocol::encode(reply, &mut self.reply_buf) {
            let _ = self.udp.send_client(addr, &self.reply_buf[..n]);
            self.stats.client_replies += 1;
        }
    }

    fn redirect(&mut self, addr: SocketAddr, nonce: u64, proposed: bool) {
        let leader = self.raw.leader().filter(|&l| l != self.raw.id());
        let reply = ClientReply::Redirect {
            nonce,
            leader,
            leader_addr: self.leader_addr(leader),
            proposed,
        };
        self.reply(addr, &reply);
    }

    /// Handles the client request in `scratch[..len]`.
    fn handle_client(&mut self, addr: SocketAddr, len: usize) {
        let scratch = std::mem::take(&mut self.scratch);
        self.handle_client_bytes(addr, &scratch[..len]);
        self.scratch = scratch;
    }

    fn handle_client_bytes(&mut self, addr: SocketAddr, bytes: &[u8]) {
        let invalid = |nonce, reason: &str| ClientReply::Invalid {
            nonce,
            reason: reason.to_string(),
        };
        let (nonce, request) = match protocol::decode::<ClientRequest<'_>>(bytes) {
            Some(ClientRequest::Status { nonce }) => {
                let status = self.node_status();
                return self.reply(addr, &ClientReply::Status { nonce, status });
            }
            Some(ClientRequest::Kv { nonce, request }) => (nonce, request),
            Some(ClientRequest::ChangeMembers {
                nonce,
                changes,
                addrs,
            }) => return self.change_members(addr, nonce, &changes, &addrs),
            Some(ClientRequest::TransferLeader { nonce, to }) => {
                return self.transfer_leader(addr, nonce, to)
            }
            Some(ClientRequest::LeaderView { nonce }) => return self.leader_view(addr, nonce),
            None => return self.reply(addr, &invalid(0, "undecodable client request")),
        };
        let req = match Request::decode(request) {
            Ok(r) => r,
            Err(e) => return self.reply(addr, &invalid(nonce, &format!("bad KV request: {e}"))),
        };
        if let Err(e) = req.command.check_limits() {
            let response = Response::Err(e);
            return self.reply(addr, &ClientReply::Kv { nonce, response });
        }
        if self.raw.role() != Role::Leader {
            return self.redirect(addr, nonce, false);
        }
        if self.writes.len() + self.reads.len() + self.confirmed.len() >= CLIENTS_PENDING_MAX {
            return self.reply(addr, &ClientReply::Busy { nonce });
        }
        if req.is_read_only() {
            let id = self.next_read_id;
            self.next_read_id += 1;
            match self.raw.read_index(id) {
                Ok(()) => {
                    let mut buf = self.spare_buffers.pop().unwrap_or_default();
                    buf.clear();
                    buf.extend_from_slice(request);
                    let read = PendingRead {
                        addr,
                        nonce,
                        request: buf,
                    };
                    self.reads.insert(id, read);
                }
                Err(ReadError::NotLeader { .. }) => self.redirect(addr, nonce, false),
                Err(ReadError::Full) => self.reply(addr, &ClientReply::Busy { nonce }),
            }
            return;
        }
        match self.raw.propose(request) {
            Ok(index) => {
                let w = PendingWrite {
                    addr,
                    nonce,
                    client_id: req.client_id,
                    seq: req.seq,
                };
                self.writes.insert(index, w);
            }
            Err(e) => match e.kind {
                ProposeErrorKind::NotLeader { .. } => self.redirect(addr, nonce, false),
                ProposeErrorKind::Full | ProposeErrorKind::Transferring => {
                    self.reply(addr, &ClientReply::Busy { nonce })
                }
                ProposeErrorKind::TooLarge => {
                    self.reply(addr, &invalid(nonce, "request larger than an entry"))
                }
            },
        }
    }

    fn refuse(&mut self, addr: SocketAddr, nonce: u64, refusal: Refusal, message: String) {
        let reply = ClientReply::AdminRefused {
            nonce,
            refusal,
            message,
        };
        self.reply(addr, &reply);
    }

    /// Proposes a membership change; the answer waits for it to apply (see
    /// [`Self::apply_configs`]).
    fn change_members(
        &mut self,
        addr: SocketAddr,
        nonce: u64,
        changes: &[ConfChange],
        addrs: &[(NodeId, SocketAddr)],
    ) {
        if self.raw.role() != Role::Leader {
            return self.redirect(addr, nonce, false);
        }
        // A retry of a change still in flight waits for it rather than proposing it again.
        if self
            .changes
            .iter()
            .any(|c| (c.addr, c.nonce) == (addr, nonce))
        {
            return;
        }
        let context = match self.change_context(changes, addrs) {
            Ok(c) => c,
            Err(why) => return self.refuse(addr, nonce, Refusal::Refused, why),
        };
        match self
            .raw
            .propose_conf_change(changes, ConfChangeMode::Auto, context.as_bytes())
        {
            Ok(index) => self.changes.push(PendingChange {
                addr,
                nonce,
                index,
                leaving: false,
            }),
            Err(ConfChangeError::NotLeader { .. }) => self.redirect(addr, nonce, false),
            Err(
                e @ (ConfChangeError::Pending
                | ConfChangeError::InJoint
                | ConfChangeError::Transferring
                | ConfChangeError::Full),
            ) => self.refuse(addr, nonce, Refusal::Retry, e.to_string()),
            Err(e @ ConfChangeError::Unchanged) => {
                self.refuse(addr, nonce, Refusal::Unchanged, e.to_string())
            }
            Err(e @ ConfChangeError::NotMember(_)) => {
                self.refuse(addr, nonce, Refusal::NotMember, e.to_string())
            }
            Err(e) => self.refuse(addr, nonce, Refusal::Refused, e.to_string()),
        }
    }

    /// The context of a change's configuration entry: the address of every node it adds
    /// (given, or from this node's book), checked. `Err` says why the change is refused.
    fn change_context(
        &self,
        changes: &[ConfChange],
        addrs: &[(NodeId, SocketAddr)],
    ) -> Result<String, String> {
        let mut carried: Vec<(NodeId, SocketAddr)> = Vec::new();
        for &(id, a) in addrs {
            if let Some(why) = members::unusable_address(a) {
                return Err(format!("address {a} of node {id}: {why}"));
            }
            if let Some(other) = self.book.id_at(a).filter(|&o| o != id) {
                if self.membership.contains(other) || other == self.raw.id() {
                    return Err(format!("address {a} is node {other}'s"));
                }
            }
            if carried.iter().any(|c| c.0 == id || c.1 == a) {
                return Err(format!("node {id} or address {a} given twice"));
            }
            carried.push((id, a));
        }
        for c in changes {
            let (ConfChange::AddVoter(id) | ConfChange::AddLearner(id)) = *c else {
                continue;
            };
            if self.membership.contains(id) || carried.iter().any(|c| c.0 == id) {
                continue;
            }
            match self.book.get(id) {
                Some(a) => carried.push((id, a)),
                None => return Err(format!("no address known for node {id}: give one")),
            }
        }
        let context = members::encode_context(&carried);
        if context.len() > tinyraft::limits::CONF_CONTEXT_BYTES_MAX {
            return Err(format!(
                "addresses take {} bytes, more than a configuration entry carries ({})",
                context.len(),
                tinyraft::limits::CONF_CONTEXT_BYTES_MAX
            ));
        }
        Ok(context)
    }

    fn transfer_leader(&mut self, addr: SocketAddr, nonce: u64, to: NodeId) {
        match self.raw.transfer_leader(to) {
            Ok(()) => self.reply(addr, &ClientReply::TransferStarted { nonce }),
            Err(TransferError::NotLeader { .. }) => self.redirect(addr, nonce, false),
            Err(TransferError::NotVoter(id)) => self.refuse(
                addr,
                nonce,
                Refusal::Refused,
                format!("node {id} is not a voter"),
            ),
        }
    }

    fn leader_view(&mut self, addr: SocketAddr, nonce: u64) {
        if self.raw.role() != Role::Leader {
            return self.redirect(addr, nonce, false);
        }
        let me = self.raw.id();
        let m = self.raw.membership();
        let mut ids: Vec<NodeId> = m.members().collect();
        ids.sort_unstable();
        let peers = ids
            .into_iter()
            .map(|id| PeerView {
                id,
                matched: if id == me {
                    self.raw.last_index()
                } else {
                    self.raw.progress(id).map_or(0, |p| p.matched)
                },
                addr: self.book.get(id),
            })
            .collect();
        let view = LeaderView {
            id: me,
            term: self.raw.term(),
            commit: self.raw.committed(),
            last_index: self.raw.last_index(),
            members: MembersView::of(m),
            peers,
        };
        self.reply(addr, &ClientReply::LeaderView { nonce, view });
    }

    /// Follows the configuration entries applied this round, in order: learns the addresses
    /// they carry, schedules removed members' addresses to be forgotten, and answers the
    /// changes they complete.
    fn apply_configs(&mut self) {
        let mut book_changed = false;
        let configs = std::mem::take(&mut self.applied_configs);
        for (index, data) in &configs {
            let Ok(entry) = ConfigEntry::decode(data) else {
                continue; // The core counts and skips it too.
            };
            let me = self.raw.id();
            // Entries replayed after a restart do not override the command line (see
            // [`members`]); entries committed since do.
            let replayed = *index <= self.replay_until;
            for (id, addr) in members::decode_context(entry.context) {
                if id == me || (replayed && self.book.get(id).is_some()) {
                    continue;
                }
                book_changed |= self.book.set(id, addr);
                // Cannot fail: the id is neither 0 (not decoded) nor this node's.
                let _ = self.udp.set_peer(id, addr);
            }
            let next = entry.membership;
            let forget_at = Instant::now() + self.forget_after;
            for id in self.membership.members().filter(|&id| !next.contains(id)) {
                self.book.forget_at(id, forget_at);
            }
            for id in next.members() {
                self.book.keep(id);
            }
            let view = MembersView::of(&next);
            let joint = next.is_joint();
            self.membership = next;
            let mut done = Vec::new();
            self.changes.retain_mut(|c| {
                if c.index == *index || (c.leaving && c.index < *index) {
                    if joint {
                        c.leaving = true;
                        return true;
                    }
                    done.push(*c);
                    return false;
                }
                true
            });
            for c in done {
                let reply = ClientReply::Members {
                    nonce: c.nonce,
                    index: *index,
                    members: view.clone(),
                };
                self.reply(c.addr, &reply);
            }
        }
        self.applied_configs = configs;
        self.applied_configs.clear();
        if book_changed {
            self.save_book();
        }
    }

    /// Drops the addresses of members removed long enough ago (see [`members`]).
    fn forget_removed(&mut self) {
        let gone = self.book.expire(Instant::now());
        for &id in &gone {
            self.udp.remove_peer(id);
        }
        if !gone.is_empty() {
            self.save_book();
        }
    }

    /// A failed save is not fatal: the log still holds the addresses until it is compacted,
    /// and the next change saves the whole book again.
    fn save_book(&self) {
        if let Err(e) = self.book.save() {
            eprintln!("node {}: cannot save the address book: {e}", self.raw.id());
        }
    }

    /// One ready round: send early, persist (one sync), send the rest, apply, answer.
    fn process_ready(&mut self) -> Result<(), RuntimeError> {
        if !self.raw.has_ready() {
            return Ok(());
        }
        let ready = self.raw.ready();
        if let Some(soft) = ready.soft_state {
            let leader = soft.role == Role::Leader;
            if self.was_leader && !leader {
                self.abandon_pending();
            }
            self.was_leader = leader;
        }
        let synced = ready.must_sync;
        // A leader's appends and heartbeats leave before its own fsync (see the module docs).
        let (id, trace) = (self.raw.id(), self.trace);
        for (to, bytes) in self.raw.early_messages(&ready) {
            send_raft(&mut self.udp, trace, id, to, bytes);
        }
        let persisted = self.raw.persist(ready)?;
        // A snapshot installed this round (or found at start) replaces the state machine
        // before the entries after it are applied.
        self.raw
            .restore_snapshot(&persisted, &mut *self.kv)
            .map_err(RuntimeError::Snapshot)?;
        self.stats.ready_rounds += 1;
        self.stats.syncs += u64::from(synced);

        // Persisted: now, and only now, may the round's other messages leave.
        for (to, bytes) in self.raw.messages(&persisted) {
            send_raft(&mut self.udp, trace, id, to, bytes);
        }

        let (kv, writes, udp, buf, stats, configs) = (
            &mut self.kv,
            &mut self.writes,
            &mut self.udp,
            &mut self.reply_buf,
            &mut self.stats,
            &mut self.applied_configs,
        );
        self.raw.committed_entries(&persisted, &mut |e| {
            if e.kind == EntryKind::Config {
                configs.push((e.index, e.data.to_vec()));
                return;
            }
            if e.kind != EntryKind::Normal || e.is_noop() {
                return;
            }
            let response = kv.apply_entry(e.index, e.data);
            stats.applied_entries += 1;
            let Some(w) = writes.remove(&e.index) else {
                return;
            };
            let ours = Request::decode(e.data)
                .map(|r| (r.client_id, r.seq) == (w.client_id, w.seq))
                .unwrap_or(false);
            let reply = if ours {
                ClientReply::Kv {
                    nonce: w.nonce,
                    response,
                }
            } else {
                // Another leader's entry replaced ours at this index: ours never commits.
                ClientReply::Redirect {
                    nonce: w.nonce,
                    leader: None,
                    leader_addr: None,
                    proposed: false,
                }
            };
            if let Some(n) = protocol::encode(&reply, buf) {
                let _ = udp.send_client(w.addr, &buf[..n]);
                stats.client_replies += 1;
            }
        })?;
        // Before `advance`: the core starts sending to a new member there, so its address must
        // be known by then.
        self.apply_configs();
        for rs in self.raw.read_states(&persisted) {
            if let Some(read) = self.reads.remove(&rs.request) {
                self.confirmed.push((rs.index, read));
            }
        }
        self.raw.advance(persisted);
        self.serve_confirmed_reads();
        if self.raw.wants_snapshot() {
            self.raw
                .take_snapshot(&*self.kv)
                .map_err(RuntimeError::Snapshot)?;
            self.stats.snapshots += 1;
        }
        Ok(())
    }

    fn serve_confirmed_reads(&mut self) {
        let applied = self.raw.applied();
        let mut i = 0;
        while i < self.confirmed.len() {
            if self.confirmed[i].0 > applied {
                i += 1;
                continue;
            }
            let (_, read) = self.confirmed.swap_remove(i);
            let response = match Request::decode(&read.request) {
                Ok(req) => self.kv.query(&req.command),
                Err(_) => continue,
            };
            let reply = ClientReply::Kv {
                nonce: read.nonce,
                response,
            };
            self.reply(read.addr, &reply);
            self.spare_buffers.push(read.request);
        }
    }

    /// Leadership was lost: tell every waiting client to go elsewhere. Writes already proposed
    /// may still commit under the next leader, so their outcome is unknown (`proposed`).
    fn abandon_pending(&mut self) {
        let writes: Vec<PendingWrite> = self.writes.drain().map(|(_, w)| w).collect();
        for w in writes {
            self.redirect(w.addr, w.nonce, true);
        }
        // A change proposed here may still be applied by the next leader.
        let changes = std::mem::take(&mut self.changes);
        for c in changes {
            self.redirect(c.addr, c.nonce, true);
        }
        let reads: Vec<PendingRead> = self.reads.drain().map(|(_, r)| r).collect();
        let confirmed: Vec<PendingRead> = self.confirmed.drain(..).map(|(_, r)| r).collect();
        for r in reads.into_iter().chain(confirmed) {
            self.redirect(r.addr, r.nonce, false);
            self.spare_buffers.push(r.request);
        }
    }

    fn node_status(&self) -> NodeStatus {
        let m = self.raw.membership();
        NodeStatus {
            id: self.raw.id(),
            role: self.raw.role(),
            term: self.raw.term(),
            leader: self.raw.leader(),
            commit: self.raw.committed(),
            applied: self.raw.applied(),
            first_index: self.raw.first_index(),
            last_index: self.raw.last_index(),
            voters: m.voters.clone(),
            outgoing: m.outgoing.clone(),
            learners: m.learners.clone(),
            keys: self.kv.map().len() as u64,
            ready_rounds: self.stats.ready_rounds,
            syncs: self.stats.syncs,
            log_fsyncs: self.raw.storage().stats().log_fsyncs,
            applied_entries: self.stats.applied_entries,
        }
    }
}

/// The node is a fixed-size value of about a megabyte (its bounded buffers live inline, no
/// heap inside the core). Building it by value can take several copies of that on the stack
/// in an unoptimised build, so it is built on a short-lived thread with a large stack and
/// handed back boxed.
fn build_on_big_stack<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, RuntimeError> + Send + 'static,
) -> Result<T, RuntimeError> {
    std::thread::Builder::new()
        .name("tinyraft-build".into())
        .stack_size(64 << 20)
        .spawn(f)?
        .join()
        .map_err(|_| RuntimeError::Config("building the node panicked".into()))?
}

/// Sends one Raft message from node `id` (a lost datagram is Raft's to retry), tracing it if
/// asked to.
fn send_raft(udp: &mut UdpTransport, trace: bool, id: NodeId, to: NodeId, bytes: &[u8]) {
    if trace {
        if let Ok(m) = tinyraft::Message::decode(bytes) {
            eprintln!("node {id} -> {to} t{} {}", m.term, body_name(&m.body));
        }
    }
    let _ = udp.send(to, bytes);
}

/// A message's kind and its main numbers, for traces.
fn body_name(b: &tinyraft::Body<'_>) -> String {
    use tinyraft::Body::*;
    match b {
        Append {
            prev_index,
            entries,
            commit,
            ..
        } => {
            format!(
                "Append prev {prev_index} n {} commit {commit}",
                entries.len()
            )
        }
        AppendResponse { success, index, .. } => format!("AppendResponse {success} {index}"),
        Vote { pre, .. } => format!("Vote pre={pre}"),
        VoteResponse { pre, granted } => format!("VoteResponse pre={pre} {granted}"),
        Heartbeat { commit, .. } => format!("Heartbeat commit {commit}"),
        HeartbeatResponse { .. } => "HeartbeatResponse".into(),
        TimeoutNow => "TimeoutNow".into(),
        Snapshot {
            meta,
            offset,
            data,
            total_len,
        } => {
            format!(
                "Snapshot {} @{offset}+{} of {total_len}",
                meta.index,
                data.len()
            )
        }
        SnapshotResponse {
            index,
            next_offset,
            done,
            ..
        } => {
            format!("SnapshotResponse {index} next {next_offset} done {done}")
        }
        Committed { index, .. } => format!("Committed {index}"),
    }
}

/// Election-timeout randomness for a real deployment: differs per process start, so two
/// nodes restarted together do not time out in lockstep. (Simulations seed explicitly.)
fn seed_from_clock() -> u64 {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    t ^ u64::from(std::process::id()).rotate_left(32)
}
