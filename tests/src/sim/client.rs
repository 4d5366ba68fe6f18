//! Simulated clients with the real client's semantics (`tinyraft_std::client::KvClient`).
//!
//! - A client numbers its writes (`seq`) and resends the *same* request, with the same `seq`,
//!   until it gets an answer or gives up, so the store's session table applies it once. Each
//!   attempt has its own nonce: the answer may come from any attempt, but a redirect or
//!   "busy" counts only from the latest (a delayed or duplicated one from an earlier attempt
//!   once made a client forget that the copy it had just sent was proposed).
//! - It looks for the leader: a redirect naming a leader sends it there; one naming none sends
//!   it to the next node after a pause; no answer within the attempt timeout also moves on.
//!   "Next" is the next in its own round of the nodes, which redirects do not move: a node
//!   that was removed without learning it may keep naming a leader that is gone, and moving
//!   on from wherever a redirect led could send the client between the two for ever.
//! - When it gives up (the operation timeout), the outcome is **definite** only if no attempt
//!   could have been proposed; a write that may have been proposed (no answer came, or the
//!   leader said "proposed" when it lost leadership) has an **unknown** outcome. Answers
//!   `SessionExpired`/`Stale` are unknown too.
//!
//! The workload is TinyKV's (`GenericTest`): each client either puts its next key
//! `"c<client>/<j>"` with value `"x <client> <j> <round> y"` or scans its own keys and checks
//! that they are exactly its acknowledged puts, plus possibly some whose outcome is unknown, in
//! order, without duplicates. On top of that some operations hit a few shared keys (get, put,
//! compare-and-swap, delete) so that linearizability is tested under contention. At the end of
//! a round each client scans once more and deletes its keys, as TinyKV does.

use std::collections::{BTreeSet, VecDeque};

use tinyraft::fault::{FaultRng, LinkFaults, SplitMix64};
use tinyraft::kv::{Command, KvError, Request, Response, REQUEST_BYTES_MAX};
use tinyraft::NodeId;

use super::checker::{KeyOp, Op, Recorded};
use super::network::{send_client_packet, Addr, Payload, Reply, SharedWire};

/// A key and its value.
type Pair = (Vec<u8>, Vec<u8>);

/// Shared keys all clients contend on.
pub const SHARED_KEYS: u64 = 3;
/// Pairs per scan page the clients ask for (small, so scans take several pages).
pub const SCAN_LIMIT: u16 = 8;

/// An operation, owning its bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Cmd {
    /// Get a key.
    Get(Vec<u8>),
    /// Put a key.
    Put(Vec<u8>, Vec<u8>),
    /// Delete a key.
    Delete(Vec<u8>),
    /// Compare-and-swap.
    Cas(Vec<u8>, Option<Vec<u8>>, Option<Vec<u8>>),
    /// One page of a scan.
    Scan(Vec<u8>, Option<Vec<u8>>),
}

impl Cmd {
    fn command(&self) -> Command<'_> {
        match self {
            Cmd::Get(k) => Command::Get { key: k },
            Cmd::Put(k, v) => Command::Put { key: k, value: v },
            Cmd::Delete(k) => Command::Delete { key: k },
            Cmd::Cas(k, e, n) => Command::CompareAndSwap {
                key: k,
                expected: e.as_deref(),
                new: n.as_deref(),
            },
            Cmd::Scan(p, a) => Command::Scan {
                prefix: p,
                start_after: a.as_deref(),
                limit: SCAN_LIMIT,
            },
        }
    }

    fn is_write(&self) -> bool {
        !self.command().is_read_only()
    }
}

/// Timeouts of a client, in simulation steps.
#[derive(Clone, Copy, Debug)]
pub struct ClientTimeouts {
    /// Wait this long for an attempt's answer before trying another node.
    pub attempt: u64,
    /// Give up on an operation after this long (None: never).
    pub op: Option<u64>,
    /// Pause after a redirect to nowhere or a "busy".
    pub backoff: u64,
}

/// What a client is doing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Random operations.
    Running,
    /// Finishing its current operation; starting no new one.
    Draining,
    /// Scripted end-of-round work: a full scan with the check, then deleting its keys.
    Checking,
    /// Nothing to do.
    Idle,
}

struct InFlight {
    cmd: Cmd,
    write: bool,
    bytes: Vec<u8>,
    /// The nonce of the operation's first attempt: replies to any attempt carry one at least
    /// this large.
    first_nonce: u64,
    /// The nonce of the latest attempt (each send takes a new one).
    nonce: u64,
    call: u64,
    started: u64,
    attempt_deadline: u64,
    resend_at: Option<u64>,
    maybe_proposed: bool,
}

