//! The links between the three nodes, and what a node's [`Transport`] does with a message.
//!
//! ```text
//!            UART (bytes, COBS frames)
//!   node 1 ◄───────────────────────────► node 2
//!       ▲                                  ▲
//!       │ direct (whole messages)          │ direct
//!       └──────────────► node 3 ◄──────────┘
//! ```
//!
//! Nodes 1 and 2 talk over a simulated UART: each direction is a 64-byte FIFO of raw bytes,
//! written through [`tinyraft::StreamTransport`] (an `embedded_io::Write`) and read by the
//! other node's [`tinyraft::FrameReceiver`] (through `embedded_io::Read`), exactly as they
//! would drive a real UART. The other links hand the encoded message straight to the peer.
//! Either way only postcard bytes cross: nodes share no state.
//!
//! A partition is a set of isolated nodes: [`Links::send`] drops whatever an isolated node
//! sends or is sent, the way a cut cable would.

use core::cell::{Cell, RefCell};

use critical_section::Mutex;
use embedded_io::{ErrorKind, ErrorType, Read, ReadReady, Write};
use heapless::Deque;
use tinyraft::stream::SendError;
use tinyraft::{NodeId, StreamTransport, Transport};

use crate::cluster;

/// Bytes a UART FIFO holds: a small hardware FIFO or DMA ring, far smaller than a message.
pub const UART_FIFO_BYTES: usize = 64;

/// The nodes at either end of the UART.
pub const UART_ENDS: (NodeId, NodeId) = (1, 2);

/// One direction of the UART per entry: `[0]` carries node 1 → node 2, `[1]` node 2 → node 1.
static UART_FIFOS: [Mutex<RefCell<Deque<u8, UART_FIFO_BYTES>>>; 2] =
    [const { Mutex::new(RefCell::new(Deque::new())) }; 2];

/// Bit `id - 1` set: node `id` is cut off from everyone.
static ISOLATED: Mutex<Cell<u8>> = Mutex::new(Cell::new(0));

/// The UART line a node transmits on, if it has one.
pub fn uart_line_from(id: NodeId) -> Option<usize> {
    match id {
        _ if id == UART_ENDS.0 => Some(0),
        _ if id == UART_ENDS.1 => Some(1),
        _ => None,
    }
}

/// The node that receives on `line`.
pub fn uart_receiver_of(line: usize) -> NodeId {
    if line == 0 {
        UART_ENDS.1
    } else {
        UART_ENDS.0
    }
}

/// Cuts node `id` off from the others.
pub fn isolate(id: NodeId) {
    critical_section::with(|cs| {
        let cell = ISOLATED.borrow(cs);
        cell.set(cell.get() | 1 << (id - 1));
    });
}

/// Heals every partition.
pub fn heal() {
    critical_section::with(|cs| ISOLATED.borrow(cs).set(0));
}

/// True if a message from `from` to `to` would be dropped.
pub fn is_cut(from: NodeId, to: NodeId) -> bool {
    let mask = critical_section::with(|cs| ISOLATED.borrow(cs).get());
    mask & (1 << (from - 1) | 1 << (to - 1)) != 0
}

/// True if node `id` is isolated.
pub fn is_isolated(id: NodeId) -> bool {
    critical_section::with(|cs| ISOLATED.borrow(cs).get()) & 1 << (id - 1) != 0
}

/// Writes raw bytes onto a UART line, as electrical noise would; returns how many fit.
pub fn inject_noise(line: usize, bytes: &[u8]) -> usize {
    critical_section::with(|cs| {
        let mut fifo = UART_FIFOS[line].borrow_ref_mut(cs);
        bytes
            .iter()
            .take_while(|&&b| fifo.push_back(b).is_ok())
            .count()
    })
}

/// The UART never fails; this exists because `embedded_io` wants an error type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UartError;

impl embedded_io::Error for UartError {
    fn kind(&self) -> ErrorKind {
        ErrorKind::WriteZero
    }
}

impl core::fmt::Display for UartError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("UART FIFO stuck")
    }
}

impl core::error::Error for UartError {}

/// The transmit side of a UART line.
pub struct UartTx {
    line: usize,
}

impl ErrorType for UartTx {
    type Error = UartError;
}

impl Write for UartTx {
    /// Like a blocking UART write: when the FIFO is full, wait for the line to drain it. Here
    /// "the line" is [`cluster::uart_pump`], which moves the FIFO's bytes into the receiving
    /// node's frame receiver (what its RX interrupt would do on a board).
    fn write(&mut self, buf: &[u8]) -> Result<usize, UartError> {
        if buf.is_empty() {
            return Ok(0);
        }
        let full = critical_section::with(|cs| UART_FIFOS[self.line].borrow_ref(cs).is_full());
        if full {
            cluster::uart_pump(self.line);
        }
        let n = critical_section::with(|cs| {
            let mut fifo = UART_FIFOS[self.line].borrow_ref_mut(cs);
            buf.iter()
                .take_while(|&&b| fifo.push_back(b).is_ok())
                .count()
        });
        if n == 0 {
            Err(UartError)
        } else {
            Ok(n)
        }
    }

    fn flush(&mut self) -> Result<(), UartError> {
        Ok(())
    }
}

/// The receive side of a UART line.
pub struct UartRx {
    pub line: usize,
}

impl ErrorType for UartRx {
    type Error = UartError;
}

impl Read for UartRx {
    /// Never called while the FIFO is empty (see [`ReadReady`]); then it returns 0.
    fn read(&mut self, buf: &mut [u8]) -> Result<usize, UartError> {
        critical_section::with(|cs| {
            let mut fifo = UART_FIFOS[self.line].borrow_ref_mut(cs);
            let mut n = 0;
            while n < buf.len() {
                match fifo.pop_front() {
                    Some(b) => buf[n] = b,
                    None => break,
                }
                n += 1;
            }
            Ok(n)
        })
    }
}

impl ReadReady for UartRx {
    fn read_ready(&mut self) -> Result<bool, UartError> {
        Ok(critical_section::with(|cs| {
            !UART_FIFOS[self.line].borrow_ref(cs).is_empty()
        }))
    }
}

/// Why a message was not sent.
#[derive(Debug)]
pub enum LinkError {
    /// A partition dropped it.
    Cut,
    /// The UART refused it (a stalled line; never happens here, the line always drains).
    Uart,
}

/// A node's transport: the UART for the peer at its other end, direct delivery for the rest.
pub struct Links {
    id: NodeId,
    uart: Option<(NodeId, StreamTransport<UartTx>)>,
}

impl Links {
    /// The links of node `id`.
    pub fn new(id: NodeId) -> Self {
        let uart = uart_line_from(id).map(|line| {
            (
                uart_receiver_of(line),
                StreamTransport::new(UartTx { line }),
            )
        });
        Self { id, uart }
    }

    /// Frames this node wrote to its UART.
    pub fn uart_frames_sent(&self) -> u64 {
        self.uart.as_ref().map_or(0, |(_, t)| t.frames_sent())
    }
}

impl Transport for Links {
    type Error = LinkError;

    fn send(&mut self, to: NodeId, message: &[u8]) -> Result<(), LinkError> {
        if is_cut(self.id, to) {
            return Err(LinkError::Cut);
        }
        match &mut self.uart {
            Some((peer, uart)) if *peer == to => uart
                .send(to, message)
                .map_err(|_: SendError<UartError>| LinkError::Uart),
            _ => {
                cluster::deliver(to, message);
                Ok(())
            }
        }
    }
}
