//! TinyKV's project 2 cluster scenarios, 2B and 2C (kv/test_raftstore/test_test.go), run in the
//! deterministic simulator over many seeds, with TinyKV's checks (every client's appends
//! present, in order, no duplicates) plus Raft's safety invariants after every step,
//! linearizability of the whole history, and a bounded liveness phase after every round.
//!
//! `SIM_SEEDS=N` runs N seeds per scenario (default below), `SIM_SEED_START=S` starts
//! elsewhere, `SIM_SEED=S` replays one seed. A failure prints its seed and the exact command
//! that replays it, e.g.
//! `SIM_SEED=1234 cargo test -p tinyraft-tests --test scenarios unreliable_2b -- --exact`.
//! A long sweep: `SIM_SEEDS=5000 cargo test --release -p tinyraft-tests --test scenarios`.

use tinyraft_tests::sim::client::Cmd;
use tinyraft_tests::sim::scenario::{Scenario, Sim};
use tinyraft_tests::sim::{run, sweep};

/// Seeds per scenario in a plain `cargo test` (the CI budget).
const SEEDS: u64 = 300;

fn generic(name: &'static str, clients: usize, unreliable: bool, crash: bool, partitions: bool) {
    sweep(
        &Scenario::generic(name, clients, unreliable, crash, partitions),
        SEEDS,
    );
}

#[test]
fn basic_2b() {
    generic("basic_2b", 1, false, false, false);
}

#[test]
fn concurrent_2b() {
    generic("concurrent_2b", 5, false, false, false);
}

#[test]
fn unreliable_2b() {
    generic("unreliable_2b", 5, true, false, false);
}

#[test]
fn many_partitions_one_client_2b() {
    generic("many_partitions_one_client_2b", 1, false, false, true);
}

#[test]
fn many_partitions_many_clients_2b() {
    generic("many_partitions_many_clients_2b", 5, false, false, true);
}

#[test]
fn persist_one_client_2b() {
    generic("persist_one_client_2b", 1, false, true, false);
}

#[test]
fn persist_concurrent_2b() {
    generic("persist_concurrent_2b", 5, false, true, false);
}

#[test]
fn persist_concurrent_unreliable_2b() {
    generic("persist_concurrent_unreliable_2b", 5, true, true, false);
}

#[test]
fn persist_partition_2b() {
    generic("persist_partition_2b", 5, false, true, true);
}

#[test]
fn persist_partition_unreliable_2b() {
    generic("persist_partition_unreliable_2b", 5, true, true, true);
}

fn generic_2c(name: &'static str, clients: usize, unreliable: bool, crash: bool, partitions: bool) {
    let scenario = Scenario {
        log_limit: Some(100),
        ..Scenario::generic(name, clients, unreliable, crash, partitions)
    };
    sweep(&scenario, SEEDS);
}

#[test]
fn snapshot_recover_2c() {
    generic_2c("snapshot_recover_2c", 1, false, true, false);
}

#[test]
fn snapshot_recover_many_clients_2c() {
    generic_2c("snapshot_recover_many_clients_2c", 20, false, true, false);
}

#[test]
fn snapshot_unreliable_2c() {
    generic_2c("snapshot_unreliable_2c", 5, true, false, false);
}

#[test]
fn snapshot_unreliable_recover_2c() {
    generic_2c("snapshot_unreliable_recover_2c", 5, true, true, false);
}

#[test]
fn snapshot_unreliable_recover_concurrent_partition_2c() {
    generic_2c(
        "snapshot_unreliable_recover_concurrent_partition_2c",
        5,
        true,
        true,
        true,
    );
}

/// TinyKV's OneSnapshot2C: node 1 is cut off; puts and a delete make the others compact their
/// logs past what node 1 has; after healing node 1 must catch up by snapshot (present keys
/// present, the deleted key absent), and again after a restart. The truncation bound is
/// checked every step.
fn one_snapshot(sim: &mut Sim) -> Result<(), String> {
    let put = |k: &str, v: &str| Cmd::Put(k.as_bytes().to_vec(), v.as_bytes().to_vec());
    let has = |sim: &Sim, id: u64, k: &str, v: Option<&str>| {
        sim.node_value(id, k.as_bytes()).as_deref() == v.map(str::as_bytes)
    };
    sim.run_until(100, "a first leader", |s| s.leader().is_some())?;
    sim.push_script(0, put("k1", "v1"));
    sim.push_script(0, put("k2", "v2"));
    sim.run_until(200, "the first puts", |s| s.clients[0].ops_answered == 2)?;
    sim.run_until(50, "node 1 applying them", |s| {
        has(s, 1, "k1", Some("v1")) && has(s, 1, "k2", Some("v2"))
    })?;
    sim.partition(&[vec![1], vec![2, 3]]);
    sim.push_script(0, put("k3", "v3"));
    sim.push_script(0, Cmd::Delete(b"k2".to_vec()));
    for i in 0..100 {
        sim.push_script(0, put(&format!("key{i:03}"), &format!("value{i}")));
    }
    sim.run_until(1500, "102 writes without node 1", |s| {
        s.clients[0].ops_answered == 104
    })?;
    let leader = sim.leader().ok_or("no leader")?;
    let truncated = sim.nodes[(leader - 1) as usize]
        .raw
        .as_ref()
        .map_or(0, |r| r.first_index() - 1);
    if truncated < 10 {
        return Err(format!(
            "the leader's log was not compacted (truncated at {truncated})"
        ));
    }
    if has(sim, 1, "k3", Some("v3")) {
        return Err("node 1 saw a write while cut off".into());
    }
    sim.heal();
    sim.run_until(200, "node 1 catching up", |s| {
        has(s, 1, "k3", Some("v3")) && has(s, 1, "k2", None) && has(s, 1, "key099", Some("value99"))
    })?;
    if sim.nodes[0].snapshots_restored == 0 {
        return Err("node 1 caught up without a snapshot".into());
    }
    sim.crash_and_restart(1);
    sim.run_until(200, "node 1 recovering after a restart", |s| {
        has(s, 1, "k3", Some("v3")) && has(s, 1, "k2", None) && has(s, 1, "key099", Some("value99"))
    })?;
    Ok(())
}

