//! Counters of what a UDP socket did with each datagram.

/// Counters kept by [`super::UdpTransport`] and [`super::UdpClientSocket`].
///
/// Plain integers: the transport is used by one thread through `&mut self`, so there is
/// nothing to synchronize. They start at zero when the socket is bound and only grow
/// (wrapping after 2^64 events, which does not happen in practice).
///
/// Every datagram read from the socket lands in exactly one of `received` or a `dropped_*`
/// counter, so their sum is the number of datagrams read.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct UdpStats {
    /// Frames handed to the socket without error.
    pub sent: u64,
    /// Frames not sent: unknown peer, payload too large, socket buffer full (would block or
    /// `ENOBUFS`), or another send error.
    pub send_dropped: u64,
    /// Valid frames returned to the caller.
    pub received: u64,
    /// Datagrams that are not frames: too short, bad magic byte, unknown kind.
    pub dropped_malformed: u64,
    /// Well-formed frames whose tag does not match (altered, or made with another key).
    pub dropped_auth: u64,
    /// Authentic frames from a sender id that is not a configured peer (Raft and
    /// ClientResponse frames arriving at a node).
    pub dropped_unknown_peer: u64,
    /// Authentic frames from a configured peer's id but not from that peer's configured
    /// address.
    pub dropped_wrong_source: u64,
    /// Datagrams longer than the configured `datagram_bytes_max`, not even decoded.
    pub dropped_oversized: u64,
    /// Authentic frames for another cluster id (same key, different cluster).
    pub dropped_wrong_cluster: u64,
    /// Authentic frames of a kind this socket does not take (e.g. a request arriving at a
    /// client socket).
    pub dropped_unexpected_kind: u64,
}

impl UdpStats {
    /// All datagrams dropped on receipt, whatever the reason.
    pub fn dropped_total(&self) -> u64 {
        self.dropped_malformed
            + self.dropped_auth
            + self.dropped_unknown_peer
            + self.dropped_wrong_source
            + self.dropped_oversized
            + self.dropped_wrong_cluster
            + self.dropped_unexpected_kind
    }

    pub(crate) fn count_drop(&mut self, reason: DropReason) {
        let counter = match reason {
            DropReason::Malformed => &mut self.dropped_malformed,
            DropReason::Auth => &mut self.dropped_auth,
            DropReason::UnknownPeer => &mut self.dropped_unknown_peer,
            DropReason::WrongSource => &mut self.dropped_wrong_source,
            DropReason::Oversized => &mut self.dropped_oversized,
            DropReason::WrongCluster => &mut self.dropped_wrong_cluster,
            DropReason::UnexpectedKind => &mut self.dropped_unexpected_kind,
        };
        *counter = counter.wrapping_add(1);
    }
}

/// Why a received datagram was dropped; one counter of [`UdpStats`] each.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum DropReason {
    Malformed,
    Auth,
    UnknownPeer,
    WrongSource,
    Oversized,
    WrongCluster,
    UnexpectedKind,
}
