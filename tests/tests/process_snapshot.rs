//! PartC at process level: real nodes with `--compact-after 100`. One node is down during
//! 10,000 writes and catches up by snapshot over UDP when it restarts; another loses its whole
//! data directory and rejoins the same way. Logs stay bounded throughout.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tinyraft_tests::process::ProcessCluster;

const LIMIT: u64 = 100;

/// Applied entries not yet covered by a snapshot must stay within 2 × the limit on every live
/// node (TinyKV's `applied_index − truncated_index ≤ 2 × maxraftlog`).
fn check_bounded(
    cluster: &ProcessCluster,
    down: &[u64],
) -> Vec<tinyraft_std::protocol::NodeStatus> {
    let mut c = cluster.client();
    let mut out = Vec::new();
    for (i, &a) in cluster.addrs.iter().enumerate() {
        if down.contains(&(i as u64 + 1)) {
            continue;
        }
        if let Ok(s) = c.status(a) {
            let kept = s.applied.saturating_sub(s.first_index.saturating_sub(1));
            assert!(
                kept <= 2 * LIMIT,
                "node {} keeps {kept} applied entries in its log (first {}, applied {})",
                s.id,
                s.first_index,
                s.applied
            );
            out.push(s);
        }
    }
    out
}

fn wait_caught_up(
    cluster: &ProcessCluster,
    id: u64,
    limit: Duration,
) -> tinyraft_std::protocol::NodeStatus {
    let mut c = cluster.client();
    let start = Instant::now();
    loop {
        let leader_commit = cluster
            .addrs
            .iter()
            .filter_map(|&a| c.status(a).ok())
            .filter(|s| s.role == tinyraft::Role::Leader)
            .map(|s| s.commit)
            .max()
            .unwrap_or(0);
        if let Ok(s) = c.status(cluster.addrs[id as usize - 1]) {
            if leader_commit > 0 && s.applied >= leader_commit {
                return s;
            }
        }
        if start.elapsed() >= limit {
            let all: Vec<String> = cluster
                .addrs
                .iter()
                .map(|&a| c.status(a).map(|s| format!("{s:?}")).unwrap_or_default())
                .collect();
            let tail = |id: u64| {
                let log = cluster.node_log(id);
                let lines: Vec<&str> = log.lines().collect();
                lines[lines.len().saturating_sub(40)..].join("\n")
            };
            panic!(
                "node {id} did not catch up within {limit:?}\n{all:#?}\n--- node {id}\n{}\n--- node 1\n{}",
                tail(id),
                tail(1)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn dir_bytes(dir: &std::path::Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .filter_map(|e| e.metadata().ok())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

#[test]
fn down_and_wiped_nodes_catch_up_by_snapshot_with_bounded_logs() {
    let args = [
        "--compact-after",
        &LIMIT.to_string(),
        "--segment-bytes",
        "65536",
    ];
    let mut cluster = ProcessCluster::start(3, &args);
    let leader = cluster
        .wait_for_leader(None, Duration::from_secs(10))
        .expect("leader");
    let down = if leader == 3 { 2 } else { 3 };
    cluster.kill(down);

    // 10,000 writes from 8 clients; the live nodes' logs are checked while they run.
    let acked: Arc<Mutex<HashMap<String, String>>> = Arc::default();
    let writers: Vec<_> = (0..8)
        .map(|w| {
            let mut c = cluster.client();
            let acked = acked.clone();
            std::thread::spawn(move || {
                for i in 0..1250 {
                    let (k, v) = (format!("w{w}-k{}", i % 300), format!("{i:0>100}"));
                    c.put(k.as_bytes(), v.as_bytes())
                        .expect("write with one node down");
                    acked.lock().unwrap().insert(k, v);
                }
            })
        })
        .collect();
    let mut biggest_dir = 0;
    while !writers.iter().all(|w| w.is_finished()) {
        check_bounded(&cluster, &[down]);
        biggest_dir = biggest_dir.max(dir_bytes(&cluster.data_dir(leader)));
        std::thread::sleep(Duration::from_millis(100));
    }
    for w in writers {
        w.join().expect("writer");
    }
    // 10,000 puts of ~40 bytes each would be well over 1 MB of log without compaction.
    assert!(
        biggest_dir < 1_000_000,
        "leader's data dir reached {biggest_dir} bytes"
    );

    // The node that was down restarts and catches up: it is too far behind for the log.
    cluster.start_node(down);
    let s = wait_caught_up(&cluster, down, Duration::from_secs(60));
    assert!(
        s.first_index > 1,
        "node {down} caught up through a snapshot (first index {})",
        s.first_index
    );

    // Another follower loses its data directory entirely and rejoins.
    let wiped = (1..=3).find(|&i| i != leader && i != down).unwrap_or(down);
    cluster.kill(wiped);
    std::fs::remove_dir_all(cluster.data_dir(wiped)).unwrap();
    cluster.start_node(wiped);
    let s = wait_caught_up(&cluster, wiped, Duration::from_secs(60));
    assert!(
        s.first_index > 1,
        "wiped node {wiped} caught up through a snapshot"
    );
    let all = check_bounded(&cluster, &[]);
    let keys = acked.lock().unwrap().len() as u64;
    for st in &all {
        assert_eq!(
            st.keys, keys,
            "node {} holds {} keys, {keys} were written",
            st.id, st.keys
        );
    }

    // The wiped node serves every key: stop the leader, so the wiped node is in every
    // majority that can answer.
    let current = cluster
        .wait_for_leader(None, Duration::from_secs(10))
        .expect("leader");
    if current != wiped {
        cluster.kill(current);
        cluster
            .wait_for_leader(Some(current), Duration::from_secs(10))
            .expect("new leader");
    }
    let mut c = cluster.client();
    for (k, v) in acked.lock().unwrap().iter() {
        assert_eq!(
            c.get(k.as_bytes()).expect("read").as_deref(),
            Some(v.as_bytes()),
            "key {k}"
        );
    }
}
