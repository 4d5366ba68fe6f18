//! Membership in the node runtime: where the members are (the address book), how an added
//! node's address travels in its configuration entry, and the administrative requests that
//! wait for their change to apply.
//!
//! # Addresses travel with configuration changes
//!
//! The core's configuration entries carry an opaque context; the runtime puts the addresses of
//! the nodes a change adds there, as UTF-8 `ID=HOST:PORT` pairs separated by commas (e.g.
//! `4=10.0.0.4:7004`). Every node applies the same entries, so every node learns the address
//! of a new member from the log, whatever it was given on its command line.
//!
//! # The address book outlives the log
//!
//! Compaction discards the configuration entries (a snapshot carries the configuration, not
//! the addresses), so the runtime keeps what it learned in `DATA_DIR/addresses`, one
//! `ID=HOST:PORT` per line, replaced atomically (temp file, fsync, rename, directory fsync)
//! whenever it changes. At start the book is the node's `--peers` plus the file's entries
//! for ids `--peers` does not name: the command line wins, so an operator can move a node.
//!
//! # Removed members are forgotten late
//!
//! When a node is removed, its address is dropped only after two election timeouts: a
//! removed leader hands over with a `TimeoutNow` it sends after applying its removal, and a
//! follower that has already applied the same removal must still accept that datagram.
//! Until then the core ignores everything else the removed node sends.

use std::fmt::Write as _;
use std::fs::{self, File};
use std::io::{self, Write as _};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Instant;

use tinyraft::{Index, NodeId};

/// The address book's file in the data directory.
pub const ADDRESS_BOOK_FILE: &str = "addresses";

/// Encodes node addresses as a configuration entry's context: `ID=HOST:PORT,...`.
pub fn encode_context(addrs: &[(NodeId, SocketAddr)]) -> String {
    let mut s = String::new();
    for (i, (id, addr)) in addrs.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        let _ = write!(s, "{id}={addr}");
    }
    s
}

/// Decodes a configuration entry's context. The entry is committed, so it was checked by the
/// leader that proposed it; still, a malformed pair (another runtime's context, a corrupt
/// disk the CRC missed) is skipped rather than trusted.
pub fn decode_context(context: &[u8]) -> Vec<(NodeId, SocketAddr)> {
    let Ok(text) = std::str::from_utf8(context) else {
        return Vec::new();
    };
    text.split(',').filter_map(parse_pair).collect()
}

fn parse_pair(pair: &str) -> Option<(NodeId, SocketAddr)> {
    let (id, addr) = pair.trim().split_once('=')?;
    let id: NodeId = id.parse().ok().filter(|&id| id != 0)?;
    Some((id, addr.parse().ok()?))
}

/// Why an address cannot be a member's, or `None` if it can.
pub fn unusable_address(addr: SocketAddr) -> Option<&'static str> {
    if addr.ip().is_unspecified() {
        Some("a wildcard address (0.0.0.0 or ::) cannot be reached")
    } else if addr.port() == 0 {
        Some("port 0 cannot be reached")
    } else if addr.ip().is_multicast() {
        Some("a multicast address cannot be a node's")
    } else {
        None
    }
}

/// Every member's address this node knows (itself included), kept on disk.
#[derive(Debug)]
pub struct AddressBook {
    path: PathBuf,
    me: NodeId,
    /// Invariant: ids unique and non-zero.
    entries: Vec<(NodeId, SocketAddr)>,
    /// Removed members whose addresses go at the given instant.
    forget: Vec<(NodeId, Instant)>,
}

