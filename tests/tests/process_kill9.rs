//! Process-level tests: real `tinyraft node` processes on loopback, killed with SIGKILL.

use std::collections::HashMap;
use std::time::Duration;

use tinyraft_tests::process::ProcessCluster;

/// A 3-node cluster survives kill -9 of its leader: writes continue after re-election, and
/// after the old leader restarts from its data directory, every acknowledged write is read
/// back — from the cluster and from the restarted node once it leads.
#[test]
fn leader_kill9_loses_no_acknowledged_write() {
    let mut cluster = ProcessCluster::start(3, &[]);
    let first = cluster
        .wait_for_leader(None, Duration::from_secs(10))
        .expect("a leader within 10 s");
    let mut c = cluster.client();
    let mut acked: HashMap<String, String> = HashMap::new();
    for i in 0..300 {
        let (k, v) = (format!("k{}", i % 97), format!("v{i}"));
        c.put(k.as_bytes(), v.as_bytes())
            .expect("write before the kill");
        acked.insert(k, v);
    }

    cluster.kill(first);
    let second = cluster
        .wait_for_leader(Some(first), Duration::from_secs(10))
        .expect("a new leader after kill -9");
    assert_ne!(first, second);
    for i in 300..600 {
        let (k, v) = (format!("k{}", i % 97), format!("v{i}"));
        c.put(k.as_bytes(), v.as_bytes())
            .expect("write after re-election");
        acked.insert(k, v);
    }

    cluster.start_node(first);
    // Let the restarted node catch up, then make it matter: kill the current leader too,
    // so the restarted node is in every possible majority that elects the next one.
    std::thread::sleep(Duration::from_millis(800));
    cluster.kill(second);
    let third = cluster
        .wait_for_leader(Some(second), Duration::from_secs(10))
        .expect("a leader among the two survivors");
    for (k, v) in &acked {
        let got = c.get(k.as_bytes()).expect("read");
        assert_eq!(
            got.as_deref(),
            Some(v.as_bytes()),
            "key {k} lost (leaders {first}->{second}->{third})\nnode log:\n{}",
            cluster.node_log(first)
        );
    }
}

/// SIGTERM stops a node cleanly (exit status 0), and it restarts from its data directory.
#[test]
fn sigterm_shuts_down_cleanly_and_restart_recovers() {
    let mut cluster = ProcessCluster::start(3, &[]);
    cluster
        .wait_for_leader(None, Duration::from_secs(10))
        .expect("a leader");
    let mut c = cluster.client();
    c.put(b"x", b"1").expect("write");
    for id in 1..=3 {
        let status = cluster.terminate(id).expect("node was running");
        assert!(
            status.success(),
            "node {id} exit status {status:?}\n{}",
            cluster.node_log(id)
        );
    }
    for id in 1..=3 {
        cluster.start_node(id);
    }
    cluster
        .wait_for_leader(None, Duration::from_secs(10))
        .expect("a leader after a full restart");
    assert_eq!(c.get(b"x").expect("read").as_deref(), Some(&b"1"[..]));
}
