//! The socket machinery shared by the node transport and the client socket: one non-blocking
//! UDP socket, one reusable send buffer, one reusable receive buffer, and the counters.

use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::ops::Range;
use std::time::{Duration, Instant};

use super::frame::{self, FrameError, FrameHeader, FrameKind, FRAME_OVERHEAD_BYTES};
use super::frame::{HEADER_BYTES, TAG_BYTES, UDP_PAYLOAD_BYTES_MAX};
use super::key::ClusterKey;
use super::stats::{DropReason, UdpStats};
use super::SendError;

/// Invalid datagrams one `recv` call examines after its deadline has passed before it gives
/// up. Queued datagrams are examined even by a zero-timeout poll, so garbage in front of a
/// valid frame does not hide it; the cap keeps a flood from holding the caller past its
/// deadline for more than a bounded amount of work.
const DROPS_AFTER_DEADLINE_MAX: usize = 64;

/// A frame accepted by [`Endpoint::recv_frame`]; its payload stays in the receive buffer.
#[derive(Clone, Debug)]
pub(crate) struct Received {
    pub(crate) header: FrameHeader,
    pub(crate) addr: SocketAddr,
    payload: Range<usize>,
}

pub(crate) struct Endpoint {
    /// Invariant: in non-blocking mode, except inside `wait_recv`.
    socket: UdpSocket,
    key: ClusterKey,
    cluster_id: u64,
    /// Invariant: `FRAME_OVERHEAD_BYTES <= datagram_bytes_max <= UDP_PAYLOAD_BYTES_MAX`.
    datagram_bytes_max: usize,
    /// `datagram_bytes_max` long; every outgoing frame is encoded here.
    send_buf: Box<[u8]>,
    /// `datagram_bytes_max + 1` long, so that a datagram longer than the limit shows up as
    /// one that fills the buffer (the kernel truncates it silently otherwise).
    recv_buf: Box<[u8]>,
    pub(crate) stats: UdpStats,
}

impl Endpoint {
    pub(crate) fn bind(
        bind: SocketAddr,
        cluster_id: u64,
        key: ClusterKey,
        datagram_bytes_max: usize,
    ) -> io::Result<Self> {
        if !(FRAME_OVERHEAD_BYTES..=UDP_PAYLOAD_BYTES_MAX).contains(&datagram_bytes_max) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "datagram_bytes_max is {datagram_bytes_max}; it must be between \
                     {FRAME_OVERHEAD_BYTES} (an empty frame) and {UDP_PAYLOAD_BYTES_MAX} \
                     (the largest UDP payload)"
                ),
            ));
        }
        let socket = UdpSocket::bind(bind)?;
        // Non-blocking so that a send never waits for socket buffer space: Raft would
        // rather lose a message than stall its node. Receives wait explicitly.
        socket.set_nonblocking(true)?;
        Ok(Self {
            socket,
            key,
            cluster_id,
            datagram_bytes_max,
            send_buf: vec![0u8; datagram_bytes_max].into_boxed_slice(),
            recv_buf: vec![0u8; datagram_bytes_max + 1].into_boxed_slice(),
            stats: UdpStats::default(),
        })
    }

    pub(crate) fn local_addr(&self) -> io::Result<SocketAddr> {
        self.socket.local_addr()
    }

    pub(crate) fn cluster_id(&self) -> u64 {
        self.cluster_id
    }

    pub(crate) fn payload_bytes_max(&self) -> usize {
        self.datagram_bytes_max - FRAME_OVERHEAD_BYTES
    }

    /// Sends one frame. Buffer-full conditions and an unreachable peer count as a drop and
    /// return `Ok`, as the network losing the datagram would; other errors are returned.
    pub(crate) fn send_frame(
        &mut self,
        to: SocketAddr,
        kind: FrameKind,
        sender: u64,
        payload: &[u8],
    ) -> Result<(), SendError> {
        let header = FrameHeader {
            kind,
            cluster_id: self.cluster_id,
            sender,
        };
        let Some(len) = frame::encode(&self.key, &header, payload, &mut self.send_buf) else {
            self.stats.send_dropped += 1;
            return Err(SendError::TooLarge {
                bytes: payload.len(),
                max: self.payload_bytes_max(),
            });
        };
        match self.socket.send_to(&self.send_buf[..len], to) {
            Ok(_) => {
                self.stats.sent += 1;
                Ok(())
            }
            Err(e) if is_send_congestion(&e) => {
                self.stats.send_dropped += 1;
                Ok(())
            }
            Err(e) => {
                self.stats.send_dropped += 1;
                Err(SendError::Io(e))
            }
        }
    }

    /// Reads datagrams until one is a valid frame for this cluster that `admit` accepts, or
    /// until `timeout` has passed (`None`: no limit). Everything else is counted and dropped.
    pub(crate) fn recv_frame(
        &mut self,
        timeout: Option<Duration>,
        mut admit: impl FnMut(&FrameHeader, SocketAddr) -> Result<(), DropReason>,
    ) -> io::Result<Option<Received>> {
        // `None`: wait forever. A timeout too large to add to now is as good as none.
        let deadline = timeout.and_then(|t| Instant::now().checked_add(t));
        let mut drops_after_deadline = 0;
        loop {
            let (len, addr) = match self.socket.recv_from(&mut self.recv_buf) {
                Ok(got) => got,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    let wait = match deadline {
                        None => None,
                        Some(d) => match d.checked_duration_since(Instant::now()) {
                            Some(left) if !left.is_zero() => Some(left),
                            _ => return Ok(None),
                        },
                    };
                    match self.wait_recv(wait)? {
                        Some(got) => got,
                        // Timed out or interrupted: the next round re-checks the deadline.
                        None => continue,
                    }
                }
                Err(e) if is_recv_transient(&e) => continue,
                Err(e) => return Err(e),
            };
            match self.check(len, addr, &mut admit) {
                Ok(received) => {
                    self.stats.received += 1;
                    return Ok(Some(received));
                }
                Err(reason) => {
                    self.stats.count_drop(reason);
                    if deadline.is_some_and(|d| Instant::now() >= d) {
                        drops_after_deadline += 1;
                        if drops_after_deadline >= DROPS_AFTER_DEADLINE_MAX {
                            return Ok(None);
                        }
                    }
                }
            }
        }
    }

    /// The payload of a frame returned by the last `recv_frame`.
    pub(crate) fn payload(&self, received: &Received) -> &[u8] {
        &self.recv_buf[received.payload.clone()]
    }

    /// Waits for one datagram, at most `wait` (never zero; `None`: no limit). `Ok(None)` if
    /// none came in time.
    fn wait_recv(&mut self, wait: Option<Duration>) -> io::Result<Option<(usize, SocketAddr)>> {
        // std offers no poll(), so wait with a blocking read and a read timeout, then put the
        // socket back in non-blocking mode for the sends. This costs three system calls per
        // wait, paid only when there was nothing to read anyway.
        self.socket.set_nonblocking(false)?;
        let got = self
            .socket
            .set_read_timeout(wait)
            .and_then(|()| self.socket.recv_from(&mut self.recv_buf));
        self.socket.set_nonblocking(true)?;
        match got {
            Ok(got) => Ok(Some(got)),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) || is_recv_transient(&e) =>
            {
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    fn check(
        &self,
        len: usize,
        addr: SocketAddr,
        admit: &mut impl FnMut(&FrameHeader, SocketAddr) -> Result<(), DropReason>,
    ) -> Result<Received, DropReason> {
        if len > self.datagram_bytes_max {
            return Err(DropReason::Oversized);
        }
        let frame = frame::decode(&self.key, &self.recv_buf[..len]).map_err(|e| match e {
            FrameError::BadTag => DropReason::Auth,
            FrameError::TooShort | FrameError::BadMagic(_) | FrameError::UnknownKind(_) => {
                DropReason::Malformed
            }
        })?;
        // Only authentic frames get this far, so the counters below never count forgeries.
        if frame.header.cluster_id != self.cluster_id {
            return Err(DropReason::WrongCluster);
        }
        admit(&frame.header, addr)?;
        Ok(Received {
            header: frame.header,
            addr,
            payload: HEADER_BYTES..len - TAG_BYTES,
        })
    }
}

/// The address with an IPv4-mapped IPv6 address (`::ffff:a.b.c.d`, what a dual-stack socket
/// reports for IPv4 senders) turned into plain IPv4, so both spellings compare equal.
pub(crate) fn canonical(addr: SocketAddr) -> SocketAddr {
    match addr {
        SocketAddr::V6(v6) => match v6.ip().to_ipv4_mapped() {
            Some(v4) => SocketAddr::new(v4.into(), v6.port()),
            None => addr,
        },
        SocketAddr::V4(_) => addr,
    }
}

/// Send errors that mean "the datagram was lost", the same as if the network had lost it:
/// the socket buffer is full, or an earlier datagram to an unreachable port came back as an
/// ICMP error on this socket.
fn is_send_congestion(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock
            | io::ErrorKind::Interrupted
            | io::ErrorKind::OutOfMemory
            | io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionReset
    ) || e.raw_os_error().is_some_and(|code| Some(code) == ENOBUFS)
}

