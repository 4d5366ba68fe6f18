//! What the simulator checks: Raft's safety properties after every step, and linearizability
//! of the clients' history at the end.
//!
//! # Per-step invariants (Raft paper, Figure 3)
//!
//! - **Election Safety**: at most one leader per term, over the whole run.
//! - **Log Matching**: checked on every durable append by [`super::storage::SimStorage`].
//! - **Leader Completeness**: when a node is first seen leading term `t`, its log holds every
//!   entry committed in a term below `t` (`committed_term` records, per index, the lowest term
//!   in which any node was seen to hold it committed).
//! - **State Machine Safety**: no two nodes apply different entries at one index.
//! - Commit and applied indexes never decrease within one incarnation of a node, entries are
//!   applied in order with no gap, and nothing is applied before it is committed.
//!
//! # Membership invariants
//!
//! - **A configuration changes only by applying entries**: every configuration entry any node
//!   applies is recorded by index, and a node's configuration must always be the one of the
//!   latest configuration entry at or below its applied index (the initial configuration if
//!   there is none; a node still joining may have none at all). A snapshot carries the
//!   configuration as of its index, so restoring one keeps this true.
//! - **Only a voter campaigns, and a non-voter leads only to hand over**: a candidate or
//!   pre-candidate is a voter of its own configuration, so a learner, a removed or a joining
//!   node never campaigns, let alone wins; a leader that is not a voter of its configuration
//!   (it applied its own removal or demotion, possibly in the step that elected it) must be
//!   transferring leadership, which takes no proposals. Election Safety above is over the
//!   whole run, so it also holds across configurations.
//!
//! # Linearizability (Herlihy & Wing), Wing–Gong / Lowe search
//!
//! Every client operation is recorded with the logical time it was invoked and the time its
//! answer arrived. A write whose outcome is unknown (the client gave up without a definite
//! answer) has no return time: it may take effect at any time after its invocation, or never —
//! "never" is the same, for every observer, as "after everything else", so it is modelled as
//! an operation that returns at infinity and whose answer is not checked. A read without an
//! answer says nothing and is left out; so is an operation that definitely did not happen.
//!
//! The history is split per key (a register per key is a P-compositional model: the whole
//! history is linearizable iff each key's is). A scan page reads many keys: it is turned into
//! one read per key in the range the page covers (the keys it returned, with their values, and
//! every other key written in that range, as absent). That checks each key's value and is
//! sound, though weaker than checking the page as one atomic snapshot.
//!
//! Each key's history is searched as in porcupine (Lowe's refinement of Wing & Gong): walk the
//! events in time order, linearize a pending call when the model allows it, backtrack at a
//! return whose call was not linearized, and memoize `(linearized set, state)` pairs already
//! explored. A first pass drops the unknown-outcome writes (placing them "at the end"); only if
//! that fails does the full search run.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use tinyraft::{Index, Membership, NodeId, Role, Term};

/// A breach of an invariant, as text for the failure report.
pub type Violation = String;

// ----- per-step invariants -----------------------------------------------------------------

#[derive(Default, Debug, Clone, Copy)]
struct Incarnation {
    commit: Index,
    applied: Index,
}

/// Raft's safety properties, checked as the simulation runs.
#[derive(Default, Debug)]
pub struct Invariants {
    leaders: BTreeMap<Term, NodeId>,
    /// Per index: hash of the committed entry and the lowest term it was seen committed in.
    committed: Vec<Option<(u64, Term)>>,
    /// Per index: hash of the entry applied there.
    applied: Vec<Option<u64>>,
    nodes: HashMap<NodeId, Incarnation>,
    /// The configuration of the cluster before any configuration entry.
    initial: Membership,
    /// Configuration entries applied by any node, by index (each one committed).
    configs: BTreeMap<Index, Membership>,
    /// Breaches found so far.
    pub violations: Vec<Violation>,
    /// Elections observed (distinct `(term, leader)` pairs).
    pub elections: u64,
}

fn slot<T: Clone>(v: &mut Vec<Option<T>>, index: Index) -> &mut Option<T> {
    let i = index as usize;
    if v.len() <= i {
        v.resize(i + 1, None);
    }
    &mut v[i]
}

impl Invariants {
    /// Checks for a cluster that starts with `initial` as its configuration.
    pub fn new(initial: Membership) -> Self {
        Self {
            initial,
            ..Self::default()
        }
    }

