//! TinyKV's project 3B membership scenarios (kv/test_raftstore/test_test.go:
//! `TestBasicConfChange3B`, `TestConfChangeRemoveLeader3B`, and `GenericTest` with
//! `confchange` on: `TestConfChangeRecover3B`, `...RecoverManyClients3B`, `...Unreliable3B`,
//! `...UnreliableRecover3B`, `...SnapshotUnreliableRecover3B`,
//! `...SnapshotUnreliableRecoverConcurrentPartition3B`) in the deterministic simulator, over
//! many seeds.
//!
//! Up to 5 node slots; 3 start as the cluster and the others join when a change adds them. A
//! configuration changer (`tinyraft_tests::sim::membership`) adds learners and voters,
//! promotes, demotes and removes nodes (the leader too), one voter at a time or several
//! through joint consensus, while clients run TinyKV's workload under the scenario's faults.
//! Removed nodes run on for a while, then are retired; one comes back only with a wiped disk.
//! On top of the simulator's checks after every step (one leader per term over the whole run,
//! log matching, leader completeness, state machine safety, monotonic indexes) every step
//! checks that a node's configuration is the one its applied index implies (it changes only by
//! applying entries), that only voters lead or campaign, and that a node outside every
//! configuration receives no entry. A run ends with every member on the same configuration and
//! the same state, and a linearizable history.
//!
//! `SIM_SEEDS=N` runs N seeds per scenario, `SIM_SEED_START=S` starts elsewhere, `SIM_SEED=S`
//! replays one seed; a failure prints the command that replays it, e.g.
//! `SIM_SEED=7 cargo test -p tinyraft-tests --test conf_change conf_change_unreliable_3b -- --exact`.
//! A long sweep: `SIM_SEEDS=2000 cargo test --release -p tinyraft-tests --test conf_change`.

use tinyraft::{ConfChange, ConfChangeMode, NodeId};
use tinyraft_tests::sim::client::Cmd;
use tinyraft_tests::sim::membership::ConfChangePlan;
use tinyraft_tests::sim::scenario::{Scenario, Sim};
use tinyraft_tests::sim::{run, sweep};

use ConfChange::{AddLearner, AddVoter, Remove};

/// Seeds per scenario in a plain `cargo test` (the CI budget).
const SEEDS: u64 = 600;

/// TinyKV's `GenericTest` with `confchange`: 3 rounds of 100 ticks with random changes that
/// keep at least `voters_min` voters.
fn generic_3b(
    name: &'static str,
    clients: usize,
    unreliable: bool,
    crash: bool,
    partitions: bool,
    log_limit: Option<u64>,
    voters_min: usize,
) -> Scenario {
    Scenario {
        conf_change: Some(ConfChangePlan::random(voters_min)),
        log_limit,
        test_file: "conf_change",
        ..Scenario::generic(name, clients, unreliable, crash, partitions)
    }
}

#[test]
fn conf_change_recover_3b() {
    let s = generic_3b("conf_change_recover_3b", 1, false, true, false, None, 1);
    sweep(&s, SEEDS);
}

#[test]
fn conf_change_recover_many_clients_3b() {
    let s = generic_3b(
        "conf_change_recover_many_clients_3b",
        20,
        false,
        true,
        false,
        None,
        2,
    );
    sweep(&s, SEEDS / 4);
}

#[test]
fn conf_change_unreliable_3b() {
    let s = generic_3b("conf_change_unreliable_3b", 5, true, false, false, None, 1);
    sweep(&s, SEEDS);
}

#[test]
fn conf_change_unreliable_recover_3b() {
    let s = generic_3b(
        "conf_change_unreliable_recover_3b",
        5,
        true,
        true,
        false,
        None,
        2,
    );
    sweep(&s, SEEDS);
}

#[test]
fn conf_change_snapshot_unreliable_recover_3b() {
    let name = "conf_change_snapshot_unreliable_recover_3b";
    sweep(&generic_3b(name, 5, true, true, false, Some(100), 1), SEEDS);
}

#[test]
fn conf_change_snapshot_unreliable_recover_concurrent_partition_3b() {
    let name = "conf_change_snapshot_unreliable_recover_concurrent_partition_3b";
    sweep(&generic_3b(name, 5, true, true, true, Some(100), 3), SEEDS);
}

// ----- scripted scenarios -----------------------------------------------------------------

/// A scripted scenario on 5 slots that all start as voters, without faults.
fn scripted(name: &'static str, script: fn(&mut Sim) -> Result<(), String>) -> Scenario {
    Scenario {
        conf_change: Some(ConfChangePlan {
            slots: Some(5),
            initial_voters: 5,
            voters_min: 1,
            voters_max: 5,
            random: false,
            careless_id_reuse: false,
        }),
        script: Some(script),
        test_file: "conf_change",
        ..Scenario::generic(name, 1, false, false, false)
    }
}

