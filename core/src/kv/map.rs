//! Where the pairs live: the [`KvMap`] trait and its implementations.
//!
//! The store's logic (limits, sessions, scans) is written once, in [`crate::kv::store`], over
//! this trait. A map only stores pairs and lists them; it never decides what a client is told,
//! except that it may be full.
//!
//! - [`ArenaMap`] needs no allocator. It keeps every pair in one byte arena, in key order, and
//!   a sorted table of 8-byte slots, so a key costs its own bytes plus 8, not the size of the
//!   largest possible pair. Both capacities are const generics.
//! - `HashKvMap` (feature `alloc`) is a hashbrown table whose capacity is reserved when it is
//!   created, so it never grows; it suits large desktop stores. Its iteration order is that of
//!   the hash table, which [`KvMap::SORTED`] tells the store not to trust.

use heapless::Vec;

use super::{KEY_BYTES_MAX, VALUE_BYTES_MAX};

/// Why a map refused an insertion. Either way the map is unchanged.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MapFull {
    /// The key is new and the map already holds [`KvMap::keys_max`] keys.
    Keys,
    /// The map's byte storage cannot hold the pair (or the pair breaks the key or value limit).
    Bytes,
}

/// A map from byte-string keys to byte-string values, with a fixed capacity.
///
/// Implementations must be deterministic in everything but [`KvMap::iter_from`]'s order (and
/// only when [`KvMap::SORTED`] is false): two maps given the same operations must hold the same
/// pairs and refuse the same insertions.
pub trait KvMap {
    /// True if [`KvMap::iter_from`] yields exactly the keys at or after `from`, in ascending
    /// byte order. When false it may yield every pair, in any order, and the store sorts.
    const SORTED: bool;

    /// The value of `key`, if present.
    fn get(&self, key: &[u8]) -> Option<&[u8]>;

    /// Sets `key` to `value`, adding the key if absent. On error nothing changed.
    ///
    /// The store only passes keys and values within [`KEY_BYTES_MAX`] and
    /// [`VALUE_BYTES_MAX`].
    fn insert(&mut self, key: &[u8], value: &[u8]) -> Result<(), MapFull>;

    /// Removes `key`; true if it was present.
    fn remove(&mut self, key: &[u8]) -> bool;

    /// Number of keys held.
    fn len(&self) -> usize;

    /// True if no key is held.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Most keys the map can hold.
    fn keys_max(&self) -> usize;

    /// Removes every pair (a snapshot is about to replace them).
    fn clear(&mut self);

    /// The pairs whose key is at or after `from`: in ascending order if [`KvMap::SORTED`],
    /// otherwise possibly all pairs in any order.
    fn iter_from<'a>(&'a self, from: &'a [u8]) -> impl Iterator<Item = (&'a [u8], &'a [u8])> + 'a;
}

/// Where one pair lives in an [`ArenaMap`]'s arena.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Slot {
    /// Offset of the key; the value follows it.
    off: u32,
    key_len: u16,
    value_len: u16,
}

impl Slot {
    fn len(&self) -> usize {
        usize::from(self.key_len) + usize::from(self.value_len)
    }
}

/// A map without allocator: at most `KEYS` keys whose keys and values total at most `BYTES`
/// bytes.
///
/// RAM: `BYTES` + 8 × `KEYS` bytes + a few words. A firmware node with 64 small keys might use
/// `ArenaMap<64, 4096>` (about 4.6 KiB). Every write moves at most `BYTES` bytes and updates at
/// most `KEYS` slots; lookups are binary searches.
///
/// `const fn new` lets it live in a `static`.
#[derive(Clone, Debug)]
pub struct ArenaMap<const KEYS: usize, const BYTES: usize> {
    /// Invariant: strictly ascending by key; the records (key then value) lie in the arena in
    /// slot order with no gaps: `slots[0].off == 0`, each next one starts where the previous
    /// ends, and the last ends at `used`.
    slots: Vec<Slot, KEYS>,
    arena: [u8; BYTES],
    /// Bytes of `arena` holding records. Invariant: `used <= BYTES`.
    used: usize,
}

