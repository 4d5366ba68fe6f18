//! The node runtime allocates nothing per message once it is warm: a 3-node cluster of
//! [`NodeRuntime`]s, in this process on their own threads, serves a client that overwrites a
//! few keys (same value length, so the KV map never needs a new allocation either), and a
//! counting global allocator counts what the runtime threads allocate over a steady-state
//! window of client operations (each of which is several datagrams, a log append, an fsync
//! and a reply on the leader, and an append on the followers).
//!
//! It lives in its own test binary so its global allocator does not disturb other tests.

// A global allocator must implement an unsafe trait; it only forwards to the system one.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tinyraft_std::{ClusterKey, KvClient, NodeOptions, NodeRuntime};

struct Counting;

/// True while the window is open.
static COUNTING: AtomicBool = AtomicBool::new(false);
/// Allocations made by runtime threads while the window was open.
static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

thread_local! {
    /// Set on the runtime threads only: the client's own allocations do not count.
    static RUNTIME_THREAD: Cell<bool> = const { Cell::new(false) };
}

fn note_allocation() {
    if COUNTING.load(Ordering::Relaxed) {
        // `try_with`: the allocator may run while thread-locals are being torn down.
        if RUNTIME_THREAD.try_with(Cell::get).unwrap_or(false) {
            ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        }
    }
}

// SAFETY: every method forwards to `System` with the caller's arguments unchanged, so the
// contract of `GlobalAlloc` is `System`'s; the bookkeeping touches atomics and a
// const-initialized thread-local without a destructor, none of which allocate.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note_allocation();
        // SAFETY: forwarded unchanged (see above).
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note_allocation();
        // SAFETY: forwarded unchanged (see above).
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note_allocation();
        // SAFETY: forwarded unchanged (see above).
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded unchanged (see above).
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn free_addrs(n: usize) -> Vec<SocketAddr> {
    let socks: Vec<UdpSocket> = (0..n)
        .map(|_| UdpSocket::bind("127.0.0.1:0").unwrap())
        .collect();
    socks.iter().map(|s| s.local_addr().unwrap()).collect()
}

#[test]
fn runtime_allocates_nothing_per_message_in_steady_state() {
    let dir = tempfile::tempdir().unwrap();
    let addrs = free_addrs(3);
    let peers: Vec<(u64, SocketAddr)> = addrs
        .iter()
        .enumerate()
        .map(|(i, &a)| (i as u64 + 1, a))
        .collect();
    let key = ClusterKey::insecure_demo();
    let mut cluster_id = 0;
    let mut stops = Vec::new();
    let mut threads = Vec::new();
    for &(id, _) in &peers {
        let mut opts = NodeOptions::new(
            id,
            peers.clone(),
            dir.path().join(format!("n{id}")),
            key.clone(),
        );
        opts.keys_max = 1024;
        cluster_id = opts.cluster_id;
        let rt = NodeRuntime::open(opts).unwrap();
        stops.push(rt.shutdown_handle());
        threads.push(std::thread::spawn(move || {
            RUNTIME_THREAD.with(|c| c.set(true));
            rt.run()
        }));
    }

    let mut client = KvClient::new(addrs.clone(), key, cluster_id).unwrap();
    client.op_timeout = Duration::from_secs(10);
    let value = [b'v'; 100];
    let op = |client: &mut KvClient, i: usize| {
        let k = format!("key{}", i % 16);
        if i % 4 == 3 {
            client.get(k.as_bytes()).unwrap();
        } else {
            client.put(k.as_bytes(), &value).unwrap();
        }
    };
    // Warm-up: elections, first keys, buffers growing to their working size, the first
    // status publications.
    let warm_until = Instant::now() + Duration::from_secs(1);
    let mut i = 0;
    while Instant::now() < warm_until || i < 500 {
        op(&mut client, i);
        i += 1;
    }

    // The window. An election inside it (a loaded machine can delay heartbeats) is not the
    // steady state: term and vote are written to disk and waiting clients are redirected,
    // which allocates. Such a window is measured again.
    const OPS: usize = 3000;
    let term = |client: &mut KvClient| -> Vec<u64> {
        addrs
            .iter()
            .map(|&a| client.status(a).map_or(0, |s| s.term))
            .collect()
    };
    let mut measured = None;
    for _attempt in 0..3 {
        let before = term(&mut client);
        ALLOCATIONS.store(0, Ordering::SeqCst);
        COUNTING.store(true, Ordering::SeqCst);
        let started = Instant::now();
        for j in 0..OPS {
            op(&mut client, i + j);
        }
        let window = started.elapsed();
        COUNTING.store(false, Ordering::SeqCst);
        i += OPS;
        if term(&mut client) == before {
            measured = Some((ALLOCATIONS.load(Ordering::SeqCst), window));
            break;
        }
    }
    let (allocations, window) = measured.expect("three windows in a row saw an election");

    for s in &stops {
        s.request();
    }
    for t in threads {
        t.join().unwrap().unwrap();
    }
    println!(
        "runtime allocations over {OPS} client operations ({:.2} s): {allocations} ({:.4} per operation)",
        window.as_secs_f64(),
        allocations as f64 / OPS as f64
    );
    // Each operation is at least four datagrams on the leader (request, two appends, two
    // acknowledgements, reply), a log append and an fsync: one allocation per message
    // would show as several per operation. What is left is amortized growth, not per
    // message: FileStorage's in-memory index of the log (one `Loc` per entry) doubles its
    // capacity now and then, because the runtime does not compact the log yet.
    assert!(
        allocations * 50 < OPS as u64,
        "{allocations} allocations on the runtime threads over {OPS} operations"
    );
}
