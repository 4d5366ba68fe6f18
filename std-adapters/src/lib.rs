//! std adapters for tinyraft: the pieces a desktop or server deployment needs around the
//! `no_std` core.
//!
//! - [`file_storage`]: a durable, segmented, CRC-framed log implementing `tinyraft::Storage`,
//!   with group commit, streamed snapshot files and crash recovery.
//! - [`udp`]: an authenticated UDP transport implementing `tinyraft::Transport`, plus the
//!   client socket.
//! - [`protocol`]: what clients and nodes say to each other inside UDP frames.
//! - [`runtime`]: the node runtime (one thread: socket, clock, log, KV state machine).
//! - [`client`]: the KV client (leader discovery, retries, honest failure reporting).
//! - [`sync`]: the little state shared between threads, modelled with loom.

pub mod client;
pub mod file_storage;
pub mod protocol;
pub mod runtime;
pub mod sync;
pub mod udp;

pub use client::{CasOutcome, ClientError, KvClient, MembersOutcome};
pub use file_storage::{FileStorage, FileStorageError, FileStorageOptions, FileStorageStats};
pub use runtime::{NodeOptions, NodeRuntime, RuntimeError};
pub use udp::{
    ClusterKey, Incoming, KeyError, SendError, UdpClientConfig, UdpClientSocket, UdpConfig,
    UdpStats, UdpTransport,
};
