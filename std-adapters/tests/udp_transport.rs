//! The UDP transport over real loopback sockets: roundtrips, and every kind of bad datagram
//! dropped, counted, and followed by a valid frame that still gets through.
//!
//! Only 127.0.0.1 is used. Every wait is bounded; expected arrivals wait up to `WAIT` but
//! return as soon as the datagram is there. Loopback delivers datagrams between two sockets
//! in order, so "send garbage, then a valid frame, receive the valid frame" is enough to know
//! the garbage was examined before it.

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use tinyraft::{Body, Message, Transport};
use tinyraft_std::udp::frame::{self, FrameHeader, FrameKind, FRAME_OVERHEAD_BYTES};
use tinyraft_std::udp::{
    ClusterKey, Incoming, Response, SendError, UdpClientConfig, UdpClientSocket, UdpConfig,
    UdpStats, UdpTransport, DATAGRAM_BYTES_MAX_DEFAULT,
};

const CLUSTER: u64 = 0xC1;
const WAIT: Option<Duration> = Some(Duration::from_secs(5));

fn key() -> ClusterKey {
    ClusterKey::from_hex(b"00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff")
        .unwrap()
}

fn loopback() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

fn transport(id: u64) -> UdpTransport {
    UdpTransport::bind(UdpConfig::new(id, loopback(), CLUSTER, key())).unwrap()
}

/// Nodes 1 and 2, each configured with the other as a peer.
fn pair() -> (UdpTransport, UdpTransport) {
    let mut a = transport(1);
    let mut b = transport(2);
    a.set_peer(2, b.local_addr().unwrap()).unwrap();
    b.set_peer(1, a.local_addr().unwrap()).unwrap();
    (a, b)
}

/// Node 1, plus a raw socket configured as its peer 2: the raw socket can send any bytes
/// "from peer 2's address".
fn node_and_raw_peer() -> (UdpTransport, UdpSocket) {
    let raw = UdpSocket::bind(loopback()).unwrap();
    let mut t = transport(1);
    t.set_peer(2, raw.local_addr().unwrap()).unwrap();
    (t, raw)
}

fn encode(
    key: &ClusterKey,
    kind: FrameKind,
    cluster_id: u64,
    sender: u64,
    payload: &[u8],
) -> Vec<u8> {
    let mut buf = vec![0u8; payload.len() + FRAME_OVERHEAD_BYTES];
    let header = FrameHeader {
        kind,
        cluster_id,
        sender,
    };
    let n = frame::encode(key, &header, payload, &mut buf).unwrap();
    buf.truncate(n);
    buf
}

fn raft_frame(sender: u64, payload: &[u8]) -> Vec<u8> {
    encode(&key(), FrameKind::Raft, CLUSTER, sender, payload)
}

#[track_caller]
fn expect_raft(t: &mut UdpTransport, from: u64, payload: &[u8]) {
    match t.recv(WAIT).unwrap() {
        Some(Incoming::Raft {
            from: f,
            payload: p,
        }) => {
            assert_eq!(f, from);
            assert_eq!(p, payload);
        }
        other => panic!("expected a Raft frame from {from}, got {other:?}"),
    }
}

/// `stats` with everything but the named drop counter and `received` at zero.
fn only(received: u64, f: impl FnOnce(&mut UdpStats)) -> UdpStats {
    let mut s = UdpStats {
        received,
        ..UdpStats::default()
    };
    f(&mut s);
    s
}

#[test]
fn raft_messages_roundtrip_both_ways() {
    let (mut a, mut b) = pair();
    let msg = Message {
        from: 1,
        to: 2,
        term: 7,
        body: Body::Heartbeat {
            commit: 3,
            context: 99,
        },
    };
    let mut buf = [0u8; 256];
    let n = msg.encode(&mut buf).unwrap();
    a.send(2, &buf[..n]).unwrap();
    match b.recv(WAIT).unwrap() {
        Some(Incoming::Raft { from, payload }) => {
            assert_eq!(from, 1);
            assert_eq!(Message::decode(payload).unwrap(), msg);
        }
        other => panic!("unexpected {other:?}"),
    }

    b.send(1, b"answer").unwrap();
    expect_raft(&mut a, 2, b"answer");

    // The largest payload one datagram can carry also makes it across loopback.
    let big: Vec<u8> = (0..a.payload_bytes_max()).map(|i| i as u8).collect();
    assert_eq!(big.len(), DATAGRAM_BYTES_MAX_DEFAULT - FRAME_OVERHEAD_BYTES);
    a.send(2, &big).unwrap();
    expect_raft(&mut b, 1, &big);

    assert_eq!(a.stats().sent, 2);
    assert_eq!(a.stats().received, 1);
    assert_eq!(
        b.stats(),
        UdpStats {
            sent: 1,
            received: 2,
            ..UdpStats::default()
        }
    );
}

