//! A bounded log of entries packed into one byte arena.
//!
//! Records are `[term: u64 LE][len: u32 LE][kind: u8][payload]`, laid one after another in a
//! ring of `BYTES` bytes; a record never straddles the end of the arena (if it does not fit
//! before the end it starts again at offset 0). A small table of record offsets, one `u32` per
//! entry, gives O(1) lookup by index. Small entries therefore cost their size plus 17 bytes,
//! not the size of the largest possible entry.

use crate::types::{Entry, EntryKind, Index, Term};

const HEADER: usize = 13;

/// The ring has no room for the entry (in bytes or in entry slots).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RingFull;

/// A bounded, contiguous run of log entries `first_index()..=last_index()`.
#[derive(Clone)]
pub struct EntryRing<const BYTES: usize, const ENTRIES: usize> {
    arena: [u8; BYTES],
    /// Byte offset of each entry's record, as a ring of `len` slots starting at `head`: the
    /// record of entry `first + k` starts at `starts[(head + k) % ENTRIES]`. (A plain array
    /// rather than a deque so that finding an entry is one addition and one compare, which
    /// matters: every append, send and apply looks entries up here.)
    starts: [u32; ENTRIES],
    /// Invariant: `head < ENTRIES`.
    head: usize,
    /// Invariant: `len <= ENTRIES`.
    len: usize,
    /// Index just before the entry in slot 0 (when empty, the next pushed entry gets
    /// `before + 1`). Stored this way, not as the first index, so that an empty ring starting
    /// at index 1 is all zero bytes: a `static` holding one then lives in `.bss`, not `.data`.
    before: Index,
}

impl<const BYTES: usize, const ENTRIES: usize> EntryRing<BYTES, ENTRIES> {
    const FITS_U32: () = assert!(BYTES <= u32::MAX as usize, "arena offsets are u32");
    const HOLDS_ONE: () = assert!(ENTRIES >= 1, "a ring holds at least one entry");

    /// An empty ring whose first pushed entry will get index `first`.
    pub const fn new(first: Index) -> Self {
        let () = Self::FITS_U32;
        let () = Self::HOLDS_ONE;
        Self {
            arena: [0; BYTES],
            starts: [0; ENTRIES],
            head: 0,
            len: 0,
            before: first.saturating_sub(1),
        }
    }

    /// Index of the first entry (or of the next entry, when empty).
    pub fn first_index(&self) -> Index {
        self.before + 1
    }

    /// Index of the last entry (`first_index() - 1` when empty).
    pub fn last_index(&self) -> Index {
        self.before + self.len as Index
    }

    /// Number of entries held.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when no entry is held.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Position in `starts` of slot `slot` (`slot <= len <= ENTRIES`).
    fn phys(&self, slot: usize) -> usize {
        let i = self.head + slot;
        if i >= ENTRIES {
            i - ENTRIES
        } else {
            i
        }
    }

    /// Record offset of the entry in slot `slot` (`slot < len`).
    fn start_of(&self, slot: usize) -> u32 {
        self.starts[self.phys(slot)]
    }

    /// Offsets of the first and the last record, if any.
    fn ends(&self) -> Option<(u32, u32)> {
        (self.len > 0).then(|| (self.start_of(0), self.start_of(self.len - 1)))
    }

    /// Bytes of the arena in use, records and headers included.
    pub fn bytes_used(&self) -> usize {
        let Some((head, back)) = self.ends() else {
            return 0;
        };
        let tail = self.record_end(back);
        if self.wrapped() {
            (self.wrap_end() - head as usize) + tail
        } else {
            tail - head as usize
        }
    }

    /// Payload bytes of all entries held.
    pub fn payload_bytes(&self) -> usize {
        (0..self.len).map(|k| self.read_len(self.start_of(k))).sum()
    }

    fn slot(&self, index: Index) -> Option<usize> {
        if index < self.first_index() {
            return None;
        }
        let slot = usize::try_from(index - self.first_index()).ok()?;
        (slot < self.len).then_some(slot)
    }

    fn read_len(&self, start: u32) -> usize {
        let s = start as usize + 8;
        let mut n = [0u8; 4];
        n.copy_from_slice(&self.arena[s..s + 4]);
        u32::from_le_bytes(n) as usize
    }

    fn record_end(&self, start: u32) -> usize {
        start as usize + HEADER + self.read_len(start)
    }

