//! A snapshot of any size is written, checked on open and read back with memory bounded by a
//! small buffer: the data goes straight between the caller's slice and the file.
//!
//! A counting global allocator, counting only on the thread that asks for it, records the peak
//! of live heap bytes while a 50 MB snapshot is written, opened and read. It lives in its own
//! test binary so that it does not slow down or disturb the other tests.

// A global allocator must implement an unsafe trait; it only forwards to the system one.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use tempfile::TempDir;
use tinyraft::{Entry, EntryKind, Membership, SnapshotMeta, Storage};
use tinyraft_std::{FileStorage, FileStorageOptions};

struct Counting;

thread_local! {
    static COUNTING: Cell<bool> = const { Cell::new(false) };
    static LIVE: Cell<i64> = const { Cell::new(0) };
    static PEAK: Cell<i64> = const { Cell::new(0) };
}

fn note(delta: i64) {
    // `try_with`: the allocator may run while thread-locals are being torn down.
    let _ = COUNTING.try_with(|on| {
        if on.get() {
            let _ = LIVE.try_with(|live| {
                live.set(live.get() + delta);
                let _ = PEAK.try_with(|peak| peak.set(peak.get().max(live.get())));
            });
        }
    });
}

// SAFETY: every method forwards to `System` with the caller's arguments unchanged, so the
// contract of `GlobalAlloc` is `System`'s; the bookkeeping touches only const-initialized
// thread-locals without destructors, which never allocate.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note(layout.size() as i64);
        // SAFETY: forwarded unchanged (see above).
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note(layout.size() as i64);
        // SAFETY: forwarded unchanged (see above).
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note(new_size as i64 - layout.size() as i64);
        // SAFETY: forwarded unchanged (see above).
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        note(-(layout.size() as i64));
        // SAFETY: forwarded unchanged (see above).
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Runs `f` and returns its result and the peak of heap bytes it held live on this thread
/// (memory allocated before `f` and freed inside it counts negatively, which only lowers the
/// peak, so allocate what `f` frees beforehand only if that is what should be measured).
fn peak_in<T>(f: impl FnOnce() -> T) -> (T, u64) {
    LIVE.with(|n| n.set(0));
    PEAK.with(|n| n.set(0));
    COUNTING.with(|on| on.set(true));
    let out = f();
    COUNTING.with(|on| on.set(false));
    (out, PEAK.with(|n| n.get()).max(0) as u64)
}

const SNAPSHOT_BYTES: u64 = 50_000_000;
const PIECE_BYTES: usize = 64 * 1024;
/// Far below the snapshot's size; the largest single buffer involved is the 64 KiB one open
/// uses to check the CRC.
const PEAK_BYTES_MAX: u64 = 128 * 1024;

fn byte(at: u64) -> u8 {
    (at.wrapping_mul(0x9e37_79b9) >> 11) as u8
}

#[test]
fn a_50_mb_snapshot_needs_only_a_small_buffer_to_write_open_and_read() {
    let dir = TempDir::new().unwrap();
    let mut s = FileStorage::open(dir.path(), FileStorageOptions::new()).unwrap();
    for index in 1..=10 {
        s.append(Entry {
            term: 1,
            index,
            kind: EntryKind::Normal,
            data: b"entry",
        })
        .unwrap();
    }
    s.sync().unwrap();
    let meta = SnapshotMeta {
        index: 10,
        term: 1,
        membership: Membership::from_voters(&[1, 2, 3]).unwrap(),
    };
    let mut piece = vec![0u8; PIECE_BYTES];

    let ((), written_peak) = peak_in(|| {
        s.begin_snapshot(&meta).unwrap();
        let mut at = 0u64;
        while at < SNAPSHOT_BYTES {
            let n = (PIECE_BYTES as u64).min(SNAPSHOT_BYTES - at) as usize;
            for (k, b) in piece[..n].iter_mut().enumerate() {
                *b = byte(at + k as u64);
            }
            s.write_snapshot(&piece[..n]).unwrap();
            at += n as u64;
        }
        s.finish_snapshot().unwrap();
    });
    drop(s);

    let (s, open_peak) =
        peak_in(|| FileStorage::open(dir.path(), FileStorageOptions::new()).unwrap());
    assert_eq!(s.snapshot_len(), SNAPSHOT_BYTES);
    assert_eq!(s.snapshot_meta(), meta);

    let (read, read_peak) = peak_in(|| {
        let mut at = 0u64;
        let mut same = true;
        loop {
            let n = s.read_snapshot(at, &mut piece).unwrap();
            if n == 0 {
                break;
            }
            same &= piece[..n]
                .iter()
                .enumerate()
                .all(|(k, &b)| b == byte(at + k as u64));
            at += n as u64;
        }
        (at, same)
    });
    assert_eq!(read, (SNAPSHOT_BYTES, true));

    for (what, peak) in [
        ("writing", written_peak),
        ("opening", open_peak),
        ("reading", read_peak),
    ] {
        assert!(
            peak <= PEAK_BYTES_MAX,
            "{what} a {SNAPSHOT_BYTES}-byte snapshot held {peak} heap bytes at once"
        );
    }
    // Reading allocates nothing at all.
    assert_eq!(read_peak, 0);
}