impl AddressBook {
    /// The book of node `me`: `flags` (the node's `--peers`), then what `dir`'s file adds.
    pub fn open(dir: &Path, me: NodeId, flags: &[(NodeId, SocketAddr)]) -> io::Result<Self> {
        let path = dir.join(ADDRESS_BOOK_FILE);
        let mut book = Self {
            path,
            me,
            entries: flags.to_vec(),
            forget: Vec::new(),
        };
        let text = match fs::read_to_string(&book.path) {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::NotFound => String::new(),
            Err(e) => return Err(e),
        };
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            let (id, addr) = parse_pair(line).ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("{}: bad line `{line}`", book.path.display()),
                )
            })?;
            if book.get(id).is_none() {
                book.entries.push((id, addr));
            }
        }
        Ok(book)
    }

    /// The address of `id`.
    pub fn get(&self, id: NodeId) -> Option<SocketAddr> {
        self.entries.iter().find(|e| e.0 == id).map(|e| e.1)
    }

    /// The node at `addr`, if any.
    pub fn id_at(&self, addr: SocketAddr) -> Option<NodeId> {
        self.entries.iter().find(|e| e.1 == addr).map(|e| e.0)
    }

    /// Every known address.
    pub fn entries(&self) -> &[(NodeId, SocketAddr)] {
        &self.entries
    }

    /// Records `id`'s address (and keeps it: a pending forget is cancelled). True if the book
    /// changed.
    pub fn set(&mut self, id: NodeId, addr: SocketAddr) -> bool {
        self.forget.retain(|f| f.0 != id);
        match self.entries.iter_mut().find(|e| e.0 == id) {
            Some(e) if e.1 == addr => false,
            Some(e) => {
                e.1 = addr;
                true
            }
            None => {
                self.entries.push((id, addr));
                true
            }
        }
    }

    /// Keeps `id`'s address until `at` (see the module docs), unless it is set again.
    pub fn forget_at(&mut self, id: NodeId, at: Instant) {
        if id != self.me && self.get(id).is_some() && !self.forget.iter().any(|f| f.0 == id) {
            self.forget.push((id, at));
        }
    }

    /// Keeps `id`'s address after all (it is a member again).
    pub fn keep(&mut self, id: NodeId) {
        self.forget.retain(|f| f.0 != id);
    }

    /// Removes the addresses whose time has come; returns their ids.
    pub fn expire(&mut self, now: Instant) -> Vec<NodeId> {
        if !self.forget.iter().any(|f| f.1 <= now) {
            return Vec::new();
        }
        let due: Vec<NodeId> = self
            .forget
            .iter()
            .filter(|f| f.1 <= now)
            .map(|f| f.0)
            .collect();
        self.forget.retain(|f| f.1 > now);
        self.entries.retain(|e| !due.contains(&e.0));
        due
    }

    /// Writes the book to its file, atomically and durably.
    pub fn save(&self) -> io::Result<()> {
        let mut text = String::new();
        for (id, addr) in &self.entries {
            let _ = writeln!(text, "{id}={addr}");
        }
        let tmp = self.path.with_extension("tmp");
        let mut f = File::create(&tmp)?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
        fs::rename(&tmp, &self.path)?;
        if let Some(dir) = self.path.parent() {
            File::open(dir)?.sync_all()?;
        }
        Ok(())
    }
}

/// A client waiting for its membership change to apply on this leader.
#[derive(Clone, Copy, Debug)]
pub struct PendingChange {
    /// Where to answer.
    pub addr: SocketAddr,
    /// The request's nonce.
    pub nonce: u64,
    /// Index of the change's configuration entry.
    pub index: Index,
    /// The entry applied and was joint: the answer waits for the entry that leaves it.
    pub leaving: bool,
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn a(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn context_round_trips_and_skips_garbage() {
        let addrs = vec![(4, a("127.0.0.1:7004")), (5, a("[::1]:7005"))];
        let ctx = encode_context(&addrs);
        assert_eq!(ctx, "4=127.0.0.1:7004,5=[::1]:7005");
        assert_eq!(decode_context(ctx.as_bytes()), addrs);
        assert_eq!(decode_context(b""), vec![]);
        assert_eq!(
            decode_context(b"0=1.2.3.4:5,x=1.2.3.4:5,6=nope,7=1.2.3.4:7"),
            vec![(7, a("1.2.3.4:7"))]
        );
        assert_eq!(decode_context(&[0xff, 0xfe]), vec![]);
    }

    #[test]
    fn unusable_addresses() {
        assert!(unusable_address(a("0.0.0.0:7000")).is_some());
        assert!(unusable_address(a("127.0.0.1:0")).is_some());
        assert!(unusable_address(a("224.0.0.1:7000")).is_some());
        assert!(unusable_address(a("127.0.0.1:7000")).is_none());
    }

    #[test]
    fn book_persists_flags_win_and_removed_addresses_expire() {
        let dir = tempfile::tempdir().unwrap();
        let flags = [(1, a("127.0.0.1:7001")), (2, a("127.0.0.1:7002"))];
        let mut book = AddressBook::open(dir.path(), 1, &flags).unwrap();
        assert!(book.set(4, a("127.0.0.1:7004")));
        assert!(!book.set(4, a("127.0.0.1:7004")));
        book.save().unwrap();
        // Restarted with node 2 moved on the command line: the flag wins, 4 is remembered.
        let moved = [(1, a("127.0.0.1:7001")), (2, a("127.0.0.1:8002"))];
        let mut book = AddressBook::open(dir.path(), 1, &moved).unwrap();
        assert_eq!(book.get(2), Some(a("127.0.0.1:8002")));
        assert_eq!(book.get(4), Some(a("127.0.0.1:7004")));
        assert_eq!(book.id_at(a("127.0.0.1:7004")), Some(4));
        // Forgetting waits for its time; setting again cancels it; self is never forgotten.
        let now = Instant::now();
        book.forget_at(4, now + Duration::from_secs(1));
        book.forget_at(1, now);
        assert_eq!(book.expire(now), Vec::<NodeId>::new());
        assert_eq!(book.expire(now + Duration::from_secs(1)), vec![4]);
        assert_eq!(book.get(4), None);
        book.forget_at(2, now);
        book.keep(2);
        assert_eq!(
            book.expire(now + Duration::from_secs(9)),
            Vec::<NodeId>::new()
        );
        book.save().unwrap();
        let book = AddressBook::open(dir.path(), 1, &flags).unwrap();
        assert_eq!(book.get(4), None);
        // A corrupt file is an error, not a guess.
        fs::write(dir.path().join(ADDRESS_BOOK_FILE), "4=nowhere\n").unwrap();
        assert!(AddressBook::open(dir.path(), 1, &flags).is_err());
    }
}