    /// Node `id` applied the configuration entry at `index`, moving to `membership`.
    pub fn config_applied(&mut self, id: NodeId, index: Index, membership: &Membership) {
        match self.configs.get(&index) {
            Some(known) if known != membership => self.violations.push(format!(
                "node {id} applied configuration {membership:?} at index {index}, where another \
                 node applied {known:?}"
            )),
            Some(_) => {}
            None => {
                self.configs.insert(index, membership.clone());
            }
        }
    }

    /// The configuration a node that has applied up to `applied` must have: the latest
    /// configuration entry at or below it, if any node has applied one.
    pub fn config_at(&self, applied: Index) -> Option<(Index, &Membership)> {
        self.configs
            .range(..=applied)
            .next_back()
            .map(|(&i, m)| (i, m))
    }

    /// Checks node `id`'s configuration against its applied index, that it campaigns only as
    /// a voter, and leads as a non-voter only to hand over (`handing_over`: it is transferring
    /// leadership). `joining`: it
    /// started without a configuration, so before its first configuration entry (or a
    /// snapshot) it may have none.
    #[allow(clippy::too_many_arguments)]
    pub fn observe_membership(
        &mut self,
        id: NodeId,
        role: Role,
        term: Term,
        applied: Index,
        membership: &Membership,
        joining: bool,
        handing_over: bool,
    ) {
        let ok = match self.config_at(applied) {
            Some((_, expected)) => membership == expected,
            None => *membership == self.initial || (joining && *membership == Membership::EMPTY),
        };
        if !ok {
            let expected = self.config_at(applied).map(|(i, m)| (i, m.clone()));
            self.violations.push(format!(
                "node {id}'s configuration {membership:?} is not the one its applied index \
                 {applied} implies ({expected:?}; initial {:?}): a configuration must change \
                 only by applying entries",
                self.initial
            ));
        }
        let voter = membership.is_voter(id);
        let campaigning = matches!(role, Role::Candidate | Role::PreCandidate);
        if !voter && campaigning {
            self.violations.push(format!(
                "node {id} is {role:?} in term {term} but not a voter of its configuration \
                 {membership:?}"
            ));
        }
        if !voter && role == Role::Leader && !handing_over {
            self.violations.push(format!(
                "node {id} leads term {term} though no longer a voter of {membership:?}, \
                 without handing over"
            ));
        }
    }

    /// Forgets node `id`'s volatile indexes: it restarted.
    pub fn restarted(&mut self, id: NodeId) {
        self.nodes.remove(&id);
    }

    /// Highest index recorded as committed.
    pub fn committed_max(&self) -> Index {
        self.committed.len().saturating_sub(1) as Index
    }

    /// Checks a node's role, commit and applied indexes after a step. `entry_hash(i)` gives
    /// the hash of the node's entry at `i` (None if its log does not hold it); it is called
    /// only for indexes the check needs.
    #[allow(clippy::too_many_arguments)]
    pub fn observe(
        &mut self,
        id: NodeId,
        role: Role,
        term: Term,
        commit: Index,
        applied: Index,
        first_index: Index,
        entry_hash: &mut dyn FnMut(Index) -> Option<u64>,
    ) {
        let inc = self.nodes.entry(id).or_default();
        if commit < inc.commit {
            self.violations.push(format!(
                "node {id}: commit index went back from {} to {commit}",
                inc.commit
            ));
        }
        if applied < inc.applied {
            self.violations.push(format!(
                "node {id}: applied index went back from {} to {applied}",
                inc.applied
            ));
        }
        if applied > commit {
            self.violations.push(format!(
                "node {id}: applied {applied} above commit {commit}"
            ));
        }
        let from = inc.commit.max(first_index.saturating_sub(1)) + 1;
        inc.commit = inc.commit.max(commit);
        inc.applied = inc.applied.max(applied);
        // Newly committed entries on this node: record them (State Machine Safety's premise).
        for i in from..=commit {
            let Some(h) = entry_hash(i) else {
                self.violations.push(format!(
                    "node {id}: commit index {commit} but no entry {i} in its log"
                ));
                break;
            };
            match slot(&mut self.committed, i) {
                s @ None => *s = Some((h, term)),
                Some((known, t)) => {
                    if *known != h {
                        self.violations.push(format!(
                            "node {id}: entry {i} committed with a different content than \
                             another node committed there"
                        ));
                    }
                    *t = (*t).min(term);
                }
            }
        }
        if role == Role::Leader {
            match self.leaders.get(&term) {
                Some(&other) if other != id => self.violations.push(format!(
                    "election safety: nodes {other} and {id} both lead term {term}"
                )),
                Some(_) => {}
                None => {
                    self.leaders.insert(term, id);
                    self.elections += 1;
                    self.check_leader_completeness(id, term, first_index, entry_hash);
                }
            }
        }
    }