#[test]
fn client_request_and_response_roundtrip() {
    let mut node = transport(1);
    let node_addr = node.local_addr().unwrap();
    let mut config = UdpClientConfig::new(4242, CLUSTER, key());
    config.bind = loopback();
    let mut client = UdpClientSocket::bind(config).unwrap();
    assert_eq!(client.client_id(), 4242);

    client.send_request(node_addr, b"GET k").unwrap();
    let reply_to = match node.recv(WAIT).unwrap() {
        Some(Incoming::ClientRequest {
            client_id,
            addr,
            payload,
        }) => {
            assert_eq!(client_id, 4242);
            assert_eq!(addr, client.local_addr().unwrap());
            assert_eq!(payload, b"GET k");
            addr
        }
        other => panic!("unexpected {other:?}"),
    };
    node.send_client(reply_to, b"VALUE v").unwrap();
    assert_eq!(
        client.recv_response(WAIT).unwrap(),
        Some(Response {
            from: 1,
            addr: node_addr,
            payload: b"VALUE v",
        })
    );
    assert_eq!(client.stats().sent, 1);
    assert_eq!(client.stats().received, 1);
    assert_eq!(node.stats().received, 1);
    assert_eq!(node.stats().sent, 1);
}

#[test]
fn a_node_accepts_client_responses_from_peers_only() {
    let (mut a, mut b) = pair();
    let a_addr = a.local_addr().unwrap();
    let b_addr = b.local_addr().unwrap();
    let mut stranger = transport(3);
    stranger.send_client(a_addr, b"from a stranger").unwrap();
    b.send_client(a_addr, b"from peer 2").unwrap();
    assert_eq!(
        a.recv(WAIT).unwrap(),
        Some(Incoming::ClientResponse {
            from: 2,
            addr: b_addr,
            payload: b"from peer 2",
        })
    );
    assert_eq!(a.stats(), only(1, |s| s.dropped_unknown_peer = 1));
}

#[test]
fn malformed_datagrams_are_dropped_and_counted() {
    let (mut t, raw) = node_and_raw_peer();
    let to = t.local_addr().unwrap();
    let mut bad_magic = raft_frame(2, b"x");
    bad_magic[0] = 0x00;
    let mut bad_kind = raft_frame(2, b"x");
    bad_kind[1] = 0x77;
    let garbage: [&[u8]; 6] = [b"", b"hello", &[0xA1], &[0xff; 300], &bad_magic, &bad_kind];
    for g in garbage {
        raw.send_to(g, to).unwrap();
    }
    raw.send_to(&raft_frame(2, b"still works"), to).unwrap();
    expect_raft(&mut t, 2, b"still works");
    assert_eq!(t.stats(), only(1, |s| s.dropped_malformed = 6));
}

#[test]
fn every_truncation_of_a_valid_frame_is_dropped() {
    let (mut t, raw) = node_and_raw_peer();
    let to = t.local_addr().unwrap();
    let full = raft_frame(2, b"0123456789");
    for len in 0..full.len() {
        raw.send_to(&full[..len], to).unwrap();
    }
    raw.send_to(&full, to).unwrap();
    expect_raft(&mut t, 2, b"0123456789");
    // Shorter than header + tag: not a frame. Longer: a frame whose tag fails.
    assert_eq!(
        t.stats(),
        only(1, |s| {
            s.dropped_malformed = FRAME_OVERHEAD_BYTES as u64;
            s.dropped_auth = 10;
        })
    );
}

