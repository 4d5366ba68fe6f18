//! The bounded queue of encoded messages waiting to be released by a ready round.
//!
//! Most messages may only leave once their round is persisted: they reveal a term, a vote or
//! log entries that must be durable first. A leader's appends and heartbeats are the exception
//! (Raft dissertation §10.2.1): the leader may write its log in parallel with replicating it,
//! because it counts itself toward the commit quorum only with what is durable on its own
//! disk. Such messages are queued with [`Outbox::push_early_with`]; `RawNode` decides when
//! they may go (the term they carry must be durable) and the outbox remembers which ones were
//! handed out early, so the release after persisting skips them and nothing is sent twice.

use heapless::Vec;

use crate::limits::OUTBOX_MESSAGES_MAX;
use crate::types::{NodeId, Term};

// One bit per queued message in `Outbox::early` and `Outbox::released`.
const _: () = assert!(OUTBOX_MESSAGES_MAX <= u64::BITS as usize);

#[derive(Clone, Copy, Debug)]
struct Slot {
    to: NodeId,
    end: usize,
}

/// Encoded messages laid end to end in `BYTES` bytes.
pub(crate) struct Outbox<const BYTES: usize> {
    buf: [u8; BYTES],
    slots: Vec<Slot, OUTBOX_MESSAGES_MAX>,
    /// Bit `i`: message `i` may leave before its round is persisted, once `early_term` is
    /// durable. Invariant: no bit at or above `slots.len()`.
    early: u64,
    /// The term every message flagged in `early` was sent in (by this node as its leader).
    early_term: Term,
    /// Bit `i`: message `i` was already handed out early. Invariant: a subset of `early`'s
    /// bits as they were when set, and no bit at or above `slots.len()`.
    released: u64,
}

/// The mask of the first `n` bits.
fn low_bits(n: usize) -> u64 {
    if n >= u64::BITS as usize {
        u64::MAX
    } else {
        (1u64 << n) - 1
    }
}

impl<const BYTES: usize> Outbox<BYTES> {
    pub(crate) const fn new() -> Self {
        Self {
            buf: [0; BYTES],
            slots: Vec::new(),
            early: 0,
            early_term: 0,
            released: 0,
        }
    }

    /// Forgets every queued message.
    pub(crate) fn clear(&mut self) {
        self.slots.clear();
        self.early = 0;
        self.early_term = 0;
        self.released = 0;
    }

    fn used(&self) -> usize {
        self.slots.last().map_or(0, |s| s.end)
    }

    pub(crate) fn len(&self) -> usize {
        self.slots.len()
    }

    /// Lets `encode` write one message for `to` into at most `bytes_max` free bytes; it returns
    /// the length written or `None`. False (nothing queued) if the message or the slot does not
    /// fit: the caller treats that like a message lost on the network, and counts it.
    pub(crate) fn push_with(
        &mut self,
        to: NodeId,
        bytes_max: usize,
        encode: impl FnOnce(&mut [u8]) -> Option<usize>,
    ) -> bool {
        if self.slots.is_full() {
            return false;
        }
        let start = self.used();
        let end = BYTES.min(start.saturating_add(bytes_max));
        match encode(&mut self.buf[start..end]) {
            Some(n) => self.slots.push(Slot { to, end: start + n }).is_ok(),
            None => false,
        }
    }

    /// Like [`Outbox::push_with`], for a message a leader sends in `term` that may leave
    /// before its round is persisted (an append or a heartbeat). Messages flagged for an
    /// earlier term lose the flag: they wait for their round to be persisted, as they would
    /// have to if the term they carry were not durable.
    pub(crate) fn push_early_with(
        &mut self,
        to: NodeId,
        term: Term,
        bytes_max: usize,
        encode: impl FnOnce(&mut [u8]) -> Option<usize>,
    ) -> bool {
        if term != self.early_term {
            self.early = 0;
            self.early_term = term;
        }
        let queued = self.push_with(to, bytes_max, encode);
        if queued {
            self.early |= 1 << (self.slots.len() - 1);
        }
        queued
    }

    /// Hands out the early messages among the first `n` that were not handed out yet, if
    /// `durable_term` is the term they were sent in; returns their mask for
    /// [`Outbox::iter_selected`]. They count as sent from now on.
    pub(crate) fn take_early(&mut self, n: usize, durable_term: Term) -> u64 {
        if self.early_term != durable_term {
            return 0;
        }
        let mask = self.early & !self.released & low_bits(n);
        self.released |= mask;
        mask
    }