    fn entry_at(&self, start: u32, index: Index) -> Entry<'_> {
        let s = start as usize;
        let mut t = [0u8; 8];
        t.copy_from_slice(&self.arena[s..s + 8]);
        let len = self.read_len(start);
        let kind = EntryKind::from_u8(self.arena[s + 12]).unwrap_or(EntryKind::Normal);
        Entry {
            term: u64::from_le_bytes(t),
            index,
            kind,
            data: &self.arena[s + HEADER..s + HEADER + len],
        }
    }

    /// The entry at `index`, if held.
    pub fn get(&self, index: Index) -> Option<Entry<'_>> {
        let slot = self.slot(index)?;
        Some(self.entry_at(self.start_of(slot), index))
    }

    /// Term of the entry at `index`, if held.
    pub fn term(&self, index: Index) -> Option<Term> {
        let slot = self.slot(index)?;
        let s = self.start_of(slot) as usize;
        let mut t = [0u8; 8];
        t.copy_from_slice(&self.arena[s..s + 8]);
        Some(u64::from_le_bytes(t))
    }

    /// Entries `lo..hi` (clamped to what is held), in order.
    pub fn iter(&self, lo: Index, hi: Index) -> impl Iterator<Item = Entry<'_>> + '_ {
        let lo = lo.max(self.first_index());
        let hi = hi.min(self.last_index() + 1).max(lo);
        // Both are within `first..=first + len`, so the slots fit in usize.
        let (from, to) = (
            (lo - self.first_index()) as usize,
            (hi - self.first_index()) as usize,
        );
        (from..to).map(move |k| self.entry_at(self.start_of(k), self.first_index() + k as Index))
    }

    /// True if the live records run past the end of the arena and continue at offset 0.
    fn wrapped(&self) -> bool {
        self.ends().is_some_and(|(f, b)| b < f)
    }

    /// End of the records that sit before the wrap point.
    fn wrap_end(&self) -> usize {
        // The last record (in log order) that starts at or after the head ends the upper run.
        let head = self.ends().map_or(0, |(f, _)| f);
        (0..self.len)
            .map(|k| self.start_of(k))
            .filter(|&s| s >= head)
            .map(|s| self.record_end(s))
            .max()
            .unwrap_or(0)
    }

    /// Where a record of `size` bytes can go, if anywhere.
    fn place(&self, size: usize) -> Option<usize> {
        let Some((head, back)) = self.ends() else {
            return (size <= BYTES).then_some(0);
        };
        let head = head as usize;
        let tail = self.record_end(back);
        if back < head as u32 {
            (tail + size <= head).then_some(tail)
        } else if tail + size <= BYTES {
            Some(tail)
        } else {
            (size <= head).then_some(0)
        }
    }

    /// True if an entry with `len` payload bytes would fit now.
    pub fn fits(&self, len: usize) -> bool {
        self.len < ENTRIES && self.place(HEADER + len).is_some()
    }

    /// Appends an entry with index `last_index() + 1`.
    pub fn push(&mut self, term: Term, kind: EntryKind, data: &[u8]) -> Result<(), RingFull> {
        if self.len >= ENTRIES || data.len() > u32::MAX as usize {
            return Err(RingFull);
        }
        let at = self.place(HEADER + data.len()).ok_or(RingFull)?;
        let rec = &mut self.arena[at..at + HEADER + data.len()];
        rec[..8].copy_from_slice(&term.to_le_bytes());
        rec[8..12].copy_from_slice(&(data.len() as u32).to_le_bytes());
        rec[12] = kind as u8;
        rec[HEADER..].copy_from_slice(data);
        let slot = self.phys(self.len);
        self.starts[slot] = at as u32;
        self.len += 1;
        Ok(())
    }

    /// Discards the entries with index `>= index`.
    pub fn truncate_from(&mut self, index: Index) {
        let keep = index.saturating_sub(self.first_index());
        if keep < self.len as Index {
            self.len = keep as usize;
        }
    }

    /// Discards the entries with index `<= index`. When that empties the ring, the next
    /// pushed entry gets index `index + 1`.
    pub fn discard_through(&mut self, index: Index) {
        if index < self.first_index() {
            return;
        }
        let drop = (index - self.first_index() + 1).min(self.len as Index) as usize;
        self.head = self.phys(drop);
        self.len -= drop;
        self.before = index;
    }

    /// Empties the ring; the next pushed entry gets index `first`.
    pub fn reset(&mut self, first: Index) {
        self.head = 0;
        self.len = 0;
        self.before = first.saturating_sub(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packs_small_entries_and_wraps_without_splitting() {
        let mut r: EntryRing<64, 16> = EntryRing::new(1);
        // 13 + 7 = 20 bytes each: three fit, the fourth does not.
        for t in 1..=3 {
            r.push(t, EntryKind::Normal, b"abcdefg").unwrap();
        }
        assert_eq!(r.push(9, EntryKind::Normal, b"abcdefg"), Err(RingFull));
        assert_eq!(r.bytes_used(), 60);
        r.discard_through(1);
        // Freed 20 bytes at the start; the new record wraps to offset 0.
        r.push(4, EntryKind::Normal, b"hijklmn").unwrap();
        assert_eq!(r.first_index(), 2);
        assert_eq!(r.last_index(), 4);
        assert_eq!(r.get(4).unwrap().data, b"hijklmn");
        assert_eq!(r.get(2).unwrap().term, 2);
        assert_eq!(r.bytes_used(), 60);
        assert!(!r.fits(0));
    }

    #[test]
    fn truncate_and_reuse() {
        let mut r: EntryRing<128, 8> = EntryRing::new(10);
        for t in 0..5 {
            r.push(t, EntryKind::Normal, &[t as u8; 3]).unwrap();
        }
        r.truncate_from(12);
        assert_eq!(r.last_index(), 11);
        r.push(7, EntryKind::Config, b"x").unwrap();
        let e = r.get(12).unwrap();
        assert_eq!((e.term, e.kind, e.data), (7, EntryKind::Config, &b"x"[..]));
        r.discard_through(100);
        assert!(r.is_empty());
        assert_eq!(r.first_index(), 101);
        assert_eq!(r.last_index(), 100);
    }

    #[test]
    fn slot_limit_is_enforced() {
        let mut r: EntryRing<1024, 2> = EntryRing::new(1);
        r.push(1, EntryKind::Normal, b"").unwrap();
        r.push(1, EntryKind::Normal, b"").unwrap();
        assert_eq!(r.push(1, EntryKind::Normal, b""), Err(RingFull));
    }

    /// Random pushes, truncations and discards against a plain model (index, term, payload).
    #[test]
    fn matches_a_model_under_random_operations() {
        let mut r: EntryRing<200, 7> = EntryRing::new(5);
        let mut model: heapless::Vec<(Index, Term, u8, usize), 7> = heapless::Vec::new();
        let mut next = 5;
        let mut x = 0x2545_f491_4f6c_dd1du64;
        for step in 0..20_000u64 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let len = (x >> 8) as usize % 40;
            match x % 8 {
                0..=3 => {
                    let data = [step as u8; 40];
                    let fits = r.fits(len);
                    let pushed = r.push(step, EntryKind::Normal, &data[..len]).is_ok();
                    assert_eq!(fits, pushed);
                    if pushed {
                        model.push((next, step, step as u8, len)).unwrap();
                        next += 1;
                    }
                }
                4 => {
                    let at = r.first_index() + (x >> 20) % (r.len() as u64 + 2);
                    r.truncate_from(at);
                    model.retain(|m| m.0 < at);
                    next = next.min(at.max(r.first_index()));
                }
                5 | 6 => {
                    let through = r.first_index() + (x >> 20) % (r.len() as u64 + 1);
                    let through = through.saturating_sub(1);
                    r.discard_through(through);
                    model.retain(|m| m.0 > through);
                    next = next.max(through + 1);
                }
                _ => {
                    let used: usize = model.iter().map(|m| m.3 + HEADER).sum();
                    assert!(r.bytes_used() >= used);
                    assert_eq!(r.payload_bytes(), model.iter().map(|m| m.3).sum::<usize>());
                }
            }
            assert_eq!(r.len(), model.len());
            assert_eq!(r.first_index() + r.len() as Index, next);
            for (m, e) in model.iter().zip(r.iter(0, Index::MAX)) {
                assert_eq!((e.index, e.term, e.data.len()), (m.0, m.1, m.3));
                assert!(e.data.iter().all(|&b| b == m.2));
                assert_eq!(r.term(m.0), Some(m.1));
            }
            assert_eq!(r.get(next), None);
        }
    }

    #[test]
    fn steady_state_fifo_never_fills() {
        let mut r: EntryRing<100, 8> = EntryRing::new(1);
        for i in 0..1000u64 {
            let data = [i as u8; 11];
            r.push(i, EntryKind::Normal, &data[..(i % 12) as usize])
                .unwrap();
            if r.len() > 2 {
                r.discard_through(r.first_index());
            }
            let last = r.get(r.last_index()).unwrap();
            assert_eq!(last.term, i);
        }
    }
}