/// The end of an operation.
#[derive(Debug)]
enum Done {
    Answer(Box<Response>),
    /// Gave up; `definite`: it did not and will not take effect.
    GaveUp {
        definite: bool,
    },
}

/// Everything a client touches outside itself.
pub struct ClientCtx<'a> {
    /// The network.
    pub wire: &'a SharedWire,
    /// Randomness for client-link faults.
    pub net_rng: &'a mut SplitMix64,
    /// Faults of client links.
    pub faults: LinkFaults,
    /// Logical clock for the history (one tick per invocation or answer).
    pub clock: &'a mut u64,
    /// The history being recorded.
    pub history: &'a mut Vec<Op>,
    /// Failures of TinyKV's checks.
    pub violations: &'a mut Vec<String>,
    /// The node ids.
    pub nodes: &'a [NodeId],
    /// The current step.
    pub now: u64,
    /// The current round.
    pub round: u64,
}

/// One simulated client.
pub struct SimClient {
    /// Index among the clients (its network address).
    pub index: usize,
    client_id: u64,
    seq: u64,
    nonce: u64,
    target: usize,
    /// Its round of the nodes: where it moves on from (redirects do not move it).
    cursor: usize,
    rng: SplitMix64,
    /// Timeouts.
    pub timeouts: ClientTimeouts,
    /// What it is doing.
    pub phase: Phase,
    current: Option<InFlight>,
    /// Next own key number this round.
    j: u64,
    acked: BTreeSet<u64>,
    unknown: BTreeSet<u64>,
    /// Pairs seen so far by the scan in progress, and whether it is the end-of-round one.
    scan: Option<(Vec<Pair>, bool)>,
    script: VecDeque<Cmd>,
    /// Last value seen of each shared key (what a CAS expects).
    shared_seen: Vec<Option<Vec<u8>>>,
    values_made: u64,
    /// Operations completed with an answer.
    pub ops_answered: u64,
    /// Operations given up with an unknown outcome.
    pub ops_unknown: u64,
    /// Operations given up definitely not applied.
    pub ops_failed: u64,
    /// Step at which the last operation finished.
    pub last_done: u64,
}

fn own_prefix(client: usize) -> Vec<u8> {
    format!("c{client:02}/").into_bytes()
}

fn own_key(client: usize, j: u64) -> Vec<u8> {
    format!("c{client:02}/{j:06}").into_bytes()
}

fn own_value(client: usize, j: u64, round: u64) -> Vec<u8> {
    format!("x {client} {j} {round} y").into_bytes()
}

impl SimClient {
    /// Client number `index`, with a unique non-zero session id.
    pub fn new(index: usize, seed: u64, timeouts: ClientTimeouts, nodes: usize) -> Self {
        let mut rng = SplitMix64::new(seed);
        let client_id = (rng.next_u64() << 8) | (index as u64 + 1);
        let target = rng.below(nodes as u64) as usize;
        Self {
            index,
            client_id,
            seq: 0,
            nonce: 0,
            target,
            cursor: target,
            rng,
            timeouts,
            phase: Phase::Running,
            current: None,
            j: 0,
            acked: BTreeSet::new(),
            unknown: BTreeSet::new(),
            scan: None,
            script: VecDeque::new(),
            shared_seen: vec![None; SHARED_KEYS as usize],
            values_made: 0,
            ops_answered: 0,
            ops_unknown: 0,
            ops_failed: 0,
            last_done: 0,
        }
    }

    /// True if an operation is in progress.
    pub fn busy(&self) -> bool {
        self.current.is_some()
    }

    /// True if it has nothing left to do in this phase.
    pub fn settled(&self) -> bool {
        self.current.is_none()
            && self.scan.is_none()
            && self.script.is_empty()
            && matches!(self.phase, Phase::Idle | Phase::Draining)
    }

    /// Starts the end-of-round work: a checked scan of its keys, then deleting them.
    pub fn start_checking(&mut self) {
        self.phase = Phase::Checking;
        self.scan = Some((Vec::new(), true));
        self.script
            .push_back(Cmd::Scan(own_prefix(self.index), None));
    }

    /// Queues `cmd` to run before any random operation.
    pub fn push_script(&mut self, cmd: Cmd) {
        self.script.push_back(cmd);
    }

    /// Own keys written this round.
    pub fn own_keys(&self) -> u64 {
        self.j
    }

