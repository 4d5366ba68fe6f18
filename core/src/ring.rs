//! A bounded log of entries packed into one byte arena.
//!
//! Records are `[term: u64 LE][len: u32 LE][kind: u8][payload]`, laid one after another in a
//! ring of `BYTES` bytes; a record never straddles the end of the arena (if it does not fit
//! before the end it starts again at offset 0). A small table of record offsets, one `u32` per
//! entry, gives O(1) lookup by index. Small entries therefore cost their size plus 17 bytes,
//! not the size of the largest possible entry.

use heapless::Deque;

use crate::types::{Entry, EntryKind, Index, Term};

const HEADER: usize = 13;

/// The ring has no room for the entry (in bytes or in entry slots).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RingFull;

/// A bounded, contiguous run of log entries `first_index()..=last_index()`.
#[derive(Clone)]
pub struct EntryRing<const BYTES: usize, const ENTRIES: usize> {
    arena: [u8; BYTES],
    /// Byte offset of each entry's record; `starts[0]` is the entry `first`.
    starts: Deque<u32, ENTRIES>,
    /// Index of `starts[0]`; when empty, the index the next pushed entry gets.
    first: Index,
}

impl<const BYTES: usize, const ENTRIES: usize> EntryRing<BYTES, ENTRIES> {
    const FITS_U32: () = assert!(BYTES <= u32::MAX as usize, "arena offsets are u32");

    /// An empty ring whose first pushed entry will get index `first`.
    pub const fn new(first: Index) -> Self {
        let () = Self::FITS_U32;
        Self {
            arena: [0; BYTES],
            starts: Deque::new(),
            first,
        }
    }

    /// Index of the first entry (or of the next entry, when empty).
    pub fn first_index(&self) -> Index {
        self.first
    }

    /// Index of the last entry (`first_index() - 1` when empty).
    pub fn last_index(&self) -> Index {
        self.first + self.starts.len() as Index - 1
    }

    /// Number of entries held.
    pub fn len(&self) -> usize {
        self.starts.len()
    }

    /// True when no entry is held.
    pub fn is_empty(&self) -> bool {
        self.starts.is_empty()
    }

    /// Bytes of the arena in use, records and headers included.
    pub fn bytes_used(&self) -> usize {
        let (Some(&head), Some(&back)) = (self.starts.front(), self.starts.back()) else {
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
        self.starts.iter().map(|&s| self.read_len(s)).sum()
    }

    fn slot(&self, index: Index) -> Option<usize> {
        if index < self.first {
            return None;
        }
        let slot = usize::try_from(index - self.first).ok()?;
        (slot < self.starts.len()).then_some(slot)
    }

    fn start_of(&self, slot: usize) -> u32 {
        // The deque is a ring itself; `iter().nth` is O(1) for its slices-based iterator only in
        // chunks, so index the two halves directly.
        let (a, b) = self.starts.as_slices();
        if slot < a.len() {
            a[slot]
        } else {
            b[slot - a.len()]
        }
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
        self.get(index).map(|e| e.term)
    }

    /// Entries `lo..hi` (clamped to what is held), in order.
    pub fn iter(&self, lo: Index, hi: Index) -> impl Iterator<Item = Entry<'_>> + '_ {
        let lo = lo.max(self.first);
        let hi = hi.min(self.last_index() + 1);
        (lo..hi.max(lo)).filter_map(move |i| self.get(i))
    }

    /// True if the live records run past the end of the arena and continue at offset 0.
    fn wrapped(&self) -> bool {
        match (self.starts.front(), self.starts.back()) {
            (Some(f), Some(b)) => b < f,
            _ => false,
        }
    }

    /// End of the records that sit before the wrap point.
    fn wrap_end(&self) -> usize {
        // The last record (in log order) that starts at or after the head ends the upper run.
        let head = self.starts.front().copied().unwrap_or(0);
        self.starts
            .iter()
            .filter(|&&s| s >= head)
            .map(|&s| self.record_end(s))
            .max()
            .unwrap_or(0)
    }

    /// Where a record of `size` bytes can go, if anywhere.
    fn place(&self, size: usize) -> Option<usize> {
        let (Some(&head), Some(&back)) = (self.starts.front(), self.starts.back()) else {
            return (size <= BYTES).then_some(0);
        };
        let head = head as usize;
        let tail = self.record_end(back);
        if self.wrapped() {
            (tail + size <= head).then_some(tail)
        } else if tail + size <= BYTES {
            Some(tail)
        } else {
            (size <= head).then_some(0)
        }
    }

    /// True if an entry with `len` payload bytes would fit now.
    pub fn fits(&self, len: usize) -> bool {
        self.starts.len() < ENTRIES && self.place(HEADER + len).is_some()
    }

    /// Appends an entry with index `last_index() + 1`.
    pub fn push(&mut self, term: Term, kind: EntryKind, data: &[u8]) -> Result<(), RingFull> {
        if self.starts.len() >= ENTRIES || data.len() > u32::MAX as usize {
            return Err(RingFull);
        }
        let at = self.place(HEADER + data.len()).ok_or(RingFull)?;
        let rec = &mut self.arena[at..at + HEADER + data.len()];
        rec[..8].copy_from_slice(&term.to_le_bytes());
        rec[8..12].copy_from_slice(&(data.len() as u32).to_le_bytes());
        rec[12] = kind as u8;
        rec[HEADER..].copy_from_slice(data);
        self.starts.push_back(at as u32).map_err(|_| RingFull)
    }

    /// Discards the entries with index `>= index`.
    pub fn truncate_from(&mut self, index: Index) {
        while !self.starts.is_empty() && self.last_index() >= index {
            self.starts.pop_back();
        }
    }

    /// Discards the entries with index `<= index`. When that empties the ring, the next
    /// pushed entry gets index `index + 1`.
    pub fn discard_through(&mut self, index: Index) {
        while self.first <= index {
            if self.starts.pop_front().is_none() {
                self.first = index + 1;
                return;
            }
            self.first += 1;
        }
    }

    /// Empties the ring; the next pushed entry gets index `first`.
    pub fn reset(&mut self, first: Index) {
        self.starts.clear();
        self.first = first;
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