    fn check_leader_completeness(
        &mut self,
        id: NodeId,
        term: Term,
        first_index: Index,
        entry_hash: &mut dyn FnMut(Index) -> Option<u64>,
    ) {
        for i in first_index.max(1)..self.committed.len() as Index {
            let Some((h, t)) = self.committed[i as usize] else {
                continue;
            };
            if t < term && entry_hash(i) != Some(h) {
                self.violations.push(format!(
                    "leader completeness: node {id} leads term {term} without entry {i}, \
                     committed in term {t}"
                ));
                return;
            }
        }
    }

    /// Node `id` applied the entry at `index` (hash `h`).
    pub fn applied(&mut self, id: NodeId, index: Index, h: u64) {
        match slot(&mut self.applied, index) {
            s @ None => *s = Some(h),
            Some(known) if *known != h => self.violations.push(format!(
                "state machine safety: node {id} applied a different entry at index {index}"
            )),
            Some(_) => {}
        }
        match self.committed.get(index as usize) {
            Some(Some((c, _))) if *c != h => self.violations.push(format!(
                "node {id} applied entry {index}, which differs from the committed one"
            )),
            _ => {}
        }
    }
}

// ----- history ---------------------------------------------------------------------------

/// A single-key operation and what it answered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeyOp {
    /// Read; answered the value (None: absent).
    Get(Option<Vec<u8>>),
    /// Write of a value.
    Put(Vec<u8>),
    /// Compare-and-swap: `expected` → `new`; `swapped` is the answer (None while unknown).
    Cas {
        /// Required current value.
        expected: Option<Vec<u8>>,
        /// Value to set (None removes).
        new: Option<Vec<u8>>,
        /// Answer: true = swapped, false = mismatch; None = outcome unknown.
        swapped: Option<bool>,
    },
    /// Delete; `existed` is the answer (None while unknown).
    Delete(Option<bool>),
}

/// What a client did.
#[derive(Clone, Debug)]
pub enum Recorded {
    /// An operation on one key.
    Key {
        /// The key.
        key: Vec<u8>,
        /// The operation and its answer.
        op: KeyOp,
    },
    /// One page of a scan.
    ScanPage {
        /// Keys scanned start with this.
        prefix: Vec<u8>,
        /// Keys scanned come strictly after this.
        start_after: Option<Vec<u8>>,
        /// What the page returned, in key order.
        pairs: Vec<(Vec<u8>, Vec<u8>)>,
        /// More pairs follow the page.
        more: bool,
    },
}

/// One operation of the history.
#[derive(Clone, Debug)]
pub struct Op {
    /// Which client.
    pub client: usize,
    /// Logical time of the invocation.
    pub call: u64,
    /// Logical time of the answer; None: the outcome is unknown.
    pub ret: Option<u64>,
    /// The operation.
    pub rec: Recorded,
}

/// Why a history is not linearizable (or could not be decided).
#[derive(Debug)]
pub struct NotLinearizable {
    /// The key whose history fails.
    pub key: String,
    /// Its operations, in call order, for the report.
    pub ops: Vec<String>,
    /// True if the search gave up (budget) rather than proving a violation.
    pub undecided: bool,
}

#[derive(Clone, Debug)]
struct Check {
    call: u64,
    ret: u64,
    op: KeyOp,
    client: usize,
}