impl<const KEYS: usize, const BYTES: usize> Default for ArenaMap<KEYS, BYTES> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const KEYS: usize, const BYTES: usize> ArenaMap<KEYS, BYTES> {
    const OFFSETS_FIT: () = assert!(BYTES <= u32::MAX as usize, "arena offsets are u32");

    /// An empty map.
    pub const fn new() -> Self {
        let () = Self::OFFSETS_FIT;
        Self {
            slots: Vec::new(),
            arena: [0; BYTES],
            used: 0,
        }
    }

    /// Arena bytes in use (the keys and values held).
    pub fn bytes_used(&self) -> usize {
        self.used
    }

    /// Arena capacity in bytes (`BYTES`).
    pub fn bytes_max(&self) -> usize {
        BYTES
    }

    fn key_of(&self, s: &Slot) -> &[u8] {
        let at = s.off as usize;
        &self.arena[at..at + usize::from(s.key_len)]
    }

    fn value_of(&self, s: &Slot) -> &[u8] {
        let at = s.off as usize + usize::from(s.key_len);
        &self.arena[at..at + usize::from(s.value_len)]
    }

    fn find(&self, key: &[u8]) -> Result<usize, usize> {
        self.slots.binary_search_by(|s| self.key_of(s).cmp(key))
    }

    /// Replaces `old_len` bytes at `at` with `new_len` bytes (left unwritten), moving the rest
    /// of the records, and moves the offsets of slots `from..` to match. The caller checked
    /// that the arena has room.
    fn splice(&mut self, at: usize, old_len: usize, new_len: usize, from: usize) {
        debug_assert!(self.used - old_len + new_len <= BYTES);
        self.arena
            .copy_within(at + old_len..self.used, at + new_len);
        self.used = self.used - old_len + new_len;
        for s in &mut self.slots[from..] {
            // Records after the spliced range start at or after `at + old_len`, so this
            // neither underflows nor leaves the arena.
            s.off = (s.off as usize - old_len + new_len) as u32;
        }
    }

    fn invariants_hold(&self) -> bool {
        let mut end = 0usize;
        for (i, s) in self.slots.iter().enumerate() {
            if s.off as usize != end {
                return false;
            }
            end += s.len();
            if i > 0 && self.key_of(&self.slots[i - 1]) >= self.key_of(s) {
                return false;
            }
        }
        end == self.used && self.used <= BYTES
    }
}

impl<const KEYS: usize, const BYTES: usize> KvMap for ArenaMap<KEYS, BYTES> {
    const SORTED: bool = true;

    fn clear(&mut self) {
        self.slots.clear();
        self.used = 0;
    }

    fn get(&self, key: &[u8]) -> Option<&[u8]> {
        let i = self.find(key).ok()?;
        Some(self.value_of(&self.slots[i]))
    }

    fn insert(&mut self, key: &[u8], value: &[u8]) -> Result<(), MapFull> {
        if key.len() > KEY_BYTES_MAX || value.len() > VALUE_BYTES_MAX {
            return Err(MapFull::Bytes);
        }
        match self.find(key) {
            Ok(i) => {
                let s = self.slots[i];
                let old = usize::from(s.value_len);
                if self.used - old + value.len() > BYTES {
                    return Err(MapFull::Bytes);
                }
                let at = s.off as usize + usize::from(s.key_len);
                self.splice(at, old, value.len(), i + 1);
                self.arena[at..at + value.len()].copy_from_slice(value);
                self.slots[i].value_len = value.len() as u16;
            }
            Err(i) => {
                if self.slots.is_full() {
                    return Err(MapFull::Keys);
                }
                let len = key.len() + value.len();
                if self.used + len > BYTES {
                    return Err(MapFull::Bytes);
                }
                let at = self.slots.get(i).map_or(self.used, |s| s.off as usize);
                self.splice(at, 0, len, i);
                self.arena[at..at + key.len()].copy_from_slice(key);
                self.arena[at + key.len()..at + len].copy_from_slice(value);
                let slot = Slot {
                    off: at as u32,
                    key_len: key.len() as u16,
                    value_len: value.len() as u16,
                };
                // Cannot fail: fullness was checked above.
                let inserted = self.slots.insert(i, slot).is_ok();
                debug_assert!(inserted);
            }
        }
        debug_assert!(self.invariants_hold());
        Ok(())
    }

