//! A deterministic simulator of a tinyraft cluster (in the manner of TigerBeetle's VOPR).
//!
//! One thread, one seeded RNG, virtual time: the real core [`tinyraft::RawNode`] and the real
//! [`tinyraft::kv::KvStore`] run on 3 or 5 simulated nodes whose disks and network are wrapped
//! in core's fault middleware ([`tinyraft::fault`]). Clients with the real client's semantics
//! run TinyKV's workload against them. Every step checks Raft's safety properties; the end of
//! the run checks TinyKV's per-client checks and linearizability ([`checker`]).
//!
//! Time is counted in *steps*; a node ticks every [`STEPS_PER_TICK`] steps (each at its own
//! phase) and a message takes at least one step. A run is a sequence of rounds, as TinyKV's
//! `GenericTest`: a **safety phase** of faults while clients run, then a **liveness phase**:
//! faults stop, every node is restarted, and within a bounded number of ticks a leader must be
//! elected and every client operation must finish; then each client checks and deletes its
//! keys. The same scenario and seed replay the same run exactly, in any build profile.
//!
//! With a [`membership::ConfChangePlan`] some node slots start outside the cluster and a
//! configuration changer adds, promotes, demotes and removes nodes while the run goes on (see
//! [`membership`]).
//!
//! See [`scenario`] for the knobs and [`sweep`] for running many seeds.

pub mod checker;
pub mod client;
pub mod cluster;
pub mod membership;
pub mod network;
pub mod scenario;
pub mod storage;

pub use scenario::{run, sweep, Scenario, SimFailure, SimReport};

/// Steps per node tick.
pub const STEPS_PER_TICK: u64 = 4;
