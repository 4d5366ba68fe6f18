//! Fault-injecting middleware for tests and simulations, usable without `std` or an allocator.
//!
//! Like smoltcp's `phy::FaultInjector`, these types wrap *any* implementation of a seam and
//! misbehave on purpose, within what the seam's contract allows:
//!
//! - [`FaultyStorage`] wraps any [`crate::Storage`]. Writes stay in a bounded journal until
//!   `sync`, so a simulated crash ([`FaultyStorage::crash`]) can lose what was never synced,
//!   keep part of it (write-back that happened before the crash), tear the last record, and
//!   keep or lose an un-synced hard state independently of the log (they are separate files in
//!   a real store). A sync can be made to fail as if the machine died during it.
//! - [`FaultyTransport`] wraps any [`crate::Transport`]: it drops, duplicates and delays
//!   messages (delays reorder them), and cuts links one way (partitions are built from that).
//!
//! Every random decision comes from a [`FaultRng`] the caller seeds, so a run replays exactly
//! from its seed. Probabilities are in parts per million ([`Ppm`]).

mod storage;
mod transport;

pub use storage::{CrashReport, FaultyStorage, FaultyStorageError, FaultyStorageStats};
pub use transport::{FaultyTransport, FaultyTransportStats, LinkFaults};

/// A probability in parts per million: 0 never, [`PPM_ALWAYS`] always.
pub type Ppm = u32;

/// The probability "always".
pub const PPM_ALWAYS: Ppm = 1_000_000;

/// The randomness fault injection draws from; implement it over any PRNG, or use
/// [`SplitMix64`].
pub trait FaultRng {
    /// The next 64 random bits.
    fn next_u64(&mut self) -> u64;

    /// Uniform in `0..n` (0 when `n` is 0). The modulo bias is negligible for the small `n`
    /// fault injection uses.
    fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next_u64() % n
        }
    }

    /// True with probability `ppm` parts per million.
    fn chance(&mut self, ppm: Ppm) -> bool {
        ppm > 0 && self.below(u64::from(PPM_ALWAYS)) < u64::from(ppm)
    }
}

/// A small, fast, seedable PRNG (SplitMix64, Steele et al. 2014). Not for cryptography.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SplitMix64 {
    state: u64,
}

impl SplitMix64 {
    /// A generator seeded with `seed`; equal seeds give equal sequences.
    pub const fn new(seed: u64) -> Self {
        Self { state: seed }
    }
}

impl FaultRng for SplitMix64 {
    fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

impl<R: FaultRng + ?Sized> FaultRng for &mut R {
    fn next_u64(&mut self) -> u64 {
        (**self).next_u64()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splitmix_replays_and_chance_is_calibrated() {
        let mut a = SplitMix64::new(7);
        let mut b = SplitMix64::new(7);
        for _ in 0..100 {
            assert_eq!(a.next_u64(), b.next_u64());
        }
        assert!(!a.chance(0));
        assert!(a.chance(PPM_ALWAYS));
        let hits = (0..100_000).filter(|_| a.chance(100_000)).count();
        assert!((9_000..11_000).contains(&hits), "{hits} hits for 10%");
        assert_eq!(a.below(0), 0);
        assert!((0..1000).all(|_| a.below(3) < 3));
    }
}