    /// Starts a new round: own keys start again from 0.
    pub fn new_round(&mut self) {
        self.phase = Phase::Running;
        self.j = 0;
        self.acked.clear();
        self.unknown.clear();
    }

    /// A one-line account of what the client is doing, for failure reports.
    pub fn describe(&self) -> String {
        match &self.current {
            Some(c) => format!(
                "client {} {:?}: {:?} since tick {}, to node index {}, proposed? {}",
                self.index,
                self.phase,
                c.cmd,
                c.started / super::STEPS_PER_TICK,
                self.target,
                c.maybe_proposed
            ),
            None => format!("client {} {:?}: idle", self.index, self.phase),
        }
    }

    /// Waiting for an answer, the client's operation started at this step (None: idle).
    pub fn op_started(&self) -> Option<u64> {
        self.current.as_ref().map(|c| c.started)
    }

    fn next_random(&mut self, ctx: &ClientCtx<'_>) -> Cmd {
        let r = self.rng.below(100);
        if r < 40 {
            let j = self.j;
            self.j += 1;
            Cmd::Put(own_key(self.index, j), own_value(self.index, j, ctx.round))
        } else if r < 60 {
            self.scan = Some((Vec::new(), false));
            Cmd::Scan(own_prefix(self.index), None)
        } else {
            let k = self.rng.below(SHARED_KEYS);
            let key = format!("s{k}").into_bytes();
            // Every value written is unique, so the checker can tell writes apart.
            self.values_made += 1;
            let fresh = format!("v{}.{}", self.index, self.values_made).into_bytes();
            match self.rng.below(10) {
                0..=3 => Cmd::Get(key),
                4..=5 => Cmd::Put(key, fresh),
                6..=8 => Cmd::Cas(key, self.shared_seen[k as usize].clone(), Some(fresh)),
                _ => Cmd::Delete(key),
            }
        }
    }

    /// Does what is due at this step: start an operation, resend, or give up.
    pub fn act(&mut self, ctx: &mut ClientCtx<'_>) {
        if self.current.is_none() {
            let cmd = match self.script.pop_front() {
                Some(c) => c,
                None if self.phase == Phase::Running => self.next_random(ctx),
                None => {
                    if self.phase == Phase::Checking {
                        self.phase = Phase::Idle;
                    }
                    return;
                }
            };
            self.begin(cmd, ctx);
            return;
        }
        let now = ctx.now;
        let cur = self.current.as_mut().expect("in flight");
        if let Some(limit) = self.timeouts.op {
            if now >= cur.started + limit && self.phase == Phase::Running {
                // As KvClient: the attempt being waited on ends with the operation, and an
                // unanswered write attempt may have been proposed.
                if cur.resend_at.is_none() {
                    cur.maybe_proposed |= cur.write;
                }
                let definite = !(cur.write && cur.maybe_proposed);
                return self.finish(Done::GaveUp { definite }, ctx);
            }
        }
        if cur.resend_at.is_some_and(|t| now >= t) {
            self.send(ctx);
        } else if cur.resend_at.is_none() && now >= cur.attempt_deadline {
            // No answer: the request or the reply was lost, or the node is down.
            cur.maybe_proposed |= cur.write;
            self.cursor = (self.cursor + 1) % ctx.nodes.len();
            self.target = self.cursor;
            self.send(ctx);
        }
    }

    fn begin(&mut self, cmd: Cmd, ctx: &mut ClientCtx<'_>) {
        let write = cmd.is_write();
        if write {
            self.seq += 1;
        }
        let req = Request {
            client_id: self.client_id,
            seq: self.seq.max(1),
            command: cmd.command(),
        };
        let mut buf = vec![0u8; REQUEST_BYTES_MAX];
        let n = req.encode(&mut buf).expect("request fits");
        buf.truncate(n);
        *ctx.clock += 1;
        self.current = Some(InFlight {
            cmd,
            write,
            bytes: buf,
            first_nonce: self.nonce + 1,
            nonce: 0,
            call: *ctx.clock,
            started: ctx.now,
            attempt_deadline: 0,
            resend_at: None,
            maybe_proposed: false,
        });
        self.send(ctx);
    }

    fn send(&mut self, ctx: &mut ClientCtx<'_>) {
        let cur = self.current.as_mut().expect("in flight");
        self.nonce += 1;
        cur.nonce = self.nonce;
        cur.resend_at = None;
        cur.attempt_deadline = ctx.now + self.timeouts.attempt;
        let payload = Payload::Request {
            client: self.index,
            nonce: cur.nonce,
            bytes: cur.bytes.clone(),
        };
        let to = Addr::Node(ctx.nodes[self.target]);
        send_client_packet(ctx.wire, ctx.net_rng, ctx.faults, to, payload);
    }

