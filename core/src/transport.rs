//! The network seam.

use crate::types::NodeId;

/// Sends encoded messages to peers.
///
/// The core encodes every message with postcard into its own bounded outbox, so a transport
/// only moves bytes: it may add framing or authentication, and it may drop a message (Raft
/// retries), but it must never block the caller.
pub trait Transport {
    /// The error type. A send error is reported to the caller of the driving loop, never fatal
    /// to the protocol.
    type Error: core::fmt::Debug;

    /// Sends one encoded message (see [`crate::Message::decode`]) to node `to`.
    fn send(&mut self, to: NodeId, message: &[u8]) -> Result<(), Self::Error>;
}
