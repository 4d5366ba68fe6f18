//! The application seam: the deterministic state machine that committed entries are applied to.

use crate::types::Entry;

/// A deterministic state machine replicated by Raft.
///
/// Every node applies the same committed entries in the same order, so `apply` must depend on
/// nothing but the state and the entry: no clock, no randomness, no I/O results.
pub trait StateMachine {
    /// What applying an entry answers (routed back to the client that proposed it).
    type Response;

    /// Applies one committed application entry (never a no-op or configuration entry) and
    /// returns the response. Errors of the request itself (a bad key, a failed
    /// compare-and-swap) are responses, not failures.
    fn apply(&mut self, entry: &Entry<'_>) -> Self::Response;
}