/// Ticks allowed per scripted step.
const STEP_TICKS: u64 = 300;

fn change(sim: &mut Sim, changes: &[ConfChange]) -> Result<(), String> {
    sim.change_configuration(changes, ConfChangeMode::Auto, STEP_TICKS)
}

fn put(sim: &mut Sim, key: &str, value: &str) -> Result<(), String> {
    let done = sim.clients[0].ops_answered + 1;
    let cmd = Cmd::Put(key.as_bytes().to_vec(), value.as_bytes().to_vec());
    sim.push_script(0, cmd);
    sim.run_until(STEP_TICKS, &format!("put {key}"), |s| {
        s.clients[0].ops_answered == done && !s.clients[0].busy()
    })
}

fn get(sim: &mut Sim, key: &str) -> Result<(), String> {
    let done = sim.clients[0].ops_answered + 1;
    sim.push_script(0, Cmd::Get(key.as_bytes().to_vec()));
    sim.run_until(STEP_TICKS, &format!("get {key}"), |s| {
        s.clients[0].ops_answered == done && !s.clients[0].busy()
    })
}

/// Waits until node `id` holds `key` = `value` (None: absent) in its state machine.
fn node_has(sim: &mut Sim, id: NodeId, key: &str, value: Option<&str>) -> Result<(), String> {
    let what = format!("node {id} holding {key} = {value:?}");
    sim.run_until(100, &what, |s| {
        s.node_value(id, key.as_bytes()).as_deref() == value.map(str::as_bytes)
    })
}

/// Checks that node `id` does not hold `key`, after giving it time to hear of it.
fn node_lacks(sim: &mut Sim, id: NodeId, key: &str) -> Result<(), String> {
    sim.run_ticks(20)?;
    match sim.node_value(id, key.as_bytes()) {
        None => Ok(()),
        Some(v) => Err(format!(
            "node {id} holds {key} = {:?}, written after it left the cluster",
            String::from_utf8_lossy(&v)
        )),
    }
}

/// TinyKV's TestBasicConfChange3B: shrink to node 1 alone, grow back node by node, replace
/// nodes, and check which nodes see which writes. A node comes back with a wiped disk and a new
/// id (TinyKV's `NewPeer(2, 4)`), catching up from the leader. Then, beyond TinyKV, a learner
/// is added and promoted, and two voters come in while one leaves, at once (joint).
fn basic_conf_change(sim: &mut Sim) -> Result<(), String> {
    sim.run_until(100, "a first leader", |s| s.leader().is_some())?;
    sim.transfer_leader(1, STEP_TICKS)?;
    for id in 2..=5 {
        change(sim, &[Remove(id)])?;
    }
    put(sim, "k1", "v1")?;
    node_lacks(sim, 2, "k1")?;

    let n2 = sim.replace_node(2, STEP_TICKS)?;
    change(sim, &[AddVoter(n2)])?;
    put(sim, "k2", "v2")?;
    get(sim, "k2")?;
    node_has(sim, n2, "k1", Some("v1"))?;
    node_has(sim, n2, "k2", Some("v2"))?;
    node_lacks(sim, 5, "k1")?;

    let n3 = sim.replace_node(3, STEP_TICKS)?;
    change(sim, &[AddVoter(n3)])?;
    change(sim, &[Remove(n2)])?;
    put(sim, "k3", "v3")?;
    get(sim, "k3")?;
    for (k, v) in [("k1", "v1"), ("k2", "v2"), ("k3", "v3")] {
        node_has(sim, n3, k, Some(v))?;
    }
    node_lacks(sim, n2, "k3")?;

    let n2 = sim.replace_node(n2, STEP_TICKS)?;
    change(sim, &[AddVoter(n2)])?;
    for (k, v) in [("k1", "v1"), ("k2", "v2"), ("k3", "v3")] {
        node_has(sim, n2, k, Some(v))?;
    }

    change(sim, &[Remove(n2)])?;
    let n2 = sim.replace_node(n2, STEP_TICKS)?;
    change(sim, &[AddVoter(n2)])?;
    change(sim, &[Remove(n3)])?;
    put(sim, "k4", "v4")?;
    node_has(sim, n2, "k1", Some("v1"))?;
    node_has(sim, n2, "k4", Some("v4"))?;
    node_lacks(sim, n3, "k4")?;

    // A learner gets the data without voting, then is promoted; then two voters in and one
    // out at once (a joint configuration, left automatically).
    let n4 = sim.replace_node(4, STEP_TICKS)?;
    change(sim, &[AddLearner(n4)])?;
    put(sim, "k5", "v5")?;
    node_has(sim, n4, "k5", Some("v5"))?;
    change(sim, &[AddVoter(n4)])?;
    let n3 = sim.replace_node(n3, STEP_TICKS)?;
    let n5 = sim.replace_node(5, STEP_TICKS)?;
    change(sim, &[AddVoter(n3), AddVoter(n5), Remove(n2)])?;
    put(sim, "k6", "v6")?;
    for id in [1, n3, n4, n5] {
        node_has(sim, id, "k6", Some("v6"))?;
    }
    node_lacks(sim, n2, "k6")?;
    Ok(())
}