    /// Handles a node's reply.
    pub fn on_reply(&mut self, nonce: u64, reply: Reply, ctx: &mut ClientCtx<'_>) {
        let Some(cur) = self.current.as_mut() else {
            return;
        };
        if nonce < cur.first_nonce {
            return; // an answer to an earlier operation
        }
        // The operation's answer may come from any of its attempts; a redirect or "busy" from
        // an earlier one (delayed, or a duplicate) says nothing about the copy just sent, and
        // taking it for that copy's answer would forget that this copy may be proposed.
        let latest = nonce == cur.nonce;
        match reply {
            Reply::Kv(response) => {
                if let Response::Err(e) = *response {
                    if matches!(e, KvError::SessionExpired | KvError::Stale) {
                        return self.finish(Done::GaveUp { definite: false }, ctx);
                    }
                    if cur.write && cur.maybe_proposed {
                        return self.finish(Done::GaveUp { definite: false }, ctx);
                    }
                }
                self.finish(Done::Answer(response), ctx)
            }
            Reply::Redirect { proposed, .. } if !latest => cur.maybe_proposed |= proposed,
            Reply::Busy if !latest => {}
            Reply::Redirect { leader, proposed } => {
                cur.maybe_proposed |= proposed;
                match leader.and_then(|l| ctx.nodes.iter().position(|&n| n == l)) {
                    Some(i) if i != self.target => {
                        self.target = i;
                        self.send(ctx);
                    }
                    _ => {
                        self.cursor = (self.cursor + 1) % ctx.nodes.len();
                        self.target = self.cursor;
                        cur.resend_at = Some(ctx.now + self.timeouts.backoff);
                    }
                }
            }
            Reply::Busy => cur.resend_at = Some(ctx.now + self.timeouts.backoff),
        }
    }

    fn finish(&mut self, done: Done, ctx: &mut ClientCtx<'_>) {
        let cur = self.current.take().expect("in flight");
        self.last_done = ctx.now;
        let ret = match &done {
            Done::Answer(_) => {
                *ctx.clock += 1;
                self.ops_answered += 1;
                Some(*ctx.clock)
            }
            Done::GaveUp { definite: true } => {
                self.ops_failed += 1;
                self.after_failure(&cur.cmd, true);
                return;
            }
            Done::GaveUp { definite: false } => {
                self.ops_unknown += 1;
                None
            }
        };
        let resp = match done {
            Done::Answer(r) => Some(*r),
            Done::GaveUp { .. } => None,
        };
        if let Some(Response::Err(e)) = &resp {
            ctx.violations.push(format!(
                "client {}: {:?} refused with {e:?}: the simulation sizes the store so that \
                 this never happens",
                self.index, cur.cmd
            ));
            return;
        }
        let rec = match (&cur.cmd, &resp) {
            (Cmd::Get(_), None) | (Cmd::Scan(..), None) => {
                // An unanswered read says nothing.
                self.after_failure(&cur.cmd, false);
                return;
            }
            (Cmd::Get(k), Some(Response::Value(v))) => {
                let v = v.as_ref().map(|v| v.to_vec());
                self.note_shared(k, v.clone());
                Recorded::Key {
                    key: k.clone(),
                    op: KeyOp::Get(v),
                }
            }
            (Cmd::Put(k, v), r) => {
                if r.is_some() {
                    self.note_shared(k, Some(v.clone()));
                }
                self.note_own_put(k, r.is_some());
                Recorded::Key {
                    key: k.clone(),
                    op: KeyOp::Put(v.clone()),
                }
            }
            (Cmd::Delete(k), r) => {
                let existed = match r {
                    Some(Response::Deleted { existed }) => Some(*existed),
                    _ => None,
                };
                if r.is_some() {
                    self.note_shared(k, None);
                }
                Recorded::Key {
                    key: k.clone(),
                    op: KeyOp::Delete(existed),
                }
            }
            (Cmd::Cas(k, e, n), r) => {
                let swapped = match r {
                    Some(Response::Ok) => Some(true),
                    Some(Response::CasMismatch) => Some(false),
                    _ => None,
                };
                if swapped == Some(true) {
                    self.note_shared(k, n.clone());
                } else if swapped == Some(false) {
                    // Read it again next time before swapping.
                    if shared_index(k).is_some() {
                        self.script.push_front(Cmd::Get(k.clone()));
                    }
                }
                Recorded::Key {
                    key: k.clone(),
                    op: KeyOp::Cas {
                        expected: e.clone(),
                        new: n.clone(),
                        swapped,
                    },
                }
            }
            (Cmd::Scan(p, after), Some(Response::Page(page))) => {
                let pairs: Vec<(Vec<u8>, Vec<u8>)> =
                    page.iter().map(|(k, v)| (k.to_vec(), v.to_vec())).collect();
                let more = page.more();
                if let Some((seen, _)) = &mut self.scan {
                    seen.extend(pairs.iter().cloned());
                }
                if more && !pairs.is_empty() {
                    let last = pairs.last().map(|p| p.0.clone());
                    self.script.push_front(Cmd::Scan(p.clone(), last));
                } else {
                    self.scan_done(ctx);
                }
                Recorded::ScanPage {
                    prefix: p.clone(),
                    start_after: after.clone(),
                    pairs,
                    more,
                }
            }
            (cmd, r) => {
                ctx.violations.push(format!(
                    "client {}: {cmd:?} got an answer of the wrong kind: {r:?}",
                    self.index
                ));
                return;
            }
        };
        ctx.history.push(Op {
            client: self.index,
            call: cur.call,
            ret,
            rec,
        });
    }