    fn remove(&mut self, key: &[u8]) -> bool {
        let Ok(i) = self.find(key) else {
            return false;
        };
        let s = self.slots.remove(i);
        self.splice(s.off as usize, s.len(), 0, i);
        debug_assert!(self.invariants_hold());
        true
    }

    fn len(&self) -> usize {
        self.slots.len()
    }

    fn keys_max(&self) -> usize {
        KEYS
    }

    fn iter_from<'a>(&'a self, from: &'a [u8]) -> impl Iterator<Item = (&'a [u8], &'a [u8])> + 'a {
        let start = self.find(from).unwrap_or_else(|i| i);
        self.slots[start..]
            .iter()
            .map(|s| (self.key_of(s), self.value_of(s)))
    }
}

#[cfg(feature = "alloc")]
pub use hash::HashKvMap;

#[cfg(feature = "alloc")]
mod hash {
    use alloc::boxed::Box;

    use hashbrown::HashMap;

    use super::{KvMap, MapFull};

    /// A hashbrown map holding at most `keys_max` keys, with room for all of them reserved
    /// when it is created (the table never grows or rehashes afterwards; each pair is still
    /// its own allocation).
    ///
    /// RAM: the table costs about 33 bytes per key of capacity (two boxed-slice pointers and a
    /// control byte, more after rounding up to a power of two), plus each pair's bytes and the
    /// allocator's overhead for two allocations.
    #[derive(Clone, Debug)]
    pub struct HashKvMap {
        map: HashMap<Box<[u8]>, Box<[u8]>>,
        /// Invariant: `map.len() <= keys_max <= map.capacity()`.
        keys_max: usize,
    }

    impl HashKvMap {
        /// An empty map for at most `keys_max` keys, allocated now.
        pub fn with_capacity(keys_max: usize) -> Self {
            Self {
                map: HashMap::with_capacity(keys_max),
                keys_max,
            }
        }
    }

    impl KvMap for HashKvMap {
        const SORTED: bool = false;

        fn clear(&mut self) {
            // Keeps the table's capacity: it stays allocated up front.
            self.map.clear();
        }

        fn get(&self, key: &[u8]) -> Option<&[u8]> {
            self.map.get(key).map(|v| &**v)
        }

        fn insert(&mut self, key: &[u8], value: &[u8]) -> Result<(), MapFull> {
            if let Some(v) = self.map.get_mut(key) {
                if v.len() == value.len() {
                    v.copy_from_slice(value);
                } else {
                    *v = value.into();
                }
                return Ok(());
            }
            if self.map.len() >= self.keys_max {
                return Err(MapFull::Keys);
            }
            self.map.insert(key.into(), value.into());
            Ok(())
        }

        fn remove(&mut self, key: &[u8]) -> bool {
            self.map.remove(key).is_some()
        }

        fn len(&self) -> usize {
            self.map.len()
        }

        fn keys_max(&self) -> usize {
            self.keys_max
        }

        fn iter_from<'a>(
            &'a self,
            _from: &'a [u8],
        ) -> impl Iterator<Item = (&'a [u8], &'a [u8])> + 'a {
            self.map.iter().map(|(k, v)| (&**k, &**v))
        }
    }
}