#[test]
fn basic_conf_change_3b() {
    sweep(
        &scripted("basic_conf_change_3b", basic_conf_change),
        SEEDS / 4,
    );
}

/// The voters of the leader's configuration other than the leader.
fn other_voters(sim: &Sim) -> Vec<NodeId> {
    let Some(raw) = sim.leader_node() else {
        return Vec::new();
    };
    let m = raw.membership();
    m.voters
        .iter()
        .copied()
        .filter(|&v| v != raw.id())
        .collect()
}

/// TinyKV's TestConfChangeRemoveLeader3B: remove the leader, write, check it did not see the
/// write; add it back (wiped, new id), make it lead, write; remove it again while it leads;
/// then, beyond TinyKV, replace the leader and another voter at once (joint), and demote the
/// leader to a learner.
fn remove_leader(sim: &mut Sim) -> Result<(), String> {
    sim.run_until(100, "a first leader", |s| s.leader().is_some())?;
    sim.transfer_leader(1, STEP_TICKS)?;
    change(sim, &[Remove(1)])?;
    put(sim, "k0", "v0")?;
    node_lacks(sim, 1, "k0")?;

    let n1 = sim.replace_node(1, STEP_TICKS)?;
    change(sim, &[AddVoter(n1)])?;
    sim.transfer_leader(n1, STEP_TICKS)?;
    put(sim, "k1", "v1")?;
    node_has(sim, n1, "k0", Some("v0"))?;
    node_has(sim, n1, "k1", Some("v1"))?;

    change(sim, &[Remove(n1)])?;
    put(sim, "k2", "v2")?;
    node_lacks(sim, n1, "k2")?;
    node_has(sim, 2, "k2", Some("v2"))?;

    // The leader and one more voter out, node 1 (wiped) in, all at once.
    let leader = sim.leader().ok_or("no leader")?;
    let other = other_voters(sim)[0];
    let n1 = sim.replace_node(n1, STEP_TICKS)?;
    sim.change_configuration(
        &[Remove(leader), Remove(other), AddVoter(n1)],
        ConfChangeMode::Auto,
        STEP_TICKS,
    )?;
    put(sim, "k3", "v3")?;
    node_has(sim, n1, "k3", Some("v3"))?;
    node_lacks(sim, leader, "k3")?;

    // Demote the leader to a learner (a joint change by request): it steps down, keeps
    // receiving the log, and never leads again as a learner.
    let leader = sim.leader().ok_or("no leader")?;
    sim.change_configuration(&[AddLearner(leader)], ConfChangeMode::Joint, STEP_TICKS)?;
    put(sim, "k4", "v4")?;
    node_has(sim, leader, "k4", Some("v4"))?;
    if sim.leader() == Some(leader) {
        return Err(format!("node {leader} still leads as a learner"));
    }
    Ok(())
}

#[test]
fn conf_change_remove_leader_3b() {
    sweep(
        &scripted("conf_change_remove_leader_3b", remove_leader),
        SEEDS / 4,
    );
}

/// The checks can fail: an operator who re-adds a removed node under its old id with a wiped
/// disk, while logs still hold configurations that counted the old node, breaks Raft's
/// assumptions (the new node replays those configurations as its own, and may elect itself
/// in one where it was the only voter). Some seed among the first 200 must be caught (seed
/// 76 is, by State Machine Safety).
#[test]
fn careless_id_reuse_is_caught() {
    let scenario = Scenario {
        conf_change: Some(ConfChangePlan {
            careless_id_reuse: true,
            ..ConfChangePlan::random(1)
        }),
        test_file: "conf_change",
        ..Scenario::generic("careless_id_reuse", 5, true, false, false)
    };
    let caught = (0..200).find_map(|seed| run(&scenario, seed).err());
    let failure = caught.expect("200 seeds of careless id reuse and no check noticed");
    eprintln!("caught as expected: {failure}");
    assert!(failure.replay_command().contains("SIM_SEED="));
}
