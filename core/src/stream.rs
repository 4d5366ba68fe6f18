//! Messages over a byte stream (a UART, an RS-485 bus, a pipe): framing, a [`Transport`] that
//! writes frames to any [`embedded_io::Write`], and a [`FrameReceiver`] that turns bytes read
//! from any [`embedded_io::Read`] back into messages.
//!
//! # Wire format
//!
//! ```text
//!   0x00 | COBS( payload | CRC-32(payload), little endian ) | 0x00
//! ```
//!
//! COBS (consistent overhead byte stuffing) removes every zero byte from the body, so `0x00`
//! appears only as a delimiter: a receiver that joins mid-stream, or loses bytes, or reads
//! line noise, is back in step at the next zero. The CRC-32 (IEEE, as in Ethernet and zlib)
//! rejects frames that were damaged or cut short. A frame starts with a delimiter as well as
//! ending with one, so a frame truncated by a full transmit buffer is closed off by the next
//! frame's first byte and costs only itself, not the frame after it.
//!
//! The overhead is 2 delimiters, 4 CRC bytes and one byte per 254 bytes of body
//! ([`frame_bytes_max`]).
//!
//! # Bounds
//!
//! A [`FrameReceiver`] holds at most `BYTES` decoded bytes (payload and CRC); a longer frame is
//! skipped up to its closing delimiter and counted in [`FrameStats::oversized`]. Its work is
//! proportional to the bytes it is given, it never allocates, and no input makes it panic.
//! Encoding needs no buffer beyond 64 bytes on the stack.
//!
//! Frames carry no addresses: a Raft message names its sender and receiver, and a node ignores
//! messages addressed to another node, so one stream may link two nodes or be a bus.

use embedded_io::{Read, Write};

use crate::transport::Transport;
use crate::types::NodeId;

/// Bytes of the CRC at the end of every frame's body.
pub const FRAME_CRC_BYTES: usize = 4;

/// Largest run of non-zero bytes one COBS block carries.
const COBS_RUN_MAX: usize = 254;

/// Bytes written in one `write` call at most; also the encoder's stack buffer.
const STAGE_BYTES: usize = 64;

/// Most bytes a frame carrying `payload_bytes` takes on the wire: the payload and its CRC, one
/// COBS code byte per 254 bytes (at least one), and two delimiters.
pub const fn frame_bytes_max(payload_bytes: usize) -> usize {
    let body = payload_bytes + FRAME_CRC_BYTES;
    body + body / COBS_RUN_MAX + 1 + 2
}

/// The `BYTES` a [`FrameReceiver`] needs to accept payloads of up to `payload_bytes`.
pub const fn receive_buffer_bytes(payload_bytes: usize) -> usize {
    payload_bytes + FRAME_CRC_BYTES
}

/// CRC-32 (IEEE 802.3, reflected, polynomial 0xEDB88320) lookup table, one nibble at a time:
/// 64 bytes of flash instead of 1 KiB for a byte table.
const CRC_TABLE: [u32; 16] = {
    let mut table = [0u32; 16];
    let mut i = 0;
    while i < 16 {
        let mut c = i as u32;
        let mut k = 0;
        while k < 4 {
            c = if c & 1 != 0 {
                0xEDB8_8320 ^ (c >> 1)
            } else {
                c >> 1
            };
            k += 1;
        }
        table[i] = c;
        i += 1;
    }
    table
};

/// CRC-32 (IEEE) of `data`; `crc32(b"123456789") == 0xCBF4_3926`.
pub fn crc32(data: &[u8]) -> u32 {
    let mut c = !0u32;
    for &b in data {
        c = CRC_TABLE[((c ^ u32::from(b)) & 0xF) as usize] ^ (c >> 4);
        c = CRC_TABLE[((c ^ u32::from(b >> 4)) & 0xF) as usize] ^ (c >> 4);
    }
    !c
}

/// Why a frame could not be written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SendError<E> {
    /// The writer failed (for a bounded buffer: it is full). Part of the frame may have been
    /// written; the receiver drops that part as a corrupt frame.
    Io(E),
    /// The writer accepted no bytes without reporting an error (it broke the `Write`
    /// contract); the frame was abandoned instead of retrying forever.
    Stalled,
}

/// Collects encoded bytes and hands them to the writer in chunks, so an unbuffered writer (a
/// UART register) is not called once per byte.
struct Stage<'w, W: Write> {
    writer: &'w mut W,
    buf: [u8; STAGE_BYTES],
    len: usize,
}

