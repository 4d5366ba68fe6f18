//! # tinyraft
//!
//! A Raft consensus core that is `no_std`, needs no allocator, and performs no I/O. The same
//! code runs a replicated key-value store on a desktop cluster and inside microcontroller
//! firmware.
//!
//! ## Layers
//!
//! **Types and limits.** [`types`] holds ids, terms, entries, hard state and membership.
//! [`limits`] holds every capacity of the crate in one place, with compile-time checks of how
//! they relate. Nothing grows: a full buffer is an error that hands the value back.
//!
//! **Messages.** [`message`] defines the messages between nodes as serde types; their wire
//! form is postcard. Decoding borrows entry payloads from the received bytes and refuses,
//! without panicking, anything malformed or out of bounds.
//!
//! **Seams.** [`Storage`] is the durable log and hard state; [`MemStorage`] implements it in a
//! fixed byte arena. [`Transport`] moves encoded messages; [`StateMachine`] applies committed
//! entries. std implementations (a file log, UDP) live in the `tinyraft-std` crate.
//! [`stream`] carries messages over any `embedded-io` byte stream (a UART): COBS frames with
//! a CRC, a bounded receiver that resynchronizes after noise, and [`StreamTransport`].
//!
//! **Protocol.** The `raft` module implements the Raft paper's §5 (elections, log
//! replication, commitment) with the dissertation's pre-vote and check-quorum (§9.6, §6.2),
//! ReadIndex and lease reads (§6.4), and per-follower flow control (probe and replicate
//! states, a bounded inflight window, a byte cap per message). Time is a logical tick; the
//! randomness of election timeouts comes from a caller-seeded PRNG, so runs replay exactly.
//!
//! **Driving.** [`RawNode`] is the Ready/advance interface: the caller ticks, steps messages
//! and proposes, then runs ready rounds that persist (one sync), send, and apply — in that
//! order, which the types enforce; only a leader's appends and heartbeats may leave before
//! the sync ([`RawNode::early_messages`], dissertation §10.2.1). [`Node`] writes that loop
//! once for any storage, transport and state machine.
//!
//! **Testing.** [`fault`] wraps any storage or transport in middleware that injects faults
//! (lost un-synced writes, torn records, failed syncs; loss, duplication, delay, cut links),
//! seeded by the caller: it is how the deterministic simulator breaks things, without `std`.
//!
//! ## Memory
//!
//! A node's size is fixed at compile time: see [`RawNode`]'s const parameters and [`limits`].
//! With the defaults (`RawNode<MemStorage<..>>` aside, whose arena the caller sizes), one
//! `RawNode` takes about 135 KiB, dominated by the 64 KiB outbox and the 64 KiB unstable ring;
//! firmware picks smaller ones (a test checks this figure).
#![no_std]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

#[cfg(feature = "alloc")]
extern crate alloc;

pub mod config;
pub mod error;
pub mod fault;
pub mod kv;
pub mod limits;
mod log;
pub mod mem_storage;
pub mod membership;
pub mod message;
pub mod node;
mod outbox;
pub mod progress;
mod quorum;
mod raft;
pub mod raw_node;
pub mod ring;
mod rng;
pub mod state_machine;
pub mod storage;
pub mod stream;
pub mod transport;
pub mod types;

pub use config::Config;
pub use error::{DecodeError, Error, ProposeError, ProposeErrorKind};
pub use mem_storage::{MemStorage, MemStorageError};
pub use membership::{ConfChange, ConfChangeError, ConfChangeMode, ConfigEntry};
pub use message::{Body, Message};
pub use node::{Node, NodeError};
pub use progress::{Progress, ProgressState};
pub use raft::{ReadError, ReadState, Stats, TransferError};
pub use raw_node::{Persisted, RawNode, Ready};
pub use state_machine::{SnapshotError, StateMachine};
pub use storage::{Storage, StorageError, StorageErrorKind};
pub use stream::{FrameReceiver, StreamTransport};
pub use transport::Transport;
pub use types::*;