/// Receive errors that say nothing about the socket itself: a signal, or (on some systems) an
/// ICMP error for an earlier send reported on the next receive.
fn is_recv_transient(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::Interrupted
            | io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionReset
    )
}

// std has no ErrorKind for ENOBUFS ("no buffer space available", a full interface queue),
// and this crate takes no dependency on libc for one constant.
#[cfg(any(target_os = "linux", target_os = "android"))]
const ENOBUFS: Option<i32> = Some(105);
#[cfg(any(
    target_os = "macos",
    target_os = "ios",
    target_os = "freebsd",
    target_os = "netbsd",
    target_os = "openbsd",
    target_os = "dragonfly"
))]
const ENOBUFS: Option<i32> = Some(55);
#[cfg(windows)]
const ENOBUFS: Option<i32> = Some(10055); // WSAENOBUFS
#[cfg(not(any(
    target_os = "linux",
    target_os = "android",
    target_os = "macos",
    target_os = "ios",
    target_os = "freebsd",
    target_os = "netbsd",
    target_os = "openbsd",
    target_os = "dragonfly",
    windows
)))]
const ENOBUFS: Option<i32> = None;

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    #[test]
    fn canonical_unmaps_ipv4_mapped_addresses() {
        let v4 = SocketAddr::new(Ipv4Addr::new(127, 0, 0, 1).into(), 7000);
        let mapped = SocketAddr::new(Ipv4Addr::new(127, 0, 0, 1).to_ipv6_mapped().into(), 7000);
        let v6 = SocketAddr::new(Ipv6Addr::LOCALHOST.into(), 7000);
        assert_eq!(canonical(mapped), v4);
        assert_eq!(canonical(v4), v4);
        assert_eq!(canonical(v6), v6);
    }

    #[test]
    fn enobufs_counts_as_congestion() {
        if let Some(code) = ENOBUFS {
            assert!(is_send_congestion(&io::Error::from_raw_os_error(code)));
        }
        assert!(is_send_congestion(&io::ErrorKind::WouldBlock.into()));
        assert!(!is_send_congestion(&io::ErrorKind::PermissionDenied.into()));
    }
}