    fn after_failure(&mut self, cmd: &Cmd, _definite: bool) {
        // A scan that failed half-way is abandoned (the end-of-round one is retried).
        if let Cmd::Scan(..) = cmd {
            if let Some((_, true)) = self.scan {
                self.scan = Some((Vec::new(), true));
                self.script
                    .push_front(Cmd::Scan(own_prefix(self.index), None));
            } else {
                self.scan = None;
            }
        }
    }

    fn note_shared(&mut self, key: &[u8], value: Option<Vec<u8>>) {
        if let Some(i) = shared_index(key) {
            self.shared_seen[i] = value;
        }
    }

    fn note_own_put(&mut self, key: &[u8], acked: bool) {
        let prefix = own_prefix(self.index);
        let Some(rest) = key.strip_prefix(prefix.as_slice()) else {
            return;
        };
        let Some(j) = std::str::from_utf8(rest).ok().and_then(|s| s.parse().ok()) else {
            return;
        };
        if acked {
            self.acked.insert(j);
        } else {
            self.unknown.insert(j);
        }
    }

    /// TinyKV's check of a full scan of the client's own keys: every acknowledged put is
    /// there, in order, exactly once, and nothing else is (but puts whose outcome is unknown).
    fn scan_done(&mut self, ctx: &mut ClientCtx<'_>) {
        let Some((seen, end_of_round)) = self.scan.take() else {
            return;
        };
        let who = format!("client {} (round {})", self.index, ctx.round);
        let mut js = Vec::new();
        for (k, v) in &seen {
            let j = k
                .strip_prefix(own_prefix(self.index).as_slice())
                .and_then(|r| std::str::from_utf8(r).ok())
                .and_then(|s| s.parse::<u64>().ok());
            let Some(j) = j else {
                ctx.violations
                    .push(format!("{who}: scan returned a foreign key {k:?}"));
                return;
            };
            if *v != own_value(self.index, j, ctx.round) {
                ctx.violations.push(format!(
                    "{who}: key {j} holds {:?}, not this round's append",
                    String::from_utf8_lossy(v)
                ));
            }
            js.push(j);
        }
        if js.windows(2).any(|w| w[0] >= w[1]) {
            ctx.violations
                .push(format!("{who}: appends out of order or duplicated: {js:?}"));
        }
        let got: BTreeSet<u64> = js.iter().copied().collect();
        if let Some(missing) = self.acked.difference(&got).next() {
            ctx.violations.push(format!(
                "{who}: acknowledged append {missing} missing from a scan (saw {js:?})"
            ));
        }
        if let Some(extra) = got
            .iter()
            .find(|j| !self.acked.contains(j) && !self.unknown.contains(j))
        {
            ctx.violations.push(format!(
                "{who}: append {extra} present though it was never acknowledged or pending"
            ));
        }
        if end_of_round {
            // TinyKV deletes the client's keys after checking them.
            for j in 0..self.j {
                self.script.push_back(Cmd::Delete(own_key(self.index, j)));
            }
        }
    }
}

fn shared_index(key: &[u8]) -> Option<usize> {
    let rest = key.strip_prefix(b"s")?;
    let i: usize = std::str::from_utf8(rest).ok()?.parse().ok()?;
    (i < SHARED_KEYS as usize).then_some(i)
}
