//! Three nodes in statics, and the loop that drives them: tick, ready rounds, the UART line.
//!
//! Every node is a [`tinyraft::Node`] over [`MemStorage`], the [`Links`] transport and a
//! [`KvStore`] over an [`ArenaMap`]; its size is fixed by the constants below and it lives in
//! `.bss`. No heap exists in this image.
//!
//! The statics are `critical_section::Mutex<RefCell<..>>` only so that they are `Sync` without
//! `unsafe`. This image has no interrupts, so holding a critical section for a whole ready round
//! blocks nothing; a board with a UART interrupt would keep its handler short and let it fill
//! the FIFO only.

use core::cell::RefCell;

use critical_section::Mutex;
use tinyraft::kv::{ArenaMap, KvStore, Response};
use tinyraft::limits::{ENTRY_DATA_BYTES_MAX, MESSAGE_BYTES_MIN};
use tinyraft::stream::receive_buffer_bytes;
use tinyraft::{Config, FrameReceiver, Index, MemStorage, Node, NodeId, ReadState, Role};

use crate::net::{self, Links, UartRx};

/// The voters.
pub const IDS: [NodeId; 3] = [1, 2, 3];

/// Largest encoded message. The core's floor: one entry of the largest size
/// ([`ENTRY_DATA_BYTES_MAX`]) plus headers must fit in one message.
pub const MESSAGE_BYTES: usize = MESSAGE_BYTES_MIN;
/// Outbox: one largest message, the floor. A round whose messages do not all fit sends fewer
/// entries per append (the core packs appends into the room left), and Raft sends the rest later.
pub const OUTBOX_BYTES: usize = MESSAGE_BYTES;
/// Unstable log: one largest entry (the core's floor) plus its 13-byte record header, rounded
/// to a word.
pub const UNSTABLE_BYTES: usize = ENTRY_DATA_BYTES_MAX + 16;
/// The durable log: the scenario's 21 entries (about 540 bytes), uncompacted, with room to
/// spare. Compaction comes with a later issue; until then a longer run fills it and stops.
pub const LOG_BYTES: usize = 1024;
/// Most entries in the durable log.
pub const LOG_ENTRIES: usize = 32;
/// Keys in the KV store.
pub const KV_KEYS: usize = 16;
/// Bytes of keys and values in the KV store.
pub const KV_BYTES: usize = 256;
/// Client sessions the KV store remembers.
pub const KV_SESSIONS: usize = 4;
/// A UART receiver holds one largest message and its CRC.
pub const UART_RX_BYTES: usize = receive_buffer_bytes(MESSAGE_BYTES);

/// A node's durable log.
pub type Log = MemStorage<LOG_BYTES, LOG_ENTRIES>;
/// A node's state machine.
pub type Kv = KvStore<ArenaMap<KV_KEYS, KV_BYTES>, KV_SESSIONS>;
/// One node.
pub type FwNode = Node<Log, Links, Kv, OUTBOX_BYTES, UNSTABLE_BYTES>;

/// A node's static: empty until [`boot`] builds the node in it.
///
/// Not an `Option`: `None` would be stored in some field's spare values (a niche), which makes
/// the static's initial bytes non-zero and puts all of it in `.data`, copied from flash at
/// reset. With `repr(u8)` the empty slot is a zero tag, and the static goes to `.bss`.
// A node is big and fixed-size on purpose; boxing it would need the heap this image lacks.
#[allow(clippy::large_enum_variant)]
#[repr(u8)]
enum Slot {
    Empty = 0,
    Booted(FwNode),
}

static NODES: [Mutex<RefCell<Slot>>; 3] = [const { Mutex::new(RefCell::new(Slot::Empty)) }; 3];

/// The receiving end of each UART line (see [`net`]): `[0]` is node 2's, `[1]` node 1's.
static UART_RX: [Mutex<RefCell<FrameReceiver<UART_RX_BYTES>>>; 2] =
    [const { Mutex::new(RefCell::new(FrameReceiver::new())) }; 2];

/// Why driving the cluster stopped.
#[derive(Debug)]
pub enum DriveError {
    /// A node's storage refused to persist (`Full`: its log is full, and compaction is a
    /// later issue).
    Storage(NodeId, tinyraft::StorageErrorKind),
    /// Taking a snapshot or restoring from one failed.
    Snapshot(NodeId, tinyraft::SnapshotError),
    /// Ready rounds kept producing work without the cluster going quiet.
    NoQuiescence,
}

/// Builds the three nodes in their statics.
pub fn boot() -> Result<(), &'static str> {
    for (slot, &id) in NODES.iter().zip(IDS.iter()) {
        boot_one(slot, id)?;
    }
    Ok(())
}

/// Builds node `id` in `slot`.
///
/// The node is built on the stack and then moved into its static (`Node::new` returns it by
/// value). Not inlined, so that this temporary is gone once the node is in place, instead of
/// staying in the caller's frame for the rest of the run.
#[inline(never)]
fn boot_one(slot: &Mutex<RefCell<Slot>>, id: NodeId) -> Result<(), &'static str> {
    let mut config = Config::new(id, &IDS).map_err(|_| "invalid membership")?;
    config.message_bytes_max = MESSAGE_BYTES;
    let node =
        FwNode::new(config, Log::new(), Links::new(id), Kv::new(ArenaMap::new())).map_err(|e| {
            match e {
                tinyraft::Error::InvalidConfig(why) => why,
                _ => "node could not start from its storage",
            }
        })?;
    critical_section::with(|cs| *slot.borrow_ref_mut(cs) = Slot::Booted(node));
    Ok(())
}