#[test]
fn one_snapshot_2c() {
    let scenario = Scenario {
        nodes: Some(3),
        log_limit: Some(10),
        script: Some(one_snapshot),
        check_quorum: Some(true),
        ..Scenario::generic("one_snapshot_2c", 1, false, false, false)
    };
    sweep(&scenario, SEEDS);
}

/// TinyKV's OnePartition2B: a write in the majority is invisible to the minority; after the
/// old leader is cut off into a minority, a new leader commits a changed value that the
/// minority does not see; after healing, the old leader catches up.
fn one_partition(sim: &mut Sim) -> Result<(), String> {
    let key = b"k1".to_vec();
    let put = |v: &str| Cmd::Put(key.clone(), v.as_bytes().to_vec());
    let value_is =
        |sim: &Sim, id: u64, v: &str| sim.node_value(id, &key).as_deref() == Some(v.as_bytes());
    sim.run_until(100, "a first leader", |s| s.leader().is_some())?;
    sim.push_script(0, put("v1"));
    sim.run_until(100, "the first put", |s| {
        !s.clients[0].busy() && s.clients[0].ops_answered == 1
    })?;
    let leader = sim.leader().ok_or("no leader")?;
    let mut others: Vec<u64> = sim.ids.iter().copied().filter(|&x| x != leader).collect();
    // The leader with two others in the majority; two nodes in the minority.
    let minority: Vec<u64> = others.split_off(2);
    let mut majority = others.clone();
    majority.push(leader);
    sim.run_until(50, "every node applying v1", |s| {
        s.ids.iter().all(|&id| value_is(s, id, "v1"))
    })?;
    sim.partition(&[majority.clone(), minority.clone()]);
    sim.push_script(0, put("v2"));
    sim.run_until(100, "a put in the majority", |s| {
        s.clients[0].ops_answered == 2
    })?;
    sim.run_ticks(5)?;
    for &m in &minority {
        if !value_is(sim, m, "v1") {
            return Err(format!("minority node {m} saw a write made while cut off"));
        }
    }
    // Now the old leader and one other in the minority.
    let old_leader = leader;
    let minority2 = vec![old_leader, others[0]];
    let majority2: Vec<u64> = sim
        .ids
        .iter()
        .copied()
        .filter(|x| !minority2.contains(x))
        .collect();
    sim.partition(&[minority2.clone(), majority2.clone()]);
    sim.push_script(0, put("v3"));
    sim.run_until(200, "a put after the leader was cut off", |s| {
        s.clients[0].ops_answered == 3
    })?;
    let new_leader = sim.leader().ok_or("no leader after the cut")?;
    if minority2.contains(&new_leader) {
        return Err(format!("the leader {new_leader} is in the minority"));
    }
    sim.run_until(50, "the majority applying v3", |s| {
        majority2.iter().all(|&id| value_is(s, id, "v3"))
    })?;
    for &m in &minority2 {
        if !value_is(sim, m, "v2") {
            return Err(format!("minority node {m} should still hold v2"));
        }
    }
    sim.heal();
    sim.run_until(100, "the old leader catching up", |s| {
        s.ids.iter().all(|&id| value_is(s, id, "v3"))
    })?;
    Ok(())
}

#[test]
fn one_partition_2b() {
    let scenario = Scenario {
        nodes: Some(5),
        script: Some(one_partition),
        // Without check-quorum the cut-off leader keeps leading its minority, and a client
        // that follows redirects can bounce between it and its follower forever.
        check_quorum: Some(true),
        ..Scenario::generic("one_partition_2b", 1, false, false, false)
    };
    sweep(&scenario, SEEDS);
}

/// The checks can fail: with a disk that loses *synced* entries on a crash (breaking the
/// `Storage` contract), acknowledged writes disappear, and some seed among the first few must
/// say so. Guards against a simulator that passes whatever happens.
#[test]
fn a_disk_that_loses_synced_writes_is_caught() {
    let scenario = Scenario {
        lying_disk: true,
        ..Scenario::generic("lying_disk", 5, false, true, false)
    };
    let caught = (0..40).find_map(|seed| run(&scenario, seed).err());
    let failure = caught.expect("40 seeds of a lying disk and no check noticed");
    eprintln!("caught as expected: {failure}");
    assert!(failure.replay_command().contains("SIM_SEED="));
}
