//! `Node`: the ready loop written once, over any storage, transport and state machine.
//!
//! ```
//! use tinyraft::{Config, MemStorage, Node, Transport, StateMachine, Entry};
//!
//! struct Counter(u64);
//! impl StateMachine for Counter {
//!     type Response = u64;
//!     fn apply(&mut self, e: &Entry<'_>) -> u64 { self.0 += e.data.len() as u64; self.0 }
//! }
//! struct Nowhere;
//! impl Transport for Nowhere {
//!     type Error = ();
//!     fn send(&mut self, _to: u64, _msg: &[u8]) -> Result<(), ()> { Ok(()) }
//! }
//!
//! let config = Config::new(1, &[1]).unwrap();
//! let storage: MemStorage<4096, 64> = MemStorage::new();
//! let mut node: Node<_, _, _> = Node::new(config, storage, Nowhere, Counter(0)).unwrap();
//! while !node.raw().role().eq(&tinyraft::Role::Leader) {
//!     node.tick();
//!     node.process_ready(&mut |_, _| {}).unwrap();
//! }
//! let index = node.propose(b"abc").unwrap();
//! let mut answers = 0;
//! node.process_ready(&mut |i, total| { assert_eq!((i, total), (index, 3)); answers += 1 }).unwrap();
//! assert_eq!(answers, 1);
//! ```

use crate::error::{Error, ProposeError};
use crate::limits::{OUTBOX_BYTES_DEFAULT, UNSTABLE_BYTES_DEFAULT};
use crate::raft::ReadState;
use crate::raw_node::RawNode;
use crate::state_machine::{SnapshotError, StateMachine};
use crate::storage::Storage;
use crate::transport::Transport;
use crate::types::{EntryKind, Index};
use crate::Config;

/// Why a ready round failed.
#[derive(Debug)]
pub enum NodeError<SE> {
    /// Persisting failed; nothing of the round was applied, and nothing was sent but a
    /// leader's early appends and heartbeats (which need no durability on the leader).
    Storage(SE),
    /// Restoring the state machine from a snapshot, or taking one, failed. A failed restore
    /// leaves the state machine unusable: stop the node.
    Snapshot(SnapshotError),
}

/// A replicated state machine: a [`RawNode`] plus the storage, transport and state machine it
/// drives. Transport send errors count as message loss (Raft retries), so they are not fatal.
pub struct Node<
    S: Storage,
    T,
    M,
    const OUTBOX_BYTES: usize = OUTBOX_BYTES_DEFAULT,
    const UNSTABLE_BYTES: usize = UNSTABLE_BYTES_DEFAULT,
> {
    raw: RawNode<S, OUTBOX_BYTES, UNSTABLE_BYTES>,
    transport: T,
    state_machine: M,
    send_failures: u64,
}

impl<S, T, M, const OUTBOX_BYTES: usize, const UNSTABLE_BYTES: usize>
    Node<S, T, M, OUTBOX_BYTES, UNSTABLE_BYTES>
where
    S: Storage,
    T: Transport,
    M: StateMachine,
{
    /// Starts a node (built on the stack and returned by value; see [`Node::unstarted`] for
    /// building one in place).
    pub fn new(
        config: Config,
        storage: S,
        transport: T,
        state_machine: M,
    ) -> Result<Self, Error<S::Error>> {
        let mut node = Self::unstarted(storage, transport, state_machine);
        node.start(config)?;
        Ok(node)
    }

    /// A node that has not started (see [`RawNode::unstarted`]), for a `static`: with parts
    /// that are all zero bytes the whole node lives in `.bss`. The state machine must be
    /// empty; if the storage holds a snapshot, the first ready round restores it. Call
    /// [`Node::start`] before any other method.
    pub const fn unstarted(storage: S, transport: T, state_machine: M) -> Self {
        Self {
            raw: RawNode::unstarted(storage),
            transport,
            state_machine,
            send_failures: 0,
        }
    }

    /// Starts this node in place from what its storage holds (see [`RawNode::start`]).
    pub fn start(&mut self, config: Config) -> Result<(), Error<S::Error>> {
        self.send_failures = 0;
        self.raw.start(config)
    }

    /// Advances logical time by one tick.
    pub fn tick(&mut self) {
        self.raw.tick();
    }

    /// Handles one encoded message from a peer.
    pub fn receive(&mut self, bytes: &[u8]) -> Result<(), Error<S::Error>> {
        self.raw.step_bytes(bytes)
    }

    /// Proposes a command; see [`RawNode::propose`].
    pub fn propose<'a>(&mut self, data: &'a [u8]) -> Result<Index, ProposeError<'a>> {
        self.raw.propose(data)
    }

    /// Runs one ready round if there is one: send what may leave early (a leader's appends,
    /// see [`RawNode::early_messages`]), persist (one sync), send the rest, apply. `on_apply`
    /// gets each applied entry's index and the state machine's response.
    pub fn process_ready(
        &mut self,
        on_apply: &mut dyn FnMut(Index, M::Response),
    ) -> Result<(), NodeError<S::Error>> {
        self.process_ready_with_reads(on_apply, &mut |_| {})
    }

    /// Like [`Node::process_ready`], also handing out confirmed reads (see
    /// [`RawNode::read_index`]); serve each once `raw().applied() >= index`.
    pub fn process_ready_with_reads(
        &mut self,
        on_apply: &mut dyn FnMut(Index, M::Response),
        on_read: &mut dyn FnMut(ReadState),
    ) -> Result<(), NodeError<S::Error>> {
        if !self.raw.has_ready() {
            return Ok(());
        }
        let ready = self.raw.ready();
        // A leader's appends go out before its own sync, so that it overlaps the followers'.
        for (to, bytes) in self.raw.early_messages(&ready) {
            if self.transport.send(to, bytes).is_err() {
                self.send_failures += 1;
            }
        }
        let persisted = self.raw.persist(ready).map_err(NodeError::Storage)?;
        self.raw
            .restore_snapshot(&persisted, &mut self.state_machine)
            .map_err(NodeError::Snapshot)?;
        for (to, bytes) in self.raw.messages(&persisted) {
            if self.transport.send(to, bytes).is_err() {
                self.send_failures += 1;
            }
        }
        let sm = &mut self.state_machine;
        self.raw
            .committed_entries(&persisted, &mut |e| {
                if e.kind == EntryKind::Normal && !e.is_noop() {
                    let response = sm.apply(&e);
                    on_apply(e.index, response);
                }
            })
            .map_err(NodeError::Storage)?;
        for r in self.raw.read_states(&persisted) {
            on_read(*r);
        }
        self.raw.advance(persisted);
        if self.raw.wants_snapshot() {
            self.raw
                .take_snapshot(&self.state_machine)
                .map_err(NodeError::Snapshot)?;
        }
        Ok(())
    }

    /// The raw node, for getters and reads.
    pub fn raw(&self) -> &RawNode<S, OUTBOX_BYTES, UNSTABLE_BYTES> {
        &self.raw
    }

    /// The raw node, mutably (read_index, campaign, compaction).
    pub fn raw_mut(&mut self) -> &mut RawNode<S, OUTBOX_BYTES, UNSTABLE_BYTES> {
        &mut self.raw
    }

    /// The state machine (for reads).
    pub fn state_machine(&self) -> &M {
        &self.state_machine
    }

    /// The transport.
    pub fn transport_mut(&mut self) -> &mut T {
        &mut self.transport
    }

    /// Sends the transport refused.
    pub fn send_failures(&self) -> u64 {
        self.send_failures
    }
}
