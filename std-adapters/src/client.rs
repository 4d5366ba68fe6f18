//! The KV client: finds the leader, retries through elections and lost datagrams, and says
//! honestly whether a failed operation may still take effect.
//!
//! Each client has a random id and numbers its writes (`seq`, from 1), so a write that is
//! retried — because a reply was lost or a leader died — is applied once (the state
//! machine's session table answers the retry). Reads go through ReadIndex on the leader and
//! are linearizable.
//!
//! A failed operation is **definite** when it did not and will not take effect: every attempt
//! was refused before it reached a log. It is not definite when some attempt may have been
//! proposed (no reply came, or the leader lost leadership after proposing): the write may
//! still commit.
//!
//! The same client also administers the cluster: membership changes
//! ([`KvClient::change_members`]), leadership transfer ([`KvClient::transfer_leader`]) and the
//! leader's view of replication ([`KvClient::leader_view`]). A change the leader asks to retry
//! (another change is still being applied, the cluster is leaving a joint configuration) is
//! retried until the operation's deadline.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tinyraft::kv::{Command, KvError, Request, Response, SCAN_PAIRS_MAX};
use tinyraft::{ConfChange, Index, NodeId};

use crate::protocol::{
    self, ClientReply, ClientRequest, LeaderView, MembersView, NodeStatus, Refusal,
    CLIENT_MESSAGE_BYTES_MAX,
};
use crate::udp::{ClusterKey, UdpClientConfig, UdpClientSocket};

/// Why an operation failed.
#[derive(Debug)]
pub enum ClientError {
    /// No answer within the operation's deadline. `definite`: it did not and will not take
    /// effect.
    Timeout {
        /// See [`ClientError`].
        definite: bool,
    },
    /// The store refused the request (a limit, a session problem); nothing changed unless
    /// `definite` is false.
    Kv {
        /// The store's reason.
        error: KvError,
        /// Whether the operation certainly did not take effect.
        definite: bool,
    },
    /// The node could not understand the request; it was not proposed.
    Invalid(String),
    /// The leader refused an administrative request; nothing was proposed.
    Refused {
        /// What kind of refusal.
        refusal: Refusal,
        /// The leader's reason.
        message: String,
    },
    /// The client's socket failed.
    Io(io::Error),
}

impl ClientError {
    /// True if the operation certainly did not take effect.
    pub fn is_definite(&self) -> bool {
        match self {
            ClientError::Timeout { definite } | ClientError::Kv { definite, .. } => *definite,
            ClientError::Invalid(_) | ClientError::Refused { .. } => true,
            ClientError::Io(_) => false,
        }
    }

    /// A short machine-readable name (`timeout`, `key_too_long`, ...).
    pub fn code(&self) -> String {
        match self {
            ClientError::Timeout { .. } => "timeout".into(),
            ClientError::Kv { error, .. } => kv_error_code(*error).into(),
            ClientError::Invalid(_) => "invalid".into(),
            ClientError::Refused { refusal, .. } => match refusal {
                Refusal::Retry => "busy",
                Refusal::Unchanged => "unchanged",
                Refusal::NotMember => "not_member",
                Refusal::Refused => "refused",
            }
            .into(),
            ClientError::Io(_) => "io".into(),
        }
    }
}

/// The snake_case name of a store error, as the line protocol prints it.
pub fn kv_error_code(e: KvError) -> &'static str {
    match e {
        KvError::KeyTooLong => "key_too_long",
        KvError::ValueTooLong => "value_too_long",
        KvError::KeysFull => "keys_full",
        KvError::NoSpace => "store_full",
        KvError::NotReadOnly => "not_read_only",
        KvError::AlreadyApplied => "already_applied",
        KvError::SessionExpired => "session_expired",
        KvError::Stale => "stale_request",
        KvError::InvalidSession => "invalid_session",
        KvError::Malformed => "malformed_request",
    }
}

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientError::Timeout { definite: true } => {
                f.write_str("timed out; the operation was not applied")
            }
            ClientError::Timeout { definite: false } => {
                f.write_str("timed out; the operation may or may not have been applied")
            }
            ClientError::Kv { error, .. } => write!(f, "refused by the store: {error}"),
            ClientError::Invalid(why) => write!(f, "invalid request: {why}"),
            ClientError::Refused { message, .. } => write!(f, "refused by the leader: {message}"),
            ClientError::Io(e) => write!(f, "socket error: {e}"),
        }
    }
}