/// Runs `f` on node `id`. Panics if the node is already borrowed: that would be a bug in this
/// driver (a message delivered to the node that is sending it).
pub fn with_node<R>(id: NodeId, f: impl FnOnce(&mut FwNode) -> R) -> R {
    critical_section::with(
        |cs| match &mut *NODES[(id - 1) as usize].borrow_ref_mut(cs) {
            Slot::Booted(node) => f(node),
            Slot::Empty => panic!("node {id} used before boot"),
        },
    )
}

/// A direct link: node `to` steps `bytes` now. Undecodable or stale messages are the node's
/// business (it counts them); the sender treats the message as sent either way.
pub fn deliver(to: NodeId, bytes: &[u8]) {
    with_node(to, |n| {
        let _ = n.receive(bytes);
    });
}

/// The wire: moves every byte in UART `line`'s FIFO into the receiving node's frame receiver,
/// which steps each complete frame into that node.
pub fn uart_pump(line: usize) {
    let to = net::uart_receiver_of(line);
    let mut rx = UartRx { line };
    critical_section::with(|cs| {
        let mut receiver = UART_RX[line].borrow_ref_mut(cs);
        while let Ok(true) = embedded_io::ReadReady::read_ready(&mut rx) {
            let _ = receiver.read_from(&mut rx, &mut |frame| deliver(to, frame));
        }
    });
}

/// Frame counters of UART `line`'s receiver.
pub fn uart_stats(line: usize) -> tinyraft::stream::FrameStats {
    critical_section::with(|cs| UART_RX[line].borrow_ref(cs).stats())
}

/// Longest value a [`Reply`] keeps.
pub const SHORT_VALUE_BYTES: usize = 16;

/// A KV response in the few bytes this scenario needs. A full [`Response`] is over 2 KiB (it
/// can carry a scan page); one kept on the stack while the cluster runs would cost that much
/// in every frame that holds one.
#[derive(Debug, PartialEq, Eq)]
pub enum Reply {
    /// [`Response::Ok`].
    Ok,
    /// [`Response::Deleted`].
    Deleted {
        /// Whether the key existed.
        existed: bool,
    },
    /// [`Response::CasMismatch`].
    CasMismatch,
    /// [`Response::Value`], if the value has at most [`SHORT_VALUE_BYTES`].
    Value(Option<heapless::Vec<u8, SHORT_VALUE_BYTES>>),
    /// A value too long to keep, a scan page, or an error.
    Other,
}

impl From<Response> for Reply {
    fn from(r: Response) -> Self {
        match r {
            Response::Ok => Reply::Ok,
            Response::Deleted { existed } => Reply::Deleted { existed },
            Response::CasMismatch => Reply::CasMismatch,
            Response::Value(None) => Reply::Value(None),
            Response::Value(Some(v)) => match heapless::Vec::from_slice(&v) {
                Ok(short) => Reply::Value(Some(short)),
                Err(_) => Reply::Other,
            },
            Response::Page(_) | Response::Err(_) => Reply::Other,
        }
    }
}

/// What the scenario is waiting for in ready rounds: the reply to the proposal at
/// (`node`, `index`), and the ReadIndex answer to read `read_request` on `node`.
#[derive(Debug, Default)]
pub struct Watch {
    /// The node whose answers are wanted.
    pub node: NodeId,
    /// Index of the proposal whose reply is wanted.
    pub index: Index,
    /// The reply, once applied.
    pub reply: Option<Reply>,
    /// The read request id whose ReadIndex is wanted (0: none).
    pub read_request: u64,
    /// The index to apply before serving that read.
    pub read_index: Option<Index>,
}

/// One ready round on every node that has one, then the UART lines are drained. True if any
/// node had work.
fn round(watch: &mut Watch) -> Result<bool, DriveError> {
    let mut busy = false;
    for &id in IDS.iter() {
        with_node(id, |n| {
            if !n.raw().has_ready() {
                return Ok(());
            }
            busy = true;
            n.process_ready_with_reads(
                &mut |index, response| {
                    if id == watch.node && index == watch.index {
                        watch.reply = Some(response.into());
                    }
                },
                &mut |read: ReadState| {
                    if id == watch.node && read.request == watch.read_request {
                        watch.read_index = Some(read.index);
                    }
                },
            )
            .map_err(|e| match e {
                tinyraft::NodeError::Storage(e) => DriveError::Storage(id, e.0),
                tinyraft::NodeError::Snapshot(e) => DriveError::Snapshot(id, e),
            })
        })?;
    }
    for line in 0..2 {
        uart_pump(line);
    }
    Ok(busy)
}

/// Runs ready rounds until no node has work.
pub fn settle(watch: &mut Watch) -> Result<(), DriveError> {
    for _ in 0..64 {
        if !round(watch)? {
            return Ok(());
        }
    }
    Err(DriveError::NoQuiescence)
}

/// One unit of logical time: every node ticks once (isolated ones too: their clocks run), then
/// the cluster settles.
pub fn tick(watch: &mut Watch) -> Result<(), DriveError> {
    for &id in IDS.iter() {
        with_node(id, |n| n.tick());
    }
    settle(watch)
}

/// Role and term of node `id`.
pub fn role_of(id: NodeId) -> (Role, tinyraft::Term) {
    with_node(id, |n| (n.raw().role(), n.raw().term()))
}

/// The leader a client outside any partition would find: the reachable node that leads in
/// the highest term.
pub fn reachable_leader() -> Option<NodeId> {
    IDS.iter()
        .copied()
        .filter(|&id| !net::is_isolated(id))
        .map(|id| (id, role_of(id)))
        .filter(|(_, (role, _))| *role == Role::Leader)
        .max_by_key(|(_, (_, term))| *term)
        .map(|(id, _)| id)
}