/// Splits the history per key, turning scan pages into reads.
fn per_key(history: &[Op]) -> Result<BTreeMap<Vec<u8>, Vec<Check>>, NotLinearizable> {
    let mut keys: BTreeMap<Vec<u8>, Vec<Check>> = BTreeMap::new();
    for op in history {
        if let Recorded::Key { key, op: k } = &op.rec {
            keys.entry(key.clone()).or_default().push(Check {
                call: op.call,
                ret: op.ret.unwrap_or(u64::MAX),
                op: k.clone(),
                client: op.client,
            });
        }
    }
    let universe: BTreeSet<Vec<u8>> = keys.keys().cloned().collect();
    for op in history {
        let Recorded::ScanPage {
            prefix,
            start_after,
            pairs,
            more,
        } = &op.rec
        else {
            continue;
        };
        let Some(ret) = op.ret else { continue };
        let returned: BTreeMap<&[u8], &[u8]> = pairs
            .iter()
            .map(|(k, v)| (k.as_slice(), v.as_slice()))
            .collect();
        for (k, v) in &returned {
            if !universe.contains(*k) {
                return Err(NotLinearizable {
                    key: String::from_utf8_lossy(k).into_owned(),
                    ops: vec![format!(
                        "a scan returned value {:?} of a key nobody wrote",
                        String::from_utf8_lossy(v)
                    )],
                    undecided: false,
                });
            }
        }
        let end = if *more {
            pairs.last().map(|(k, _)| k.clone())
        } else {
            None
        };
        for key in universe.iter() {
            let in_range = key.starts_with(prefix)
                && start_after.as_ref().is_none_or(|a| key > a)
                && end.as_ref().is_none_or(|e| key <= e);
            if !in_range {
                continue;
            }
            let seen = returned.get(key.as_slice()).map(|v| v.to_vec());
            if let Some(list) = keys.get_mut(key) {
                list.push(Check {
                    call: op.call,
                    ret,
                    op: KeyOp::Get(seen),
                    client: op.client,
                });
            }
        }
    }
    Ok(keys)
}

/// Checks the history; Ok if every key's history is linearizable.
pub fn check_linearizable(history: &[Op]) -> Result<(), NotLinearizable> {
    for (key, mut ops) in per_key(history)? {
        ops.sort_by_key(|c| c.call);
        // Cheaper histories first: dropping an unknown-outcome write places it "after
        // everything", so if the rest is linearizable, so is the whole. First drop them all,
        // then only those whose value nobody ever read.
        let known: Vec<Check> = ops.iter().filter(|c| c.ret != u64::MAX).cloned().collect();
        if known.len() != ops.len() && search(&known, 2_000_000) == Some(true) {
            continue;
        }
        let read: HashSet<&Vec<u8>> = ops
            .iter()
            .filter_map(|c| match &c.op {
                KeyOp::Get(Some(v)) => Some(v),
                KeyOp::Cas {
                    expected: Some(v), ..
                } => Some(v),
                _ => None,
            })
            .collect();
        let observed: Vec<Check> = ops
            .iter()
            .filter(|c| {
                c.ret != u64::MAX
                    || match &c.op {
                        KeyOp::Put(v) => read.contains(v),
                        KeyOp::Cas { new: Some(v), .. } => read.contains(v),
                        _ => true,
                    }
            })
            .cloned()
            .collect();
        if observed.len() != known.len()
            && observed.len() != ops.len()
            && search(&observed, 5_000_000) == Some(true)
        {
            continue;
        }
        match search(&ops, 20_000_000) {
            Some(true) => {}
            verdict => {
                return Err(NotLinearizable {
                    key: String::from_utf8_lossy(&key).into_owned(),
                    ops: ops.iter().map(describe).collect(),
                    undecided: verdict.is_none(),
                })
            }
        }
    }
    Ok(())
}

fn describe(c: &Check) -> String {
    let v = |x: &Option<Vec<u8>>| match x {
        Some(b) => format!("{:?}", String::from_utf8_lossy(b)),
        None => "absent".to_string(),
    };
    let ret = if c.ret == u64::MAX {
        "unknown".to_string()
    } else {
        c.ret.to_string()
    };
    let what = match &c.op {
        KeyOp::Get(x) => format!("get -> {}", v(x)),
        KeyOp::Put(x) => format!("put {}", v(&Some(x.clone()))),
        KeyOp::Cas {
            expected,
            new,
            swapped,
        } => format!("cas {} -> {} : {swapped:?}", v(expected), v(new)),
        KeyOp::Delete(e) => format!("delete : existed {e:?}"),
    };
    format!("[{}..{ret}] client {} {what}", c.call, c.client)
}

/// Applies `op` to register state `s` (a value id, 0 = absent); None if the answer is
/// impossible from `s`.
fn step(s: u32, op: &KeyOp, ids: &HashMap<Vec<u8>, u32>) -> Option<u32> {
    let id = |v: &Option<Vec<u8>>| v.as_ref().map_or(0, |v| ids[v]);
    match op {
        KeyOp::Get(v) => (id(v) == s).then_some(s),
        KeyOp::Put(v) => Some(ids[v]),
        KeyOp::Cas {
            expected,
            new,
            swapped,
        } => {
            let matches = id(expected) == s;
            match swapped {
                Some(true) => matches.then(|| id(new)),
                Some(false) => (!matches).then_some(s),
                None => Some(if matches { id(new) } else { s }),
            }
        }
        KeyOp::Delete(existed) => match existed {
            Some(e) => (*e == (s != 0)).then_some(0),
            None => Some(0),
        },
    }
}