impl<W: Write> Stage<'_, W> {
    fn put(&mut self, b: u8) -> Result<(), SendError<W::Error>> {
        if self.len == STAGE_BYTES {
            self.flush()?;
        }
        self.buf[self.len] = b;
        self.len += 1;
        Ok(())
    }

    fn flush(&mut self) -> Result<(), SendError<W::Error>> {
        let mut done = 0;
        while done < self.len {
            // Not `write_all`: it panics on a writer that returns Ok(0).
            match self.writer.write(&self.buf[done..self.len]) {
                Ok(0) => return Err(SendError::Stalled),
                Ok(n) => done += n,
                Err(e) => return Err(SendError::Io(e)),
            }
        }
        self.len = 0;
        Ok(())
    }
}

/// Writes `payload` as one frame (see the module docs). Does not call `flush` on the writer,
/// which for a UART could block until the bytes are on the line.
pub fn write_frame<W: Write>(writer: &mut W, payload: &[u8]) -> Result<(), SendError<W::Error>> {
    let crc = crc32(payload).to_le_bytes();
    let total = payload.len() + FRAME_CRC_BYTES;
    // The body is the payload followed by the CRC; index it as one sequence.
    let byte = |i: usize| {
        if i < payload.len() {
            payload[i]
        } else {
            crc[i - payload.len()]
        }
    };
    let mut out = Stage {
        writer,
        buf: [0; STAGE_BYTES],
        len: 0,
    };
    out.put(0)?;
    let mut i = 0;
    loop {
        // One COBS block: a code byte (run length + 1), then the run of non-zero bytes. The
        // zero that ends a shorter-than-maximal run is implied by the code, not written.
        let mut j = i;
        while j < total && j - i < COBS_RUN_MAX && byte(j) != 0 {
            j += 1;
        }
        let run = j - i;
        out.put(run as u8 + 1)?;
        for k in i..j {
            out.put(byte(k))?;
        }
        if j == total {
            break;
        }
        // A maximal run implies no zero; otherwise byte(j) is a zero the code stands for. A
        // zero as the last byte leaves i == total, and the next pass writes the empty block
        // that encodes it.
        i = if run == COBS_RUN_MAX { j } else { j + 1 };
    }
    out.put(0)?;
    out.flush()
}

/// A [`Transport`] over a byte stream: each message becomes one frame written to `W`.
///
/// `to` is not written: the encoded message names its receiver, and nodes ignore messages meant
/// for others, so the stream may lead to one peer or to a bus. A node with links to several
/// peers keeps one `StreamTransport` per link and picks it by `to`.
///
/// The transport never waits for the line (no `flush`). If `W` is a bounded buffer that fills
/// up, `send` fails with [`SendError::Io`]: the message counts as lost, and Raft resends.
#[derive(Debug)]
pub struct StreamTransport<W> {
    writer: W,
    frames_sent: u64,
}

impl<W: Write> StreamTransport<W> {
    /// A transport writing to `writer`.
    pub const fn new(writer: W) -> Self {
        Self {
            writer,
            frames_sent: 0,
        }
    }

    /// The writer.
    pub fn writer(&self) -> &W {
        &self.writer
    }

    /// The writer, mutably.
    pub fn writer_mut(&mut self) -> &mut W {
        &mut self.writer
    }

    /// Frames written completely so far.
    pub fn frames_sent(&self) -> u64 {
        self.frames_sent
    }

    /// Gives the writer back.
    pub fn into_inner(self) -> W {
        self.writer
    }
}

impl<W: Write> Transport for StreamTransport<W> {
    type Error = SendError<W::Error>;

    fn send(&mut self, _to: NodeId, message: &[u8]) -> Result<(), Self::Error> {
        write_frame(&mut self.writer, message)?;
        self.frames_sent += 1;
        Ok(())
    }
}

/// Counters of what a [`FrameReceiver`] saw.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FrameStats {
    /// Frames delivered (CRC good).
    pub frames: u64,
    /// Non-empty runs between delimiters that were not a valid frame: bad CRC, broken COBS,
    /// cut short, or line noise.
    pub corrupt: u64,
    /// Frames longer than the receive buffer, skipped whole.
    pub oversized: u64,
}