impl std::error::Error for ClientError {}

impl From<io::Error> for ClientError {
    fn from(e: io::Error) -> Self {
        ClientError::Io(e)
    }
}

/// A key and its value.
pub type Pair = (Vec<u8>, Vec<u8>);

/// Outcome of a compare-and-swap that was applied.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CasOutcome {
    /// The value matched and was replaced.
    Swapped,
    /// The value did not match; nothing changed.
    Mismatch,
}

/// Outcome of a membership change that did not fail.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MembersOutcome {
    /// The change was applied on the leader: this configuration, from the entry at `index`,
    /// is in force.
    Applied {
        /// Index of the configuration entry.
        index: Index,
        /// The configuration.
        members: MembersView,
    },
    /// The configuration already was as asked (perhaps by an earlier attempt of this very
    /// change whose answer was lost).
    AlreadySo,
}

/// A client of a tinyraft KV cluster.
pub struct KvClient {
    sock: UdpClientSocket,
    peers: Vec<SocketAddr>,
    /// Index into `peers` of the node we believe leads.
    target: usize,
    seq: u64,
    nonce: u64,
    /// How long to wait for one attempt's reply before trying another node.
    pub attempt_timeout: Duration,
    /// How long one operation may take in all.
    pub op_timeout: Duration,
    req_buf: Vec<u8>,
    msg_buf: Vec<u8>,
}