#[test]
fn oversized_datagrams_are_dropped_before_decoding() {
    let raw = UdpSocket::bind(loopback()).unwrap();
    let mut config = UdpConfig::new(1, loopback(), CLUSTER, key());
    config.peers = vec![(2, raw.local_addr().unwrap())];
    config.datagram_bytes_max = 256;
    let mut t = UdpTransport::bind(config).unwrap();
    let to = t.local_addr().unwrap();
    assert_eq!(t.payload_bytes_max(), 256 - FRAME_OVERHEAD_BYTES);

    // One byte over the limit, a valid frame over the limit, and the largest datagram.
    raw.send_to(&[0u8; 257], to).unwrap();
    raw.send_to(&raft_frame(2, &[7u8; 300]), to).unwrap();
    raw.send_to(&vec![0xA1; DATAGRAM_BYTES_MAX_DEFAULT], to)
        .unwrap();
    // Exactly at the limit is fine.
    let at_limit = vec![9u8; 256 - FRAME_OVERHEAD_BYTES];
    raw.send_to(&raft_frame(2, &at_limit), to).unwrap();
    expect_raft(&mut t, 2, &at_limit);
    assert_eq!(t.stats(), only(1, |s| s.dropped_oversized = 3));

    // And the sender refuses to build one.
    match t.send(2, &[0u8; 256]) {
        Err(SendError::TooLarge { bytes: 256, max }) => assert_eq!(max, 256 - FRAME_OVERHEAD_BYTES),
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(t.stats().send_dropped, 1);
}

#[test]
fn wrong_key_is_dropped_as_unauthentic() {
    let (mut t, raw) = node_and_raw_peer();
    let to = t.local_addr().unwrap();
    let other = ClusterKey::from_hex(b"ffeeddccbbaa99887766554433221100").unwrap();
    raw.send_to(&encode(&other, FrameKind::Raft, CLUSTER, 2, b"forged"), to)
        .unwrap();
    raw.send_to(
        &encode(
            &ClusterKey::insecure_demo(),
            FrameKind::ClientRequest,
            CLUSTER,
            9,
            b"demo",
        ),
        to,
    )
    .unwrap();
    raw.send_to(&raft_frame(2, b"genuine"), to).unwrap();
    expect_raft(&mut t, 2, b"genuine");
    assert_eq!(t.stats(), only(1, |s| s.dropped_auth = 2));
}

#[test]
fn wrong_cluster_is_dropped() {
    let (mut t, raw) = node_and_raw_peer();
    let to = t.local_addr().unwrap();
    raw.send_to(&encode(&key(), FrameKind::Raft, CLUSTER + 1, 2, b"x"), to)
        .unwrap();
    raw.send_to(&encode(&key(), FrameKind::ClientRequest, 0, 5, b"x"), to)
        .unwrap();
    raw.send_to(&raft_frame(2, b"right cluster"), to).unwrap();
    expect_raft(&mut t, 2, b"right cluster");
    assert_eq!(t.stats(), only(1, |s| s.dropped_wrong_cluster = 2));
}

#[test]
fn unknown_sender_ids_are_dropped() {
    let (mut t, raw) = node_and_raw_peer();
    let to = t.local_addr().unwrap();
    raw.send_to(&raft_frame(3, b"not a peer"), to).unwrap();
    raw.send_to(&raft_frame(0, b"nobody"), to).unwrap();
    // A frame claiming to come from the receiving node itself.
    raw.send_to(&raft_frame(1, b"myself"), to).unwrap();
    raw.send_to(
        &encode(&key(), FrameKind::ClientResponse, CLUSTER, 3, b"x"),
        to,
    )
    .unwrap();
    raw.send_to(&raft_frame(2, b"peer"), to).unwrap();
    expect_raft(&mut t, 2, b"peer");
    assert_eq!(t.stats(), only(1, |s| s.dropped_unknown_peer = 4));

    // A removed peer becomes unknown.
    assert_eq!(t.remove_peer(2), Some(raw.local_addr().unwrap()));
    raw.send_to(&raft_frame(2, b"removed"), to).unwrap();
    assert_eq!(t.recv(Some(Duration::from_millis(200))).unwrap(), None);
    assert_eq!(t.stats().dropped_unknown_peer, 5);
}

#[test]
fn authentic_frame_from_the_wrong_address_is_dropped() {
    let (mut a, mut b) = pair();
    let a_addr = a.local_addr().unwrap();
    // An authentic frame saying "from node 2", but not sent from node 2's address.
    let elsewhere = UdpSocket::bind(loopback()).unwrap();
    elsewhere
        .send_to(&raft_frame(2, b"spoofed"), a_addr)
        .unwrap();
    elsewhere
        .send_to(
            &encode(&key(), FrameKind::ClientResponse, CLUSTER, 2, b"x"),
            a_addr,
        )
        .unwrap();
    b.send(1, b"real").unwrap();
    expect_raft(&mut a, 2, b"real");
    assert_eq!(a.stats(), only(1, |s| s.dropped_wrong_source = 2));

    // Moving the peer's configured address moves what is accepted.
    a.set_peer(2, elsewhere.local_addr().unwrap()).unwrap();
    b.send(1, b"old address").unwrap();
    elsewhere
        .send_to(&raft_frame(2, b"new address"), a_addr)
        .unwrap();
    expect_raft(&mut a, 2, b"new address");
    assert_eq!(a.stats().dropped_wrong_source, 3);
}

#[test]
fn replayed_datagrams_are_accepted_again() {
    // A genuine datagram from node 1 to node 2, captured on the way.
    let capture = UdpSocket::bind(loopback()).unwrap();
    let mut sender = transport(1);
    sender.set_peer(2, capture.local_addr().unwrap()).unwrap();
    sender.send(2, b"append #1").unwrap();
    let mut buf = [0u8; 2048];
    capture.set_read_timeout(WAIT).unwrap();
    let (n, _) = capture.recv_from(&mut buf).unwrap();
    let captured = buf[..n].to_vec();

    // Replayed twice to node 2 from the address node 2 knows node 1 by: both are accepted.
    // Raft treats the second as a duplicate message (see the module docs).
    let mut receiver = transport(2);
    receiver.set_peer(1, capture.local_addr().unwrap()).unwrap();
    let to = receiver.local_addr().unwrap();
    capture.send_to(&captured, to).unwrap();
    capture.send_to(&captured, to).unwrap();
    expect_raft(&mut receiver, 1, b"append #1");
    expect_raft(&mut receiver, 1, b"append #1");

    // A client request replayed from anywhere is accepted too; the KV session table
    // deduplicates it by client id and sequence number.
    let mut client_config = UdpClientConfig::new(77, CLUSTER, key());
    client_config.bind = loopback();
    let mut client = UdpClientSocket::bind(client_config).unwrap();
    client
        .send_request(capture.local_addr().unwrap(), b"PUT k v seq=1")
        .unwrap();
    let (n, _) = capture.recv_from(&mut buf).unwrap();
    for _ in 0..2 {
        capture.send_to(&buf[..n], to).unwrap();
    }
    for _ in 0..2 {
        match receiver.recv(WAIT).unwrap() {
            Some(Incoming::ClientRequest {
                client_id,
                addr,
                payload,
            }) => {
                assert_eq!(client_id, 77);
                assert_eq!(payload, b"PUT k v seq=1");
                // The answer would go to the replayer, not to the client.
                assert_eq!(addr, capture.local_addr().unwrap());
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(receiver.stats(), only(4, |_| ()));
}

#[test]
fn client_socket_takes_only_responses() {
    let mut config = UdpClientConfig::new(5, CLUSTER, key());
    config.bind = loopback();
    let mut client = UdpClientSocket::bind(config).unwrap();
    let to = client.local_addr().unwrap();
    let raw = UdpSocket::bind(loopback()).unwrap();
    raw.send_to(&raft_frame(1, b"raft"), to).unwrap();
    raw.send_to(
        &encode(&key(), FrameKind::ClientRequest, CLUSTER, 6, b"req"),
        to,
    )
    .unwrap();
    raw.send_to(b"garbage", to).unwrap();
    raw.send_to(
        &encode(&key(), FrameKind::ClientResponse, CLUSTER + 1, 1, b"x"),
        to,
    )
    .unwrap();
    raw.send_to(
        &encode(&key(), FrameKind::ClientResponse, CLUSTER, 3, b"ok"),
        to,
    )
    .unwrap();
    let got = client.recv_response(WAIT).unwrap().unwrap();
    assert_eq!((got.from, got.payload), (3, &b"ok"[..]));
    assert_eq!(
        client.stats(),
        only(1, |s| {
            s.dropped_unexpected_kind = 2;
            s.dropped_malformed = 1;
            s.dropped_wrong_cluster = 1;
        })
    );
}

#[test]
fn garbage_flood_is_bounded_and_a_valid_frame_still_arrives() {
    const GARBAGE: usize = 10_000;
    // Small batches, so the kernel's receive buffer never overflows and the counts are exact.
    const BATCH: usize = 40;
    let raw = UdpSocket::bind(loopback()).unwrap();
    let mut config = UdpConfig::new(1, loopback(), CLUSTER, key());
    config.peers = vec![(2, raw.local_addr().unwrap())];
    config.datagram_bytes_max = 512;
    let mut t = UdpTransport::bind(config).unwrap();
    let to = t.local_addr().unwrap();
    let wrong_key = ClusterKey::from_hex([b'7'; 64]).unwrap();
    let valid = raft_frame(2, b"after the flood");

    let mut x: u64 = 0x2545_F491_4F6C_DD1D;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let mut expected = UdpStats::default();
    let mut datagram = Vec::with_capacity(600);
    let started = Instant::now();
    for i in 0..GARBAGE {
        datagram.clear();
        match i % 6 {
            0 => {
                let len = (next() % 120) as usize;
                datagram.extend((0..len).map(|_| next() as u8));
                if let Some(first) = datagram.first_mut() {
                    *first = 0x5A; // anything but the magic byte
                }
                expected.dropped_malformed += 1;
            }
            1 => {
                let len = (next() % valid.len() as u64) as usize;
                datagram.extend_from_slice(&valid[..len]);
                if len < FRAME_OVERHEAD_BYTES {
                    expected.dropped_malformed += 1;
                } else {
                    expected.dropped_auth += 1;
                }
            }
            2 => {
                datagram.extend(encode(
                    &wrong_key,
                    FrameKind::Raft,
                    CLUSTER,
                    2,
                    &next().to_le_bytes(),
                ));
                expected.dropped_auth += 1;
            }
            3 => {
                datagram.extend(encode(&key(), FrameKind::Raft, next(), 2, b"x"));
                expected.dropped_wrong_cluster += 1;
            }
            4 => {
                datagram.extend(raft_frame(3 + next() % 1000, b"who?"));
                expected.dropped_unknown_peer += 1;
            }
            _ => {
                let len = 513 + (next() % 80) as usize;
                datagram.resize(len, 0xA1);
                expected.dropped_oversized += 1;
            }
        }
        raw.send_to(&datagram, to).unwrap();
        if (i + 1) % BATCH == 0 || i + 1 == GARBAGE {
            // Each batch ends with a valid frame, which must come out of the garbage.
            raw.send_to(&valid, to).unwrap();
            expect_raft(&mut t, 2, b"after the flood");
            expected.received += 1;
        }
    }
    assert_eq!(t.stats(), expected);
    assert_eq!(t.stats().dropped_total(), GARBAGE as u64);
    assert!(started.elapsed() < Duration::from_secs(60));

    // Nothing is left queued, and the transport still works both ways.
    assert_eq!(t.recv(Some(Duration::ZERO)).unwrap(), None);
    raw.send_to(&valid, to).unwrap();
    expect_raft(&mut t, 2, b"after the flood");
}

#[test]
fn send_errors_and_dead_peers() {
    let mut t = transport(1);
    match t.send(9, b"x") {
        Err(SendError::UnknownPeer(9)) => {}
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(t.stats().send_dropped, 1);

    // A peer that is down (nothing listening on its port): the datagram is simply lost, and
    // whatever ICMP error comes back does not break the next receive.
    let dead = {
        let s = UdpSocket::bind(loopback()).unwrap();
        s.local_addr().unwrap()
    };
    t.set_peer(2, dead).unwrap();
    for _ in 0..3 {
        t.send(2, b"anyone?").unwrap();
    }
    let raw = UdpSocket::bind(loopback()).unwrap();
    t.set_peer(3, raw.local_addr().unwrap()).unwrap();
    raw.send_to(&raft_frame(3, b"alive"), t.local_addr().unwrap())
        .unwrap();
    expect_raft(&mut t, 3, b"alive");
    let s = t.stats();
    assert_eq!(s.sent + s.send_dropped, 4);
    assert_eq!(s.received, 1);
}

#[test]
fn recv_times_out_and_polls() {
    let (mut a, mut b) = pair();
    let started = Instant::now();
    assert_eq!(a.recv(Some(Duration::from_millis(100))).unwrap(), None);
    let waited = started.elapsed();
    assert!(waited >= Duration::from_millis(100), "{waited:?}");
    assert!(waited < Duration::from_secs(5), "{waited:?}");

    // A zero timeout returns at once, with a frame if one is queued.
    let started = Instant::now();
    assert_eq!(a.recv(Some(Duration::ZERO)).unwrap(), None);
    assert!(started.elapsed() < Duration::from_secs(1));
    b.send(1, b"queued").unwrap();
    // Give loopback a moment to deliver, then poll.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if let Some(got) = a.recv(Some(Duration::ZERO)).unwrap() {
            assert_eq!(
                got,
                Incoming::Raft {
                    from: 2,
                    payload: b"queued"
                }
            );
            break;
        }
        assert!(Instant::now() < deadline, "queued frame never polled");
        std::thread::sleep(Duration::from_millis(1));
    }

    // A timeout too large to add to the clock means "no limit"; a frame ends the wait.
    b.send(1, b"eventually").unwrap();
    match a.recv(Some(Duration::MAX)).unwrap() {
        Some(Incoming::Raft { payload, .. }) => assert_eq!(payload, b"eventually"),
        other => panic!("unexpected {other:?}"),
    }
    // Sends still do not block after waits (the socket is back in non-blocking mode).
    a.send(2, b"after waiting").unwrap();
    expect_raft(&mut b, 1, b"after waiting");
}

#[test]
fn zero_timeout_poll_sees_past_queued_garbage() {
    let (mut t, raw) = node_and_raw_peer();
    let to = t.local_addr().unwrap();
    for i in 0..20u8 {
        raw.send_to(&[i; 10], to).unwrap();
    }
    raw.send_to(&raft_frame(2, b"behind the garbage"), to)
        .unwrap();
    // Loopback has delivered everything long before this (it does so within the send call
    // on Linux); the sleep only makes the test independent of that.
    std::thread::sleep(Duration::from_millis(100));
    // One poll examines the queued garbage and returns the frame behind it.
    expect_frame_now(&mut t, b"behind the garbage");
    assert_eq!(t.stats(), only(1, |s| s.dropped_malformed = 20));
}

#[track_caller]
fn expect_frame_now(t: &mut UdpTransport, payload: &[u8]) {
    match t.recv(Some(Duration::ZERO)).unwrap() {
        Some(Incoming::Raft { payload: p, .. }) => assert_eq!(p, payload),
        other => panic!("expected a queued Raft frame, got {other:?}"),
    }
}

#[test]
fn invalid_configurations_are_refused() {
    let refused = |config: UdpConfig| {
        let err = UdpTransport::bind(config).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
        err.to_string()
    };
    let base = || UdpConfig::new(1, loopback(), CLUSTER, key());
    let peer: SocketAddr = "127.0.0.1:9".parse().unwrap();

    assert!(refused(UdpConfig {
        node_id: 0,
        ..base()
    })
    .contains("node id 0"));
    assert!(refused(UdpConfig {
        peers: vec![(0, peer)],
        ..base()
    })
    .contains("peer id 0"));
    assert!(refused(UdpConfig {
        peers: vec![(2, peer), (2, peer)],
        ..base()
    })
    .contains("twice"));
    for bad in [FRAME_OVERHEAD_BYTES - 1, DATAGRAM_BYTES_MAX_DEFAULT + 1] {
        let msg = refused(UdpConfig {
            datagram_bytes_max: bad,
            ..base()
        });
        assert!(msg.contains("datagram_bytes_max"), "{msg}");
    }
    let mut client = UdpClientConfig::new(1, CLUSTER, key());
    client.bind = loopback();
    client.datagram_bytes_max = 70_000;
    assert!(UdpClientSocket::bind(client).is_err());

    // The node's own entry in the peer list is allowed and ignored.
    let t = UdpTransport::bind(UdpConfig {
        peers: vec![(1, peer), (2, peer)],
        ..base()
    })
    .unwrap();
    assert_eq!(t.peers(), &[(2, peer)]);
    assert_eq!(t.peer_addr(1), None);
    let mut t = t;
    assert!(t.set_peer(1, peer).is_err());
    assert!(t.set_peer(0, peer).is_err());

    // An empty frame is the smallest datagram_bytes_max.
    let mut t = UdpTransport::bind(UdpConfig {
        datagram_bytes_max: FRAME_OVERHEAD_BYTES,
        ..base()
    })
    .unwrap();
    assert_eq!(t.payload_bytes_max(), 0);
    t.set_peer(2, peer).unwrap();
    assert!(matches!(
        t.send(2, b"x"),
        Err(SendError::TooLarge { bytes: 1, max: 0 })
    ));
}
