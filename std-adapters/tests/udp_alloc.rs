//! The UDP transport allocates nothing per datagram once bound: neither to send, nor to
//! receive, nor to drop a flood of garbage. Memory is therefore bounded by the two buffers
//! allocated at bind time, whatever arrives.
//!
//! A counting global allocator, counting only on the thread that asks for it, checks this.
//! It lives in its own test binary so that it does not slow down or disturb the other tests.

// A global allocator must implement an unsafe trait; it only forwards to the system one.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;

use tinyraft::Transport;
use tinyraft_std::udp::frame::{self, FrameHeader, FrameKind, FRAME_OVERHEAD_BYTES};
use tinyraft_std::udp::{ClusterKey, Incoming, UdpConfig, UdpTransport};

struct Counting;

thread_local! {
    static COUNTING: Cell<bool> = const { Cell::new(false) };
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

fn note_allocation() {
    // `try_with`: the allocator may run while thread-locals are being torn down.
    let _ = COUNTING.try_with(|on| {
        if on.get() {
            let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
        }
    });
}

// SAFETY: every method forwards to `System` with the caller's arguments unchanged, so the
// contract of `GlobalAlloc` is `System`'s; the bookkeeping touches only const-initialized
// thread-locals without destructors, which never allocate.
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

/// Allocations made by `f` on this thread.
fn allocations_in(f: impl FnOnce()) -> u64 {
    ALLOCATIONS.with(|n| n.set(0));
    COUNTING.with(|on| on.set(true));
    f();
    COUNTING.with(|on| on.set(false));
    ALLOCATIONS.with(|n| n.get())
}

const CLUSTER: u64 = 3;
const WAIT: Option<Duration> = Some(Duration::from_secs(5));

fn key() -> ClusterKey {
    ClusterKey::from_hex(b"0f0e0d0c0b0a09080706050403020100").unwrap()
}

#[test]
fn no_allocation_per_datagram() {
    let loopback: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let raw = UdpSocket::bind(loopback).unwrap();
    let mut b = UdpTransport::bind(UdpConfig::new(2, loopback, CLUSTER, key())).unwrap();
    let mut a = UdpTransport::bind(UdpConfig {
        peers: vec![(2, b.local_addr().unwrap()), (3, raw.local_addr().unwrap())],
        ..UdpConfig::new(1, loopback, CLUSTER, key())
    })
    .unwrap();
    b.set_peer(1, a.local_addr().unwrap()).unwrap();
    let a_addr = a.local_addr().unwrap();

    // Datagrams prepared before counting starts: garbage of every kind, and a valid frame.
    let frame_from_3 = |kind, cluster_id, sender, payload: &[u8]| {
        let mut buf = vec![0u8; payload.len() + FRAME_OVERHEAD_BYTES];
        let header = FrameHeader {
            kind,
            cluster_id,
            sender,
        };
        frame::encode(&key(), &header, payload, &mut buf).unwrap();
        buf
    };
    let valid = frame_from_3(FrameKind::Raft, CLUSTER, 3, b"valid");
    let mut tampered = valid.clone();
    tampered[20] ^= 1;
    let garbage = [
        vec![0x42; 64],
        valid[..30].to_vec(),
        tampered,
        frame_from_3(FrameKind::Raft, CLUSTER + 1, 3, b"other cluster"),
        frame_from_3(FrameKind::Raft, CLUSTER, 99, b"unknown"),
        frame_from_3(FrameKind::ClientResponse, CLUSTER, 2, b"wrong source"),
    ];
    let payload = vec![0x5a; 1000];

    // Warm up: the first use of a socket or of thread-local state may allocate once.
    a.send(2, &payload).unwrap();
    assert!(b.recv(WAIT).unwrap().is_some());
    raw.send_to(&valid, a_addr).unwrap();
    assert!(a.recv(WAIT).unwrap().is_some());
    assert_eq!(a.recv(Some(Duration::from_millis(1))).unwrap(), None);

    const ROUNDS: usize = 200;
    let sends = allocations_in(|| {
        for _ in 0..ROUNDS {
            a.send(2, &payload).unwrap();
            match b.recv(WAIT).unwrap() {
                Some(Incoming::Raft {
                    from: 1,
                    payload: p,
                }) => assert_eq!(p.len(), 1000),
                other => panic!("unexpected {other:?}"),
            }
            b.send(1, b"ack").unwrap();
            match a.recv(WAIT).unwrap() {
                Some(Incoming::Raft {
                    from: 2,
                    payload: b"ack",
                }) => {}
                other => panic!("unexpected {other:?}"),
            }
        }
    });
    assert_eq!(
        sends, 0,
        "allocations while sending and receiving valid frames"
    );

    // The flood is sent outside the counted region (the raw socket is test code), and
    // received inside it.
    for round in 0..ROUNDS {
        for g in &garbage {
            raw.send_to(g, a_addr).unwrap();
        }
        raw.send_to(&valid, a_addr).unwrap();
        let allocs = allocations_in(|| match a.recv(WAIT).unwrap() {
            Some(Incoming::Raft {
                from: 3,
                payload: b"valid",
            }) => {}
            other => panic!("unexpected {other:?}"),
        });
        assert_eq!(
            allocs, 0,
            "allocations while dropping garbage in round {round}"
        );
    }
    let stats = a.stats();
    assert_eq!(stats.dropped_total(), (ROUNDS * garbage.len()) as u64);
    assert_eq!(stats.dropped_malformed, 2 * ROUNDS as u64);
    assert_eq!(stats.dropped_auth, ROUNDS as u64);
    assert_eq!(stats.dropped_wrong_cluster, ROUNDS as u64);
    assert_eq!(stats.dropped_unknown_peer, ROUNDS as u64);
    assert_eq!(stats.dropped_wrong_source, ROUNDS as u64);

    // Waiting with a timeout and finding nothing allocates nothing either.
    let idle = allocations_in(|| {
        assert_eq!(a.recv(Some(Duration::from_millis(20))).unwrap(), None);
    });
    assert_eq!(idle, 0, "allocations while waiting");

    // The counter does see allocations, so the zeros above mean something.
    assert!(allocations_in(|| drop(std::hint::black_box(vec![1u8; 10]))) > 0);
}
