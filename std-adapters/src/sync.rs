//! State shared between threads, behind a shim so loom can model it (`RUSTFLAGS="--cfg loom"`).
//!
//! The node runtime is one thread (see [`crate::runtime`]); the only state it shares is the
//! [`Shutdown`] flag (set from a signal handler or another thread) and the [`StatusCell`] it
//! publishes for observers in the same process. The file log's test-only
//! [`crate::file_storage::FaultInjector`] is shared with the thread arming faults; it uses the
//! same shim and has its own loom model.

/// The primitives, from loom under `cfg(loom)` and from std otherwise.
pub(crate) mod shim {
    #[cfg(loom)]
    pub(crate) use loom::sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc, Mutex,
    };
    #[cfg(not(loom))]
    pub(crate) use std::sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc, Mutex,
    };
}

use shim::{Arc, AtomicBool, Mutex, Ordering};

/// A request to stop, shared by clones. Setting it is idempotent; the runtime checks it at
/// least once per tick and stops after finishing its current ready round (so everything it
/// acknowledged stays durable).
#[derive(Clone, Debug, Default)]
pub struct Shutdown {
    flag: Arc<AtomicBool>,
}

impl Shutdown {
    /// A flag not yet set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Asks the runtime to stop.
    pub fn request(&self) {
        // Release: whatever the requester did before is visible to the runtime that sees it.
        self.flag.store(true, Ordering::Release);
    }

    /// True once [`Shutdown::request`] was called on any clone.
    pub fn is_requested(&self) -> bool {
        self.flag.load(Ordering::Acquire)
    }
}

/// The latest value published by one thread for others to read: each read sees one whole
/// published value, never a mix of two.
#[derive(Debug, Default)]
pub struct StatusCell<T> {
    value: Arc<Mutex<Option<T>>>,
}

impl<T> Clone for StatusCell<T> {
    fn clone(&self) -> Self {
        Self {
            value: self.value.clone(),
        }
    }
}

impl<T: Clone> StatusCell<T> {
    /// An empty cell.
    pub fn new() -> Self {
        Self {
            value: Arc::new(Mutex::new(None)),
        }
    }

    /// Replaces the published value.
    pub fn publish(&self, v: T) {
        // A poisoned lock means a publisher panicked mid-update; the value is still whole
        // (replaced in one move), so keep going.
        let mut g = self.value.lock().unwrap_or_else(|p| p.into_inner());
        *g = Some(v);
    }

    /// The latest published value, if any.
    pub fn get(&self) -> Option<T> {
        self.value.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

#[cfg(all(test, loom))]
mod loom_tests {
    use super::*;
    use loom::thread;

    #[test]
    fn shutdown_is_seen_with_what_came_before_it() {
        loom::model(|| {
            let s = Shutdown::new();
            let data = Arc::new(shim::AtomicU64::new(0));
            let (s2, d2) = (s.clone(), data.clone());
            let t = thread::spawn(move || {
                d2.store(42, Ordering::Relaxed);
                s2.request();
            });
            if s.is_requested() {
                assert_eq!(data.load(Ordering::Relaxed), 42);
            }
            t.join().unwrap();
            assert!(s.is_requested());
        });
    }

    #[test]
    fn status_reads_are_whole_and_monotonic_per_reader() {
        loom::model(|| {
            let cell: StatusCell<(u64, u64)> = StatusCell::new();
            let w = cell.clone();
            let t = thread::spawn(move || {
                w.publish((1, 10));
                w.publish((2, 20));
            });
            let mut last = 0;
            for _ in 0..2 {
                if let Some((a, b)) = cell.get() {
                    assert_eq!(b, a * 10, "a torn value was read");
                    assert!(a >= last, "went back in time");
                    last = a;
                }
            }
            t.join().unwrap();
            assert_eq!(cell.get(), Some((2, 20)));
        });
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn shutdown_and_status_across_threads() {
        let s = Shutdown::new();
        let cell: StatusCell<u64> = StatusCell::new();
        let (s2, c2) = (s.clone(), cell.clone());
        std::thread::spawn(move || {
            c2.publish(5);
            s2.request();
        })
        .join()
        .unwrap();
        assert!(s.is_requested());
        assert_eq!(cell.get(), Some(5));
    }
}