    /// The first `n` messages, except those handed out early.
    pub(crate) fn iter(&self, n: usize) -> impl Iterator<Item = (NodeId, &[u8])> + '_ {
        self.iter_selected(n, !self.released)
    }

    /// The messages among the first `n` whose bit is set in `mask`.
    pub(crate) fn iter_selected(
        &self,
        n: usize,
        mask: u64,
    ) -> impl Iterator<Item = (NodeId, &[u8])> + '_ {
        let mut start = 0;
        self.slots
            .iter()
            .take(n)
            .enumerate()
            .filter_map(move |(i, s)| {
                let m = (s.to, &self.buf[start..s.end]);
                start = s.end;
                (mask & (1 << i) != 0).then_some(m)
            })
    }

    /// Removes the first `n` messages (they were released to the transport).
    pub(crate) fn drain_front(&mut self, n: usize) {
        let n = n.min(self.slots.len());
        if n == 0 {
            return;
        }
        let cut = self.slots[n - 1].end;
        let used = self.used();
        self.buf.copy_within(cut..used, 0);
        let rest = self.slots.len() - n;
        for i in 0..rest {
            let s = self.slots[i + n];
            self.slots[i] = Slot {
                to: s.to,
                end: s.end - cut,
            };
        }
        self.slots.truncate(rest);
        self.early = self.early.checked_shr(n as u32).unwrap_or(0);
        self.released = self.released.checked_shr(n as u32).unwrap_or(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fifo_with_partial_drain() {
        let mut o: Outbox<16> = Outbox::new();
        assert!(o.push_with(1, 16, |b| {
            b[..3].copy_from_slice(b"abc");
            Some(3)
        }));
        assert!(o.push_with(2, 16, |b| {
            b[..4].copy_from_slice(b"defg");
            Some(4)
        }));
        assert!(!o.push_with(3, 16, |b| (b.len() >= 10).then_some(10)));
        o.drain_front(1);
        {
            let v: heapless::Vec<(NodeId, &[u8]), 4> = o.iter(5).collect();
            assert_eq!(v.as_slice(), &[(2, &b"defg"[..])]);
        }
        assert!(o.push_with(3, 16, |b| (b.len() >= 10).then_some(10)));
        assert_eq!(o.len(), 2);
    }

    fn push(o: &mut Outbox<64>, to: NodeId, early: Option<Term>) {
        let encode = |b: &mut [u8]| {
            b[0] = to as u8;
            Some(1)
        };
        let queued = match early {
            Some(term) => o.push_early_with(to, term, 8, encode),
            None => o.push_with(to, 8, encode),
        };
        assert!(queued);
    }

    fn ids<'a>(it: impl Iterator<Item = (NodeId, &'a [u8])>) -> heapless::Vec<NodeId, 16> {
        it.map(|(to, b)| {
            assert_eq!(b, &[to as u8]);
            to
        })
        .collect()
    }

    #[test]
    fn early_messages_are_handed_out_once() {
        let mut o: Outbox<64> = Outbox::new();
        push(&mut o, 1, None);
        push(&mut o, 2, Some(5));
        push(&mut o, 3, None);
        push(&mut o, 4, Some(5));
        push(&mut o, 5, Some(5)); // beyond the round's first 4 messages
        assert_eq!(o.take_early(4, 4), 0, "term 5 is not durable");
        let mask = o.take_early(4, 5);
        assert_eq!(ids(o.iter_selected(4, mask)).as_slice(), &[2, 4]);
        assert_eq!(o.take_early(4, 5), 0, "already handed out");
        assert_eq!(ids(o.iter(4)).as_slice(), &[1, 3]);
        o.drain_front(4);
        assert_eq!(ids(o.iter(1)).as_slice(), &[5]);
        let mask = o.take_early(1, 5);
        assert_eq!(ids(o.iter_selected(1, mask)).as_slice(), &[5]);
        assert_eq!(ids(o.iter(1)).as_slice(), &[] as &[NodeId]);
        o.drain_front(1);
        assert_eq!((o.len(), o.early, o.released), (0, 0, 0));
    }

    #[test]
    fn a_new_term_unflags_earlier_early_messages() {
        let mut o: Outbox<64> = Outbox::new();
        push(&mut o, 1, Some(5));
        push(&mut o, 2, Some(6));
        assert_eq!(o.take_early(2, 5), 0);
        let mask = o.take_early(2, 6);
        assert_eq!(ids(o.iter_selected(2, mask)).as_slice(), &[2]);
        assert_eq!(ids(o.iter(2)).as_slice(), &[1]);
    }

    #[test]
    fn a_full_outbox_of_early_messages() {
        let mut o: Outbox<{ OUTBOX_MESSAGES_MAX * 2 }> = Outbox::new();
        for i in 0..OUTBOX_MESSAGES_MAX {
            assert!(o.push_early_with(i as NodeId, 1, 2, |_| Some(1)));
        }
        assert!(!o.push_early_with(99, 1, 2, |_| Some(1)));
        assert_eq!(o.take_early(usize::MAX, 1), low_bits(OUTBOX_MESSAGES_MAX));
        assert_eq!(o.iter(usize::MAX).count(), 0);
        o.drain_front(OUTBOX_MESSAGES_MAX);
        assert_eq!((o.len(), o.early, o.released), (0, 0, 0));
    }
}
