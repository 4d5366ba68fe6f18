//! [`FaultyTransport`]: any [`Transport`] over a network that loses, duplicates, delays and
//! reorders messages, with links that can be cut one way.

use heapless::Vec;

use crate::limits::PEERS_MAX;
use crate::transport::Transport;
use crate::types::NodeId;

use super::{FaultRng, Ppm};

/// How a link misbehaves. All zero (the default) is a perfect link.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LinkFaults {
    /// Chance that a message is lost.
    pub loss_ppm: Ppm,
    /// Chance that a message is delivered twice (each copy is delayed independently).
    pub duplicate_ppm: Ppm,
    /// Chance that a copy is held back before it reaches the wrapped transport.
    pub delay_ppm: Ppm,
    /// A held copy waits `1..=delay_ticks_max` calls of [`FaultyTransport::tick`].
    pub delay_ticks_max: u32,
}

/// Counters of a [`FaultyTransport`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FaultyTransportStats {
    /// Messages handed to `send`.
    pub sent: u64,
    /// Messages lost on purpose.
    pub lost: u64,
    /// Messages dropped because the link to their destination was cut.
    pub cut: u64,
    /// Extra copies made.
    pub duplicated: u64,
    /// Copies held back.
    pub delayed: u64,
    /// Copies that should have been held but went at once because the hold buffer was full.
    pub hold_full: u64,
    /// Sends the wrapped transport refused (counted, as a network loses such messages).
    pub inner_errors: u64,
}

#[derive(Clone, Copy, Debug)]
struct Held {
    to: NodeId,
    due: u64,
    end: usize,
}

/// A [`Transport`] wrapper that injects network faults into everything sent through it.
///
/// One wrapper sits on one node's outgoing side, so cutting the link to `to` here cuts it in
/// one direction only; a partition cuts both directions, on both sides. Held (delayed)
/// messages wait in a buffer of `BYTES` bytes and at most `MESSAGES` messages and go out from
/// [`FaultyTransport::tick`]; a message that does not fit is sent at once rather than dropped,
/// so a full buffer never adds loss of its own. A cut link drops messages when they are sent,
/// not ones already held (those are "in flight").
pub struct FaultyTransport<T, R, const BYTES: usize = 65536, const MESSAGES: usize = 64> {
    inner: T,
    rng: R,
    faults: LinkFaults,
    cut: Vec<NodeId, PEERS_MAX>,
    buf: [u8; BYTES],
    held: Vec<Held, MESSAGES>,
    now: u64,
    stats: FaultyTransportStats,
}

impl<T: Transport, R: FaultRng, const BYTES: usize, const MESSAGES: usize>
    FaultyTransport<T, R, BYTES, MESSAGES>
{
    /// Wraps `inner`; faults start as `faults` and draw from `rng`.
    pub fn new(inner: T, rng: R, faults: LinkFaults) -> Self {
        Self {
            inner,
            rng,
            faults,
            cut: Vec::new(),
            buf: [0; BYTES],
            held: Vec::new(),
            now: 0,
            stats: FaultyTransportStats::default(),
        }
    }

    /// The wrapped transport.
    pub fn inner(&self) -> &T {
        &self.inner
    }

    /// The wrapped transport, mutably.
    pub fn inner_mut(&mut self) -> &mut T {
        &mut self.inner
    }

    /// The current faults.
    pub fn faults(&self) -> LinkFaults {
        self.faults
    }

    /// Changes the faults for messages sent from now on.
    pub fn set_faults(&mut self, faults: LinkFaults) {
        self.faults = faults;
    }

    /// Cuts (`true`) or restores the link to `to`. Returns `Err(to)` if [`PEERS_MAX`] links
    /// are cut already.
    pub fn set_cut(&mut self, to: NodeId, cut: bool) -> Result<(), NodeId> {
        let at = self.cut.iter().position(|&c| c == to);
        match (cut, at) {
            (true, None) => self.cut.push(to),
            (false, Some(i)) => {
                self.cut.swap_remove(i);
                Ok(())
            }
            _ => Ok(()),
        }
    }

    /// True if the link to `to` is cut.
    pub fn is_cut(&self, to: NodeId) -> bool {
        self.cut.contains(&to)
    }

    /// Restores every link.
    pub fn heal(&mut self) {
        self.cut.clear();
    }

    /// Messages held back now.
    pub fn held(&self) -> usize {
        self.held.len()
    }

    /// Counters.
    pub fn stats(&self) -> FaultyTransportStats {
        self.stats
    }

    fn used(&self) -> usize {
        self.held.last().map_or(0, |h| h.end)
    }

    fn forward(&mut self, to: NodeId, message: &[u8]) {
        if self.inner.send(to, message).is_err() {
            self.stats.inner_errors += 1;
        }
    }

    /// Advances the delay clock by one and sends every held message now due, oldest first.
    pub fn tick(&mut self) {
        self.now += 1;
        let mut i = 0;
        let mut start = 0;
        while i < self.held.len() {
            let h = self.held[i];
            if h.due > self.now {
                start = h.end;
                i += 1;
                continue;
            }
            let (to, len) = (h.to, h.end - start);
            // Send from a copy of the bytes' range, then close the gap they leave.
            if self.inner.send(to, &self.buf[start..h.end]).is_err() {
                self.stats.inner_errors += 1;
            }
            let used = self.used();
            self.buf.copy_within(h.end..used, start);
            self.held.remove(i);
            for later in self.held[i..].iter_mut() {
                later.end -= len;
            }
        }
    }

    /// Sends every held message now, whatever its delay.
    pub fn flush(&mut self) {
        while !self.held.is_empty() {
            self.tick();
        }
    }

    fn send_copy(&mut self, to: NodeId, message: &[u8]) {
        let f = self.faults;
        if f.delay_ticks_max == 0 || !self.rng.chance(f.delay_ppm) {
            return self.forward(to, message);
        }
        let start = self.used();
        let end = start + message.len();
        if self.held.is_full() || end > BYTES {
            self.stats.hold_full += 1;
            return self.forward(to, message);
        }
        let due = self.now + 1 + self.rng.below(u64::from(f.delay_ticks_max));
        self.buf[start..end].copy_from_slice(message);
        // Cannot fail: checked above.
        let _ = self.held.push(Held { to, due, end });
        self.stats.delayed += 1;
    }
}