/// Decodes frames from a byte stream into a buffer of `BYTES` bytes, which must hold a frame's
/// payload plus its [`FRAME_CRC_BYTES`] (see [`receive_buffer_bytes`]).
///
/// Feed it bytes as they arrive, in pieces of any size, with [`FrameReceiver::push`] or
/// [`FrameReceiver::read_from`]; it calls back with each complete, intact payload, which can
/// go straight to [`crate::RawNode::step_bytes`]. `const fn new` lets it live in a `static`.
#[derive(Clone, Debug)]
pub struct FrameReceiver<const BYTES: usize> {
    buf: [u8; BYTES],
    /// Decoded bytes of the current frame. Invariant: `len <= BYTES`.
    len: usize,
    /// Bytes left in the current COBS block; 0 means the next byte is a code byte.
    block_left: u8,
    /// The current block stands for a zero after its run (its code was below 0xFF).
    block_zero: bool,
    /// Some byte other than a delimiter arrived since the last delimiter.
    in_frame: bool,
    /// The current frame overflowed the buffer; skip to the next delimiter.
    overflow: bool,
    stats: FrameStats,
}

impl<const BYTES: usize> Default for FrameReceiver<BYTES> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const BYTES: usize> FrameReceiver<BYTES> {
    const HOLDS_CRC: () = assert!(BYTES > FRAME_CRC_BYTES, "the buffer must hold a CRC");

    /// An empty receiver, waiting for a delimiter or a frame's first byte.
    pub const fn new() -> Self {
        let () = Self::HOLDS_CRC;
        Self {
            buf: [0; BYTES],
            len: 0,
            block_left: 0,
            block_zero: false,
            in_frame: false,
            overflow: false,
            stats: FrameStats {
                frames: 0,
                corrupt: 0,
                oversized: 0,
            },
        }
    }

    /// What the receiver has seen so far.
    pub fn stats(&self) -> FrameStats {
        self.stats
    }

    /// Feeds `bytes` (any split of the stream) and calls `on_frame` with the payload of every
    /// frame they complete, in order.
    pub fn push(&mut self, bytes: &[u8], on_frame: &mut dyn FnMut(&[u8])) {
        for &b in bytes {
            self.push_byte(b, on_frame);
        }
    }

    /// Reads once from `reader` (at most 64 bytes) and feeds what came. Returns the number of
    /// bytes read; 0 means end of stream. `read` blocks while nothing is available, so a caller
    /// that must not wait checks [`embedded_io::ReadReady::read_ready`] first.
    pub fn read_from<R: Read>(
        &mut self,
        reader: &mut R,
        on_frame: &mut dyn FnMut(&[u8]),
    ) -> Result<usize, R::Error> {
        let mut chunk = [0u8; STAGE_BYTES];
        let n = reader.read(&mut chunk)?;
        // A reader that claims more than it was given is clamped, not trusted.
        let n = n.min(chunk.len());
        self.push(&chunk[..n], on_frame);
        Ok(n)
    }

    fn push_byte(&mut self, b: u8, on_frame: &mut dyn FnMut(&[u8])) {
        if b == 0 {
            self.end_frame(on_frame);
            return;
        }
        self.in_frame = true;
        if self.overflow {
            return;
        }
        if self.block_left == 0 {
            // A code byte: first the zero the previous block stood for, then a new block.
            if self.block_zero && !self.store(0) {
                return;
            }
            self.block_left = b - 1;
            self.block_zero = b != 0xFF;
        } else {
            self.block_left -= 1;
            self.store(b);
        }
    }

    /// Appends one decoded byte; false (and the frame marked oversized) if it does not fit.
    fn store(&mut self, b: u8) -> bool {
        if self.len == BYTES {
            self.overflow = true;
            return false;
        }
        self.buf[self.len] = b;
        self.len += 1;
        true
    }

    fn end_frame(&mut self, on_frame: &mut dyn FnMut(&[u8])) {
        if self.in_frame {
            if self.overflow {
                self.stats.oversized += 1;
            } else if self.block_left != 0 || self.len < FRAME_CRC_BYTES {
                // A block promised more bytes than arrived, or no room for a CRC: cut short.
                self.stats.corrupt += 1;
            } else {
                let (payload, crc) = self.buf[..self.len].split_at(self.len - FRAME_CRC_BYTES);
                let mut expected = [0u8; FRAME_CRC_BYTES];
                expected.copy_from_slice(crc);
                if crc32(payload) == u32::from_le_bytes(expected) {
                    self.stats.frames += 1;
                    on_frame(payload);
                } else {
                    self.stats.corrupt += 1;
                }
            }
        }
        self.len = 0;
        self.block_left = 0;
        self.block_zero = false;
        self.in_frame = false;
        self.overflow = false;
    }
}