const NONE: usize = usize::MAX;

/// Wing–Gong/Lowe search over one key's operations. Some(true): linearizable; Some(false):
/// not; None: gave up after `budget` steps.
fn search(ops: &[Check], budget: u64) -> Option<bool> {
    if ops.is_empty() {
        return Some(true);
    }
    let mut ids: HashMap<Vec<u8>, u32> = HashMap::new();
    for c in ops {
        let vals: Vec<&Vec<u8>> = match &c.op {
            KeyOp::Get(Some(v)) | KeyOp::Put(v) => vec![v],
            KeyOp::Cas { expected, new, .. } => expected.iter().chain(new.iter()).collect(),
            _ => vec![],
        };
        for v in vals {
            let n = ids.len() as u32 + 1;
            ids.entry(v.clone()).or_insert(n);
        }
    }
    // Events: (time, is_return, op). Node 0 is the head sentinel.
    let mut events: Vec<(u64, bool, usize)> = Vec::with_capacity(ops.len() * 2);
    for (i, c) in ops.iter().enumerate() {
        events.push((c.call, false, i));
        events.push((c.ret, true, i));
    }
    events.sort_by_key(|&(t, r, i)| (t, r, i));
    let n = events.len() + 1;
    let mut next = vec![NONE; n];
    let mut prev = vec![NONE; n];
    let mut is_ret = vec![false; n];
    let mut op_of = vec![0usize; n];
    let mut ret_node = vec![0usize; ops.len()];
    for (k, &(_, r, i)) in events.iter().enumerate() {
        let node = k + 1;
        is_ret[node] = r;
        op_of[node] = i;
        if r {
            ret_node[i] = node;
        }
        prev[node] = k;
        next[k] = node;
    }
    let words = ops.len().div_ceil(64);
    let mut linearized = vec![0u64; words];
    let mut state = 0u32;
    let mut cache: HashSet<(Vec<u64>, u32)> = HashSet::new();
    let mut stack: Vec<(usize, u32)> = Vec::new();
    let mut entry = next[0];
    let mut steps = 0u64;
    while next[0] != NONE {
        steps += 1;
        if steps > budget {
            return None;
        }
        if entry == NONE {
            // Only unmatched calls of unknown-outcome ops remain ahead; cannot happen while a
            // return is still listed, but be safe.
            return Some(false);
        }
        if !is_ret[entry] {
            let i = op_of[entry];
            if let Some(s2) = step(state, &ops[i].op, &ids) {
                linearized[i / 64] |= 1 << (i % 64);
                if cache.insert((linearized.clone(), s2)) {
                    stack.push((entry, state));
                    state = s2;
                    // Lift the call and its return out of the list.
                    for node in [entry, ret_node[i]] {
                        next[prev[node]] = next[node];
                        if next[node] != NONE {
                            prev[next[node]] = prev[node];
                        }
                    }
                    entry = next[0];
                    continue;
                }
                linearized[i / 64] &= !(1 << (i % 64));
            }
            entry = next[entry];
        } else {
            let Some((call, s)) = stack.pop() else {
                return Some(false);
            };
            state = s;
            let i = op_of[call];
            linearized[i / 64] &= !(1 << (i % 64));
            for node in [ret_node[i], call] {
                next[prev[node]] = node;
                if next[node] != NONE {
                    prev[next[node]] = node;
                }
            }
            entry = next[call];
        }
    }
    Some(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(op: KeyOp, client: usize, call: u64, ret: Option<u64>) -> Op {
        Op {
            client,
            call,
            ret,
            rec: Recorded::Key {
                key: b"k".to_vec(),
                op,
            },
        }
    }

    fn v(s: &str) -> Vec<u8> {
        s.as_bytes().to_vec()
    }

    #[test]
    fn sequential_and_concurrent_histories() {
        let ok = [
            key(KeyOp::Put(v("a")), 0, 1, Some(2)),
            key(KeyOp::Get(Some(v("a"))), 1, 3, Some(4)),
        ];
        assert!(check_linearizable(&ok).is_ok());
        // A read after a completed write must see it.
        let stale = [
            key(KeyOp::Put(v("a")), 0, 1, Some(2)),
            key(KeyOp::Get(None), 1, 3, Some(4)),
        ];
        assert!(check_linearizable(&stale).is_err());
        // Overlapping: either order.
        let overlap = [
            key(KeyOp::Put(v("a")), 0, 1, Some(4)),
            key(KeyOp::Get(None), 1, 2, Some(3)),
        ];
        assert!(check_linearizable(&overlap).is_ok());
        // Two reads that disagree about the order of two writes.
        let split = [
            key(KeyOp::Put(v("a")), 0, 1, Some(10)),
            key(KeyOp::Put(v("b")), 1, 1, Some(10)),
            key(KeyOp::Get(Some(v("a"))), 2, 2, Some(3)),
            key(KeyOp::Get(Some(v("b"))), 2, 4, Some(5)),
            key(KeyOp::Get(Some(v("a"))), 3, 6, Some(7)),
        ];
        assert!(check_linearizable(&split).is_err());
    }

    #[test]
    fn unknown_outcomes_may_land_late_or_never() {
        // The unknown put is seen long after its client gave up: fine.
        let late = [
            key(KeyOp::Put(v("a")), 0, 1, None),
            key(KeyOp::Get(None), 1, 5, Some(6)),
            key(KeyOp::Get(Some(v("a"))), 1, 7, Some(8)),
        ];
        assert!(check_linearizable(&late).is_ok());
        // Never seen: fine.
        let never = [
            key(KeyOp::Put(v("a")), 0, 1, None),
            key(KeyOp::Get(None), 1, 5, Some(6)),
        ];
        assert!(check_linearizable(&never).is_ok());
        // But not before it was invoked.
        let early = [
            key(KeyOp::Get(Some(v("a"))), 1, 1, Some(2)),
            key(KeyOp::Put(v("a")), 0, 3, None),
        ];
        assert!(check_linearizable(&early).is_err());
        // And not twice: seen, overwritten, then seen again.
        let twice = [
            key(KeyOp::Put(v("a")), 0, 1, None),
            key(KeyOp::Get(Some(v("a"))), 1, 2, Some(3)),
            key(KeyOp::Put(v("b")), 1, 4, Some(5)),
            key(KeyOp::Get(Some(v("a"))), 1, 6, Some(7)),
        ];
        assert!(check_linearizable(&twice).is_err());
    }

    #[test]
    fn cas_and_delete_answers_are_checked() {
        let cas = |e: Option<&str>, n: &str, s: Option<bool>| KeyOp::Cas {
            expected: e.map(v),
            new: Some(v(n)),
            swapped: s,
        };
        let ok = [
            key(cas(None, "a", Some(true)), 0, 1, Some(2)),
            key(cas(None, "b", Some(false)), 1, 3, Some(4)),
            key(KeyOp::Delete(Some(true)), 0, 5, Some(6)),
            key(KeyOp::Delete(Some(false)), 1, 7, Some(8)),
        ];
        assert!(check_linearizable(&ok).is_ok());
        // A swap applied twice (no sessions) would answer "mismatch" to its retry.
        let dup = [
            key(cas(None, "a", Some(false)), 0, 1, Some(2)),
            key(KeyOp::Get(Some(v("a"))), 1, 3, Some(4)),
        ];
        assert!(check_linearizable(&dup).is_err());
    }

    #[test]
    fn scan_pages_read_every_key_in_their_range() {
        let mut h = vec![
            Op {
                client: 0,
                call: 1,
                ret: Some(2),
                rec: Recorded::Key {
                    key: v("p/1"),
                    op: KeyOp::Put(v("x")),
                },
            },
            Op {
                client: 0,
                call: 3,
                ret: Some(4),
                rec: Recorded::Key {
                    key: v("p/2"),
                    op: KeyOp::Put(v("y")),
                },
            },
        ];
        let page = |pairs: Vec<(Vec<u8>, Vec<u8>)>, more| Op {
            client: 1,
            call: 5,
            ret: Some(6),
            rec: Recorded::ScanPage {
                prefix: v("p/"),
                start_after: None,
                pairs,
                more,
            },
        };
        h.push(page(vec![(v("p/1"), v("x")), (v("p/2"), v("y"))], false));
        assert!(check_linearizable(&h).is_ok());
        // A page that ends early (more) says nothing about keys after it.
        h.push(page(vec![(v("p/1"), v("x"))], true));
        assert!(check_linearizable(&h).is_ok());
        // A last page that misses an acknowledged key is a violation.
        h.push(page(vec![(v("p/1"), v("x"))], false));
        assert!(check_linearizable(&h).is_err());
    }
}