impl<T: Transport, R: FaultRng, const BYTES: usize, const MESSAGES: usize> Transport
    for FaultyTransport<T, R, BYTES, MESSAGES>
{
    type Error = T::Error;

    /// Sends, drops, duplicates or holds the message as the faults decide. Never fails: what
    /// the wrapped transport refuses counts as lost ([`FaultyTransportStats::inner_errors`]).
    fn send(&mut self, to: NodeId, message: &[u8]) -> Result<(), Self::Error> {
        self.stats.sent += 1;
        if self.is_cut(to) {
            self.stats.cut += 1;
            return Ok(());
        }
        if self.rng.chance(self.faults.loss_ppm) {
            self.stats.lost += 1;
            return Ok(());
        }
        self.send_copy(to, message);
        if self.rng.chance(self.faults.duplicate_ppm) {
            self.stats.duplicated += 1;
            self.send_copy(to, message);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fault::{SplitMix64, PPM_ALWAYS};

    /// Records what it is given.
    #[derive(Default)]
    struct Wire(heapless::Vec<(NodeId, u8), 64>);

    impl Transport for Wire {
        type Error = ();
        fn send(&mut self, to: NodeId, message: &[u8]) -> Result<(), ()> {
            self.0.push((to, message[0])).map_err(|_| ())
        }
    }

    fn net(faults: LinkFaults) -> FaultyTransport<Wire, SplitMix64, 64, 4> {
        FaultyTransport::new(Wire::default(), SplitMix64::new(9), faults)
    }

    #[test]
    fn a_perfect_link_passes_everything_in_order() {
        let mut t = net(LinkFaults::default());
        for b in 0..10u8 {
            t.send(2, &[b]).unwrap();
        }
        let got: heapless::Vec<u8, 16> = t.inner().0.iter().map(|m| m.1).collect();
        assert_eq!(got.as_slice(), &[0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
    }

    #[test]
    fn cut_links_drop_one_way_until_healed() {
        let mut t = net(LinkFaults::default());
        t.set_cut(2, true).unwrap();
        t.send(2, &[1]).unwrap();
        t.send(3, &[2]).unwrap();
        assert!(t.is_cut(2) && !t.is_cut(3));
        t.heal();
        t.send(2, &[3]).unwrap();
        assert_eq!(t.inner().0.as_slice(), &[(3, 2), (2, 3)]);
        assert_eq!(t.stats().cut, 1);
    }

    #[test]
    fn loss_and_duplication() {
        let mut t = net(LinkFaults {
            loss_ppm: PPM_ALWAYS,
            ..LinkFaults::default()
        });
        t.send(2, &[1]).unwrap();
        assert!(t.inner().0.is_empty());
        t.set_faults(LinkFaults {
            duplicate_ppm: PPM_ALWAYS,
            ..LinkFaults::default()
        });
        t.send(2, &[7]).unwrap();
        assert_eq!(t.inner().0.as_slice(), &[(2, 7), (2, 7)]);
    }

    #[test]
    fn delays_reorder_and_release_by_tick() {
        let mut t = net(LinkFaults {
            delay_ppm: PPM_ALWAYS,
            delay_ticks_max: 3,
            ..LinkFaults::default()
        });
        for b in 0..4u8 {
            t.send(2, &[b]).unwrap();
        }
        assert_eq!(t.held(), 4);
        // The hold buffer has 4 slots: the fifth goes at once.
        t.send(2, &[9]).unwrap();
        assert_eq!(t.inner().0.as_slice(), &[(2, 9)]);
        for _ in 0..3 {
            t.tick();
        }
        assert_eq!(t.held(), 0);
        let mut got: heapless::Vec<u8, 8> = t.inner().0.iter().map(|m| m.1).collect();
        got.sort_unstable();
        assert_eq!(got.as_slice(), &[0, 1, 2, 3, 9]);
        assert_eq!(t.stats().hold_full, 1);
    }

    #[test]
    fn held_bytes_stay_intact_when_others_leave() {
        let mut t: FaultyTransport<Wire, SplitMix64, 64, 8> = FaultyTransport::new(
            Wire::default(),
            SplitMix64::new(1),
            LinkFaults {
                delay_ppm: PPM_ALWAYS,
                delay_ticks_max: 5,
                ..LinkFaults::default()
            },
        );
        for b in 10..16u8 {
            t.send(b.into(), &[b, b, b]).unwrap();
        }
        t.flush();
        let mut got: heapless::Vec<(NodeId, u8), 8> = t.inner().0.iter().copied().collect();
        got.sort_unstable();
        assert!(got.iter().all(|&(to, b)| to == u64::from(b)));
        assert_eq!(got.len(), 6);
    }
}
