//! The byte-stream transport: framing round trips, split reads, garbage, truncated and damaged
//! frames, oversized frames, full writers, and real Raft messages between real nodes.

use std::collections::VecDeque;

use embedded_io::{ErrorKind, ErrorType, Read, Write};
use tinyraft::stream::{
    crc32, frame_bytes_max, receive_buffer_bytes, write_frame, FrameStats, SendError,
};
use tinyraft::{
    Body, Config, Entry, EntryKind, FrameReceiver, MemStorage, Message, RawNode, Role,
    StreamTransport, Transport,
};

/// A bounded in-memory pipe, like a UART's FIFO: writes fail with `WriteZero` when full, reads
/// return at most `read_max` bytes at a time (to exercise split reads).
struct Pipe {
    bytes: VecDeque<u8>,
    capacity: usize,
    read_max: usize,
}

impl Pipe {
    fn new(capacity: usize, read_max: usize) -> Self {
        Self {
            bytes: VecDeque::new(),
            capacity,
            read_max,
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
struct PipeFull;

impl embedded_io::Error for PipeFull {
    fn kind(&self) -> ErrorKind {
        ErrorKind::WriteZero
    }
}

impl core::fmt::Display for PipeFull {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("pipe full")
    }
}

impl core::error::Error for PipeFull {}

impl ErrorType for Pipe {
    type Error = PipeFull;
}

impl Write for Pipe {
    fn write(&mut self, buf: &[u8]) -> Result<usize, PipeFull> {
        if buf.is_empty() {
            return Ok(0);
        }
        let room = self.capacity - self.bytes.len();
        if room == 0 {
            return Err(PipeFull);
        }
        let n = room.min(buf.len());
        self.bytes.extend(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> Result<(), PipeFull> {
        Ok(())
    }
}

impl Read for Pipe {
    fn read(&mut self, buf: &mut [u8]) -> Result<usize, PipeFull> {
        let n = buf.len().min(self.read_max).min(self.bytes.len());
        for b in &mut buf[..n] {
            *b = self.bytes.pop_front().unwrap();
        }
        Ok(n)
    }
}

fn frame(payload: &[u8]) -> Vec<u8> {
    let mut buf = vec![0u8; frame_bytes_max(payload.len())];
    let mut w: &mut [u8] = &mut buf;
    write_frame(&mut w, payload).unwrap();
    let left = w.len();
    buf.truncate(buf.len() - left);
    buf
}

/// Feeds `stream` to a fresh receiver of `BYTES` in pieces of `chunk` bytes.
fn receive<const BYTES: usize>(stream: &[u8], chunk: usize) -> (Vec<Vec<u8>>, FrameStats) {
    let mut rx = FrameReceiver::<BYTES>::new();
    let mut got = Vec::new();
    for piece in stream.chunks(chunk.max(1)) {
        rx.push(piece, &mut |p| got.push(p.to_vec()));
    }
    (got, rx.stats())
}

fn xorshift(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

/// Payloads that hit COBS's edge cases: empty, zeros at either end, runs of exactly 253, 254
/// and 255 non-zero bytes (one block, one full block, a full block plus one).
fn edge_payloads() -> Vec<Vec<u8>> {
    let mut v = vec![
        vec![],
        vec![0],
        vec![0, 0, 0],
        vec![1],
        vec![0, 1],
        vec![1, 0],
        b"hello\0world\0".to_vec(),
    ];
    for n in [253usize, 254, 255, 508, 509, 600] {
        v.push((0..n).map(|i| (i % 255) as u8 + 1).collect());
        let mut z: Vec<u8> = (0..n).map(|i| (i % 255) as u8 + 1).collect();
        z.push(0);
        v.push(z);
    }
    v.push((0..1000).map(|i| (i * 7 % 256) as u8).collect());
    v
}

#[test]
fn crc32_matches_the_standard_check_value() {
    assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
    assert_eq!(crc32(b""), 0);
}

#[test]
fn frames_round_trip_and_use_zero_only_as_delimiters() {
    for p in edge_payloads() {
        let f = frame(&p);
        assert!(f.len() <= frame_bytes_max(p.len()), "len {}", p.len());
        assert_eq!(f[0], 0);
        assert_eq!(*f.last().unwrap(), 0);
        assert!(
            f[1..f.len() - 1].iter().all(|&b| b != 0),
            "zero inside frame"
        );
        let (got, stats) = receive::<2048>(&f, f.len());
        assert_eq!(got, vec![p.clone()], "payload of {} bytes", p.len());
        assert_eq!(stats.corrupt + stats.oversized, 0);
    }
}

#[test]
fn every_split_of_the_stream_gives_the_same_frames() {
    let payloads = edge_payloads();
    let stream: Vec<u8> = payloads.iter().flat_map(|p| frame(p)).collect();
    for chunk in (1..=17).chain([63, 64, 254, 255, 1000, stream.len()]) {
        let (got, stats) = receive::<2048>(&stream, chunk);
        assert_eq!(got, payloads, "chunk {chunk}");
        assert_eq!(stats.frames, payloads.len() as u64);
        assert_eq!(stats.corrupt, 0);
    }
}

#[test]
fn garbage_around_frames_is_skipped_and_counted() {
    let a = b"first message".to_vec();
    let b = vec![0u8, 1, 2, 0, 0, 3];
    let mut stream = b"line noise before anything".to_vec();
    stream.extend(frame(&a));
    stream.extend([0x17, 0x00, 0xFF, 0xFF, 0x02, 0x00, 0x00, 0x00, 0x05]);
    stream.extend(frame(&b));
    stream.extend(b"trailing junk without delimiter");
    let (got, stats) = receive::<64>(&stream, 5);
    assert_eq!(got, vec![a, b]);
    // Noise before the first frame, three runs between the frames (the last one closed by the
    // second frame's opening delimiter); the trailing junk is not closed yet, so not counted.
    assert_eq!(stats.corrupt, 4);
    assert_eq!(stats.frames, 2);
}

#[test]
fn a_truncated_frame_costs_only_itself() {
    let lost: Vec<u8> = (0..300).map(|i| (i % 256) as u8).collect();
    let next = b"the next frame".to_vec();
    let lost_frame = frame(&lost);
    let next_frame = frame(&next);
    // Cut the first frame after every possible byte (but before its closing delimiter).
    for cut in 1..lost_frame.len() - 1 {
        let mut stream = lost_frame[..cut].to_vec();
        stream.extend(&next_frame);
        let (got, stats) = receive::<512>(&stream, 7);
        assert_eq!(got, vec![next.clone()], "cut at {cut}");
        // A cut right after the opening delimiter leaves nothing to count.
        assert_eq!(stats.corrupt, u64::from(cut > 1), "cut at {cut}");
    }
}

#[test]
fn a_damaged_frame_is_never_delivered() {
    let payload: Vec<u8> = (0..200).map(|i| (i * 13 % 256) as u8).collect();
    let f = frame(&payload);
    for at in 1..f.len() - 1 {
        for bit in 0..8 {
            let mut bad = f.clone();
            bad[at] ^= 1 << bit;
            let (got, _) = receive::<512>(&bad, 3);
            assert!(got.is_empty(), "flip of bit {bit} at {at} got through");
        }
    }
    // Dropped bytes are caught the same way.
    for at in 1..f.len() - 1 {
        let mut short = f.clone();
        short.remove(at);
        let (got, _) = receive::<512>(&short, 3);
        assert!(got.is_empty(), "dropping byte {at} got through");
    }
}

#[test]
fn oversized_frames_are_skipped_whole() {
    const BUF: usize = receive_buffer_bytes(100);
    let fits = vec![7u8; 100];
    let too_big = vec![7u8; 101];
    let mut stream = frame(&too_big);
    stream.extend(frame(&fits));
    stream.extend(frame(&vec![0u8; 5000]));
    stream.extend(frame(b"after"));
    let (got, stats) = receive::<BUF>(&stream, 10);
    assert_eq!(got, vec![fits, b"after".to_vec()]);
    assert_eq!(stats.oversized, 2);
    assert_eq!(stats.corrupt, 0);
}

#[test]
fn random_noise_never_panics_and_frames_after_it_arrive() {
    let mut seed = 0x9E37_79B9_7F4A_7C15u64;
    let mut rx = FrameReceiver::<256>::new();
    let mut delivered = 0usize;
    for _ in 0..200 {
        let noise: Vec<u8> = (0..(xorshift(&mut seed) % 700) as usize)
            .map(|_| {
                // Zeros often enough to make many short pseudo-frames.
                let r = xorshift(&mut seed);
                if r % 11 == 0 {
                    0
                } else {
                    r as u8
                }
            })
            .collect();
        rx.push(&noise, &mut |_| delivered += 1);
    }
    let noise_deliveries = delivered;
    let mut got = Vec::new();
    rx.push(&frame(b"still works"), &mut |p| got.push(p.to_vec()));
    assert_eq!(got, vec![b"still works".to_vec()]);
    // A random run passes CRC-32 with probability 2^-32; none should have.
    assert_eq!(noise_deliveries, 0);
}

#[test]
fn read_from_handles_a_reader_that_trickles() {
    let mut pipe = Pipe::new(1 << 20, 3);
    let payloads = edge_payloads();
    for p in &payloads {
        write_frame(&mut pipe, p).unwrap();
    }
    let mut rx = FrameReceiver::<2048>::new();
    let mut got = Vec::new();
    while rx
        .read_from(&mut pipe, &mut |p| got.push(p.to_vec()))
        .unwrap()
        > 0
    {}
    assert_eq!(got, payloads);
}

#[test]
fn a_full_writer_fails_the_send_and_the_receiver_recovers() {
    let big = vec![0x55u8; 100];
    let mut t = StreamTransport::new(Pipe::new(60, 64));
    assert_eq!(t.send(2, &big), Err(SendError::Io(PipeFull)));
    assert_eq!(t.frames_sent(), 0);
    // Drain the half-written frame, then a small one goes through and is delivered alone.
    let mut rx = FrameReceiver::<256>::new();
    let mut got = Vec::new();
    while rx
        .read_from(t.writer_mut(), &mut |p| got.push(p.to_vec()))
        .unwrap()
        > 0
    {}
    t.send(2, b"small").unwrap();
    while rx
        .read_from(t.writer_mut(), &mut |p| got.push(p.to_vec()))
        .unwrap()
        > 0
    {}
    assert_eq!(got, vec![b"small".to_vec()]);
    assert_eq!(rx.stats().corrupt, 1);
    assert_eq!(t.frames_sent(), 1);
}

/// A writer that breaks the `Write` contract by accepting nothing without an error.
struct Stuck;

impl ErrorType for Stuck {
    type Error = PipeFull;
}

impl Write for Stuck {
    fn write(&mut self, _: &[u8]) -> Result<usize, PipeFull> {
        Ok(0)
    }
    fn flush(&mut self) -> Result<(), PipeFull> {
        Ok(())
    }
}

#[test]
fn a_stalled_writer_is_an_error_not_a_panic_or_a_hang() {
    let mut t = StreamTransport::new(Stuck);
    assert_eq!(t.send(1, b"x"), Err(SendError::Stalled));
}

#[test]
fn raft_messages_cross_the_stream_intact() {
    let entries: heapless::Vec<Entry<'_>, 64> = [b"a".as_slice(), b"", b"\0\0zero\0"]
        .iter()
        .enumerate()
        .map(|(i, d)| Entry {
            term: 3,
            index: 10 + i as u64,
            kind: EntryKind::Normal,
            data: d,
        })
        .collect();
    let msg = Message {
        from: 1,
        to: 2,
        term: 3,
        body: Body::Append {
            prev_index: 9,
            prev_term: 2,
            commit: 8,
            entries,
        },
    };
    let mut enc = vec![0u8; 1024];
    let n = msg.encode(&mut enc).unwrap();
    let mut t = StreamTransport::new(Pipe::new(4096, 5));
    t.send(2, &enc[..n]).unwrap();
    let mut rx = FrameReceiver::<{ receive_buffer_bytes(1024) }>::new();
    let mut decoded = 0;
    while rx
        .read_from(t.writer_mut(), &mut |p| {
            assert_eq!(Message::decode(p).unwrap(), msg);
            decoded += 1;
        })
        .unwrap()
        > 0
    {}
    assert_eq!(decoded, 1);
}

type Small = RawNode<MemStorage<8192, 256>, 8192, 8192>;

/// Two nodes whose only link is a pair of lossy, noisy byte pipes elect a leader and commit.
#[test]
fn two_nodes_over_noisy_pipes_elect_and_commit() {
    let mut nodes: Vec<Small> = (1..=2)
        .map(|id| {
            let mut c = Config::new(id, &[1, 2]).unwrap();
            c.message_bytes_max = 8192;
            Small::new(c, MemStorage::new()).unwrap()
        })
        .collect();
    // links[i] carries what node i+1 sends.
    let mut links: Vec<StreamTransport<Pipe>> = (0..2)
        .map(|_| StreamTransport::new(Pipe::new(16 * 1024, 7)))
        .collect();
    let mut receivers: Vec<FrameReceiver<{ receive_buffer_bytes(8192) }>> =
        (0..2).map(|_| FrameReceiver::new()).collect();
    let mut seed = 42u64;
    let mut committed = 0;
    for step in 0..2000 {
        for (i, n) in nodes.iter_mut().enumerate() {
            n.tick();
            if n.has_ready() {
                let rd = n.ready();
                let p = n.persist(rd).unwrap();
                for (to, bytes) in n.messages(&p) {
                    let _ = links[i].send(to, bytes);
                }
                n.committed_entries(&p, &mut |e| {
                    if e.data == b"payload" {
                        committed += 1;
                    }
                })
                .unwrap();
                n.advance(p);
            }
        }
        // Line noise now and then, zeros included.
        if xorshift(&mut seed) % 5 == 0 {
            let noise = [xorshift(&mut seed) as u8, 0, xorshift(&mut seed) as u8];
            let _ = links[(step % 2) as usize].writer_mut().write(&noise);
        }
        for (i, rx) in receivers.iter_mut().enumerate() {
            let other = &mut nodes[1 - i];
            while rx
                .read_from(links[i].writer_mut(), &mut |frame| {
                    let _ = other.step_bytes(frame);
                })
                .unwrap()
                > 0
            {}
        }
        if let Some(l) = nodes.iter_mut().find(|n| n.role() == Role::Leader) {
            if step % 50 == 0 {
                let _ = l.propose(b"payload");
            }
        }
    }
    assert!(nodes.iter().any(|n| n.role() == Role::Leader));
    assert!(committed >= 2 * 30, "only {committed} applications");
    assert!(receivers.iter().all(|r| r.stats().frames > 100));
}