impl KvClient {
    /// A client of the nodes at `peers`, with a random client id.
    pub fn new(peers: Vec<SocketAddr>, key: ClusterKey, cluster_id: u64) -> io::Result<Self> {
        if peers.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "no peers given",
            ));
        }
        let client_id = random_id();
        let mut config = UdpClientConfig::new(client_id, cluster_id, key);
        if peers[0].is_ipv6() {
            config.bind = "[::]:0".parse().expect("valid literal");
        }
        let sock = UdpClientSocket::bind(config)?;
        let target = (client_id % peers.len() as u64) as usize;
        Ok(Self {
            sock,
            peers,
            target,
            seq: 0,
            nonce: client_id.rotate_left(17),
            attempt_timeout: Duration::from_millis(300),
            op_timeout: Duration::from_secs(10),
            req_buf: vec![0; CLIENT_MESSAGE_BYTES_MAX],
            msg_buf: vec![0; CLIENT_MESSAGE_BYTES_MAX],
        })
    }

    /// The nodes this client talks to.
    pub fn peers(&self) -> &[SocketAddr] {
        &self.peers
    }

    /// Adds a node to talk to (a client also learns the leader's address from redirects).
    pub fn add_peer(&mut self, addr: SocketAddr) {
        if !self.peers.contains(&addr) {
            self.peers.push(addr);
        }
    }

    /// This client's id.
    pub fn client_id(&self) -> u64 {
        self.sock.client_id()
    }

    /// Reads `key`.
    pub fn get(&mut self, key: &[u8]) -> Result<Option<Vec<u8>>, ClientError> {
        match self.execute(Command::Get { key })? {
            Response::Value(v) => Ok(v.map(|v| v.to_vec())),
            other => Err(unexpected(other)),
        }
    }

    /// Sets `key` to `value`.
    pub fn put(&mut self, key: &[u8], value: &[u8]) -> Result<(), ClientError> {
        match self.execute(Command::Put { key, value })? {
            Response::Ok => Ok(()),
            other => Err(unexpected(other)),
        }
    }

    /// Removes `key`; true if it existed.
    pub fn delete(&mut self, key: &[u8]) -> Result<bool, ClientError> {
        match self.execute(Command::Delete { key })? {
            Response::Deleted { existed } => Ok(existed),
            other => Err(unexpected(other)),
        }
    }

    /// Sets `key` to `new` if its value is `expected` (`None`: absent).
    pub fn cas(
        &mut self,
        key: &[u8],
        expected: Option<&[u8]>,
        new: &[u8],
    ) -> Result<CasOutcome, ClientError> {
        let cmd = Command::CompareAndSwap {
            key,
            expected,
            new: Some(new),
        };
        match self.execute(cmd)? {
            Response::Ok => Ok(CasOutcome::Swapped),
            Response::CasMismatch => Ok(CasOutcome::Mismatch),
            other => Err(unexpected(other)),
        }
    }

    /// Every pair whose key starts with `prefix`, in key order, at most `pairs_max`. Each page
    /// is a linearizable read; a scan of several pages is not one atomic snapshot.
    pub fn scan(&mut self, prefix: &[u8], pairs_max: usize) -> Result<Vec<Pair>, ClientError> {
        let mut out: Vec<Pair> = Vec::new();
        loop {
            let after = out.last().map(|(k, _)| k.clone());
            let cmd = Command::Scan {
                prefix,
                start_after: after.as_deref(),
                limit: SCAN_PAIRS_MAX as u16,
            };
            let page = match self.execute(cmd)? {
                Response::Page(p) => p,
                other => return Err(unexpected(other)),
            };
            for (k, v) in page.iter() {
                if out.len() >= pairs_max {
                    return Ok(out);
                }
                out.push((k.to_vec(), v.to_vec()));
            }
            if !page.more() || page.is_empty() {
                return Ok(out);
            }
        }
    }

    /// Asks the node at `addr` for its status.
    pub fn status(&mut self, addr: SocketAddr) -> Result<NodeStatus, ClientError> {
        self.nonce += 1;
        let nonce = self.nonce;
        let n = protocol::encode(&ClientRequest::Status { nonce }, &mut self.msg_buf)
            .ok_or_else(|| ClientError::Invalid("status request too large".into()))?;
        let deadline = Instant::now() + self.attempt_timeout * 3;
        for _ in 0..3 {
            let _ = self.sock.send_request(addr, &self.msg_buf[..n]);
            if let Some(ClientReply::Status { status, .. }) = self.wait_reply(nonce, deadline)? {
                return Ok(status);
            }
        }
        Err(ClientError::Timeout { definite: true })
    }

    /// Runs one command to completion (see the module docs for retries and definiteness).
    pub fn execute(&mut self, command: Command<'_>) -> Result<Response, ClientError> {
        let write = !command.is_read_only();
        if write {
            self.seq += 1;
        }
        let req = Request {
            client_id: self.client_id(),
            seq: self.seq.max(1),
            command,
        };
        if let Err(error) = command.check_limits() {
            if write {
                // The seq was never sent: reuse it for the next write.
                self.seq -= 1;
            }
            return Err(ClientError::Kv {
                error,
                definite: true,
            });
        }
        let len = req
            .encode(&mut self.req_buf)
            .ok_or_else(|| ClientError::Invalid("request too large".into()))?;
        self.nonce += 1;
        let nonce = self.nonce;
        let msg = ClientRequest::Kv {
            nonce,
            request: &self.req_buf[..len],
        };
        let n = protocol::encode(&msg, &mut self.msg_buf)
            .ok_or_else(|| ClientError::Invalid("request too large".into()))?;

        let deadline = Instant::now() + self.op_timeout;
        let mut maybe_proposed = false;
        match self.call(n, nonce, write, deadline, &mut maybe_proposed)? {
            ClientReply::Kv { response, .. } => match response {
                Response::Err(error) => Err(ClientError::Kv {
                    error,
                    // Expired/stale sessions refuse this copy, but an earlier copy of the
                    // same write may have been applied.
                    definite: !(matches!(error, KvError::SessionExpired | KvError::Stale)
                        || write && maybe_proposed),
                }),
                r => Ok(r),
            },
            ClientReply::Invalid { reason, .. } => Err(ClientError::Invalid(reason)),
            other => Err(ClientError::Invalid(format!("unexpected reply {other:?}"))),
        }
    }

    /// Changes the membership: `changes` together (one step if at most one voter changes,
    /// else through a joint configuration), with the addresses of the nodes they add.
    /// Returns once the change is applied on the leader (a joint one: once the cluster has
    /// left the joint configuration). A leader busy with another change is asked again until
    /// [`KvClient::op_timeout`].
    pub fn change_members(
        &mut self,
        changes: &[ConfChange],
        addrs: &[(NodeId, SocketAddr)],
    ) -> Result<MembersOutcome, ClientError> {
        self.nonce += 1;
        let nonce = self.nonce;
        let msg = ClientRequest::ChangeMembers {
            nonce,
            changes: changes.to_vec(),
            addrs: addrs.to_vec(),
        };
        let n = protocol::encode(&msg, &mut self.msg_buf)
            .ok_or_else(|| ClientError::Invalid("request too large".into()))?;
        let deadline = Instant::now() + self.op_timeout;
        let mut maybe_proposed = false;
        let mut backoff = Duration::from_millis(20);
        loop {
            match self.call(n, nonce, true, deadline, &mut maybe_proposed)? {
                ClientReply::Members { index, members, .. } => {
                    return Ok(MembersOutcome::Applied { index, members })
                }
                ClientReply::AdminRefused {
                    refusal, message, ..
                } => {
                    let all_removals = changes.iter().all(|c| matches!(c, ConfChange::Remove(_)));
                    match refusal {
                        Refusal::Unchanged => return Ok(MembersOutcome::AlreadySo),
                        // An earlier attempt, whose answer was lost, removed it.
                        Refusal::NotMember if maybe_proposed && all_removals => {
                            return Ok(MembersOutcome::AlreadySo)
                        }
                        Refusal::Retry if Instant::now() + backoff < deadline => {
                            std::thread::sleep(backoff);
                            backoff = (backoff * 2).min(Duration::from_millis(200));
                        }
                        Refusal::Retry if maybe_proposed => {
                            return Err(ClientError::Timeout { definite: false })
                        }
                        _ => return Err(ClientError::Refused { refusal, message }),
                    }
                }
                ClientReply::Invalid { reason, .. } => return Err(ClientError::Invalid(reason)),
                other => return Err(ClientError::Invalid(format!("unexpected reply {other:?}"))),
            }
        }
    }

    /// Asks the leader to hand leadership to `to`. Returns once the transfer has started;
    /// watch the nodes' status to see it complete (a target that does not take over within
    /// an election timeout makes the leader give up and keep leading).
    pub fn transfer_leader(&mut self, to: NodeId) -> Result<(), ClientError> {
        self.nonce += 1;
        let nonce = self.nonce;
        let n = protocol::encode(
            &ClientRequest::TransferLeader { nonce, to },
            &mut self.msg_buf,
        )
        .ok_or_else(|| ClientError::Invalid("request too large".into()))?;
        let deadline = Instant::now() + self.op_timeout;
        let mut maybe_started = false;
        match self.call(n, nonce, true, deadline, &mut maybe_started)? {
            ClientReply::TransferStarted { .. } => Ok(()),
            ClientReply::AdminRefused {
                refusal, message, ..
            } => Err(ClientError::Refused { refusal, message }),
            ClientReply::Invalid { reason, .. } => Err(ClientError::Invalid(reason)),
            other => Err(ClientError::Invalid(format!("unexpected reply {other:?}"))),
        }
    }

    /// The leader's view: its configuration, and how far each member's log matches its own.
    pub fn leader_view(&mut self) -> Result<LeaderView, ClientError> {
        self.nonce += 1;
        let nonce = self.nonce;
        let n = protocol::encode(&ClientRequest::LeaderView { nonce }, &mut self.msg_buf)
            .ok_or_else(|| ClientError::Invalid("request too large".into()))?;
        let deadline = Instant::now() + self.op_timeout;
        let mut unused = false;
        match self.call(n, nonce, false, deadline, &mut unused)? {
            ClientReply::LeaderView { view, .. } => Ok(view),
            ClientReply::Invalid { reason, .. } => Err(ClientError::Invalid(reason)),
            other => Err(ClientError::Invalid(format!("unexpected reply {other:?}"))),
        }
    }

    /// Sends the request in `msg_buf[..n]` until a node gives an answer other than a redirect
    /// or "busy", or `deadline` passes. Finds the leader on the way. `maybe_proposed` is set
    /// once an attempt of a `write` may have reached a log (no answer, or a leader that lost
    /// leadership after proposing it); a timeout is definite unless it is set.
    fn call(
        &mut self,
        n: usize,
        nonce: u64,
        write: bool,
        deadline: Instant,
        maybe_proposed: &mut bool,
    ) -> Result<ClientReply, ClientError> {
        let mut backoff = Duration::from_millis(5);
        loop {
            if Instant::now() >= deadline {
                return Err(ClientError::Timeout {
                    definite: !(write && *maybe_proposed),
                });
            }
            let to = self.peers[self.target];
            let _ = self.sock.send_request(to, &self.msg_buf[..n]);
            let attempt_deadline = (Instant::now() + self.attempt_timeout).min(deadline);
            match self.wait_reply(nonce, attempt_deadline)? {
                Some(ClientReply::Redirect {
                    leader_addr,
                    proposed,
                    ..
                }) => {
                    *maybe_proposed |= proposed;
                    // A leader this client was not told about (added to the cluster later)
                    // is learned from the redirect.
                    if let Some(a) = leader_addr {
                        self.add_peer(a);
                    }
                    match leader_addr.and_then(|a| self.peers.iter().position(|&p| p == a)) {
                        Some(i) if i != self.target => self.target = i,
                        _ => {
                            // No leader known yet (an election is running): try the next
                            // node after a pause.
                            self.target = (self.target + 1) % self.peers.len();
                            std::thread::sleep(backoff);
                            backoff = (backoff * 2).min(Duration::from_millis(100));
                        }
                    }
                }
                Some(ClientReply::Busy { .. }) => {
                    std::thread::sleep(backoff);
                    backoff = (backoff * 2).min(Duration::from_millis(100));
                }
                Some(ClientReply::Status { .. }) => {}
                Some(reply) => return Ok(reply),
                None => {
                    // No answer: the request or the reply was lost, or the node is down.
                    *maybe_proposed |= write;
                    self.target = (self.target + 1) % self.peers.len();
                }
            }
        }
    }

    /// Waits until `deadline` for the reply to `nonce`, skipping replies to earlier requests.
    fn wait_reply(&mut self, nonce: u64, deadline: Instant) -> io::Result<Option<ClientReply>> {
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(None);
            }
            let Some(r) = self.sock.recv_response(Some(left))? else {
                return Ok(None);
            };
            if let Some(reply) = protocol::decode::<ClientReply>(r.payload) {
                if reply.nonce() == nonce {
                    return Ok(Some(reply));
                }
            }
        }
    }
}

fn unexpected(r: Response) -> ClientError {
    ClientError::Invalid(format!("unexpected response {r:?}"))
}

/// A random non-zero id from the OS's hasher seed (no extra dependency).
fn random_id() -> u64 {
    use std::collections::hash_map::RandomState;
    use std::hash::{BuildHasher, Hasher};
    let mut h = RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    h.write_u32(std::process::id());
    h.finish() | 1
}
