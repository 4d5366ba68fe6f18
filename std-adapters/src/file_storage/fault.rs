//! Fault injection for tests: make the next fsync fail, the next write fail, or a write stop
//! half-way as if the process had crashed; and helpers that damage files on disk.
//!
//! The hooks sit inside [`super::FileStorage`]'s I/O calls, so a test exercises the real
//! reaction to the failure (poisoning, rollback) and, after reopening, the real recovery path.
//! A [`FaultInjector`] is a cheap handle: clone it, give one clone to
//! [`super::FileStorageOptions::faults`] and keep the other to arm faults while the storage
//! runs. Without an injector the hooks cost one branch per write or sync.

use crate::sync::shim::{Arc, AtomicU64, Ordering};
use std::fs::OpenOptions;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;

/// Armed faults, shared between the test and the storage. Each kind counts down: arming it
/// `n` times fails the next `n` operations of that kind.
#[derive(Clone, Debug, Default)]
pub struct FaultInjector {
    inner: Arc<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    log_sync_failures: AtomicU64,
    meta_sync_failures: AtomicU64,
    write_failures: AtomicU64,
    write_failures_full: AtomicU64,
    /// `bytes + 1` of the next segment write to keep before "crashing"; 0 when not armed.
    crash_write_after: AtomicU64,
    snapshot_sync_failures: AtomicU64,
    snapshot_write_failures_full: AtomicU64,
}

fn take(counter: &AtomicU64) -> bool {
    counter
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok()
}

/// What the storage should do with the next segment write.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum WriteFault {
    /// Fail before writing anything, with this error.
    Fail(io::ErrorKind),
    /// Write only this many bytes, then behave as if the process died.
    Crash(usize),
}

impl FaultInjector {
    /// A handle with nothing armed.
    pub fn new() -> Self {
        Self::default()
    }

    /// The next fdatasync of a log segment reports an I/O error (as the kernel does when
    /// writeback failed). The data was written to the page cache but must be assumed lost.
    pub fn fail_next_log_sync(&self) {
        self.inner.log_sync_failures.fetch_add(1, Ordering::SeqCst);
    }

    /// The next fsync of the hard-state file or of the directory fails.
    pub fn fail_next_meta_sync(&self) {
        self.inner.meta_sync_failures.fetch_add(1, Ordering::SeqCst);
    }

    /// The next write to a log segment fails with an I/O error before writing anything.
    pub fn fail_next_write(&self) {
        self.inner.write_failures.fetch_add(1, Ordering::SeqCst);
    }

    /// The next write to a log segment fails as if the disk were full.
    pub fn fill_disk_on_next_write(&self) {
        self.inner
            .write_failures_full
            .fetch_add(1, Ordering::SeqCst);
    }

    /// The next write to a log segment stores only its first `bytes` bytes; then the storage
    /// behaves as if its process had died there: the call fails, the storage is poisoned and
    /// nothing is cleaned up. Reopening the directory then sees a torn write.
    pub fn crash_during_next_write(&self, bytes: usize) {
        self.inner
            .crash_write_after
            .store(bytes as u64 + 1, Ordering::SeqCst);
    }

    /// The next fdatasync of a snapshot file being finished reports an I/O error.
    pub fn fail_next_snapshot_sync(&self) {
        self.inner
            .snapshot_sync_failures
            .fetch_add(1, Ordering::SeqCst);
    }

    /// The next write of snapshot data (or of a snapshot header or trailer) fails as if the
    /// disk were full, before writing anything.
    pub fn fill_disk_on_next_snapshot_write(&self) {
        self.inner
            .snapshot_write_failures_full
            .fetch_add(1, Ordering::SeqCst);
    }

    pub(crate) fn take_snapshot_sync_failure(&self) -> Option<io::Error> {
        take(&self.inner.snapshot_sync_failures)
            .then(|| io::Error::other("injected snapshot fdatasync failure"))
    }

    pub(crate) fn take_snapshot_write_failure(&self) -> Option<io::Error> {
        take(&self.inner.snapshot_write_failures_full).then(|| {
            io::Error::new(
                io::ErrorKind::StorageFull,
                "injected out of space writing a snapshot",
            )
        })
    }

    pub(crate) fn take_log_sync_failure(&self) -> Option<io::Error> {
        take(&self.inner.log_sync_failures).then(|| io::Error::other("injected fdatasync failure"))
    }

    pub(crate) fn take_meta_sync_failure(&self) -> Option<io::Error> {
        take(&self.inner.meta_sync_failures).then(|| io::Error::other("injected fsync failure"))
    }

    pub(crate) fn take_write_fault(&self) -> Option<WriteFault> {
        let crash = self.inner.crash_write_after.swap(0, Ordering::SeqCst);
        if crash != 0 {
            return Some(WriteFault::Crash((crash - 1) as usize));
        }
        if take(&self.inner.write_failures_full) {
            return Some(WriteFault::Fail(io::ErrorKind::StorageFull));
        }
        if take(&self.inner.write_failures) {
            return Some(WriteFault::Fail(io::ErrorKind::Other));
        }
        None
    }
}

/// Cuts the file at `path` to `len` bytes, or extends it with zeros (what a crash leaves when
/// the file size reached the disk but the data did not).
pub fn set_file_len(path: impl AsRef<Path>, len: u64) -> io::Result<()> {
    OpenOptions::new().write(true).open(path)?.set_len(len)
}

/// Inverts bit `bit` (0..8) of the byte at `offset` in the file at `path`.
pub fn flip_bit(path: impl AsRef<Path>, offset: u64, bit: u8) -> io::Result<()> {
    let f = OpenOptions::new().read(true).write(true).open(path)?;
    let mut b = [0u8; 1];
    f.read_exact_at(&mut b, offset)?;
    b[0] ^= 1 << (bit % 8);
    f.write_all_at(&b, offset)
}

/// Overwrites bytes at `offset` in the file at `path` with `bytes` (extending it if needed).
pub fn overwrite(path: impl AsRef<Path>, offset: u64, bytes: &[u8]) -> io::Result<()> {
    OpenOptions::new()
        .write(true)
        .open(path)?
        .write_all_at(bytes, offset)
}

#[cfg(all(test, loom))]
mod loom_tests {
    use super::*;

    /// Faults armed from one thread while the storage consumes them on another: each arming
    /// fails exactly one operation, never zero and never two.
    #[test]
    fn every_armed_fault_fires_exactly_once() {
        loom::model(|| {
            let f = FaultInjector::new();
            let arm = f.clone();
            let t = loom::thread::spawn(move || {
                arm.fail_next_log_sync();
                arm.fail_next_log_sync();
            });
            let mut fired = usize::from(f.take_log_sync_failure().is_some());
            t.join().unwrap();
            while f.take_log_sync_failure().is_some() {
                fired += 1;
            }
            assert_eq!(fired, 2);
        });
    }
}
