//! The bounded queue of encoded messages waiting to be released by a ready round.

use heapless::Vec;

use crate::limits::OUTBOX_MESSAGES_MAX;
use crate::types::NodeId;

#[derive(Clone, Copy, Debug)]
struct Slot {
    to: NodeId,
    end: usize,
}

/// Encoded messages laid end to end in `BYTES` bytes.
pub(crate) struct Outbox<const BYTES: usize> {
    buf: [u8; BYTES],
    slots: Vec<Slot, OUTBOX_MESSAGES_MAX>,
}

impl<const BYTES: usize> Outbox<BYTES> {
    pub(crate) const fn new() -> Self {
        Self {
            buf: [0; BYTES],
            slots: Vec::new(),
        }
    }

    /// Forgets every queued message.
    pub(crate) fn clear(&mut self) {
        self.slots.clear();
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

    /// The first `n` messages.
    pub(crate) fn iter(&self, n: usize) -> impl Iterator<Item = (NodeId, &[u8])> + '_ {
        let mut start = 0;
        self.slots.iter().take(n).map(move |s| {
            let m = (s.to, &self.buf[start..s.end]);
            start = s.end;
            m
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
}
