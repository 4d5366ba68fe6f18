//! Membership changes at process level, driven through the `tinyraft` binary as an operator
//! would: a 3-node cluster grows to 5 voters (`member add` of two nodes started with
//! `--join`), loses its leader (`member remove` of the leader's own id), hands leadership to
//! a new node (`transfer-leader`) and shrinks back to 3 voters (`member remove`), all while a
//! client writes without pause. Then: no acknowledged write is lost, the client was never
//! without service for an election timeout, and every remaining node's `status` shows the
//! final configuration. A second test checks that bad requests get clear errors and exit
//! codes.

use std::collections::HashMap;
use std::process::Output;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tinyraft::Role;
use tinyraft_tests::process::{tinyraft, ProcessCluster};

/// Node timing for these tests: 20 ms ticks, election timeout 50 ticks = 1 s (randomized in
/// [1 s, 2 s)), heartbeats every 2 ticks.
const TICK_MS: u64 = 20;
const ELECTION_TICKS: u64 = 50;
/// One election timeout, the base of the randomized range.
const ELECTION_TIMEOUT: Duration = Duration::from_millis(TICK_MS * ELECTION_TICKS);

fn node_args() -> Vec<String> {
    vec![
        "--tick-ms".into(),
        TICK_MS.to_string(),
        "--election-ticks".into(),
        ELECTION_TICKS.to_string(),
    ]
}

/// Runs `tinyraft ARGS --peers PEERS`; returns (exit code, stdout, stderr).
fn run(args: &[&str], peers: &str) -> (Option<i32>, String, String) {
    let mut all = args.to_vec();
    all.extend(["--peers", peers]);
    let Output {
        status,
        stdout,
        stderr,
    } = tinyraft(&all);
    (
        status.code(),
        String::from_utf8_lossy(&stdout).trim().to_string(),
        String::from_utf8_lossy(&stderr).trim().to_string(),
    )
}

/// Runs an admin command that must succeed; returns its stdout.
fn admin(cluster: &ProcessCluster, args: &[&str]) -> String {
    let t = Instant::now();
    let (code, out, err) = run(args, &cluster.peers_arg());
    assert_eq!(
        code,
        Some(0),
        "`tinyraft {}` failed:\n{out}\n{err}",
        args.join(" ")
    );
    eprintln!(
        "{:?} tinyraft {} ({:?}): {out}\n{err}",
        std::time::SystemTime::now(),
        args.join(" "),
        t.elapsed()
    );
    out
}

/// What the writer saw.
#[derive(Default)]
struct Writes {
    /// Acknowledged writes, key -> value.
    acked: HashMap<String, String>,
    /// Writes that failed (key, error).
    failed: Vec<(String, String)>,
    /// Longest time between two acknowledgements (or from the start to the first), and
    /// when it ended, measured from the writer's start.
    longest_gap: Duration,
    gap_ended_at: Duration,
}

/// One client writing fresh keys back to back until `stop`, over every node's address;
/// counts its acknowledgements in `acks`.
fn writer(
    cluster: &ProcessCluster,
    stop: Arc<AtomicBool>,
    acks: Arc<AtomicUsize>,
) -> JoinHandle<Writes> {
    let mut c = cluster.client();
    std::thread::spawn(move || {
        let mut w = Writes::default();
        let start = Instant::now();
        let mut last_ack = start;
        let mut i = 0u64;
        while !stop.load(Ordering::Relaxed) {
            let (k, v) = (format!("w{i:06}"), format!("v{i}"));
            i += 1;
            match c.put(k.as_bytes(), v.as_bytes()) {
                Ok(()) => {
                    let now = Instant::now();
                    if now - last_ack > Duration::from_millis(100) {
                        eprintln!(
                            "{:?} gap {:?}",
                            std::time::SystemTime::now(),
                            now - last_ack
                        );
                    }
                    if now - last_ack > w.longest_gap {
                        w.longest_gap = now - last_ack;
                        w.gap_ended_at = now - start;
                    }
                    last_ack = now;
                    w.acked.insert(k, v);
                    acks.fetch_add(1, Ordering::Relaxed);
                }
                Err(e) => w.failed.push((k, e.to_string())),
            }
        }
        w
    })
}

fn sorted(ids: &[u64]) -> Vec<u64> {
    let mut v = ids.to_vec();
    v.sort_unstable();
    v
}

/// Waits until some node reports itself leader; returns it.
fn leader(cluster: &ProcessCluster) -> u64 {
    cluster
        .wait_for_leader(None, Duration::from_secs(15))
        .expect("a leader within 15 s")
}

#[test]
fn grow_to_five_replace_the_leader_and_shrink_to_three_under_writes() {
    let args = node_args();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let cluster = ProcessCluster::start_with_joiners(3, 2, &args);
    let first = leader(&cluster);
    cluster.client().put(b"warm", b"up").expect("first write");

    let stop = Arc::new(AtomicBool::new(false));
    let acks = Arc::new(AtomicUsize::new(0));
    let writing = writer(&cluster, stop.clone(), acks.clone());
    std::thread::sleep(Duration::from_millis(500));

    // Grow: 3 -> 5 voters, each new node a learner first, promoted once caught up.
    let a4 = cluster.addrs[3].to_string();
    let a5 = cluster.addrs[4].to_string();
    let out = admin(&cluster, &["member", "add", "--id", "4", "--addr", &a4]);
    assert_eq!(out, "voters=1,2,3,4 learners=-");
    let out = admin(&cluster, &["member", "add", "--id", "5", "--addr", &a5]);
    assert_eq!(out, "voters=1,2,3,4,5 learners=-");
    std::thread::sleep(Duration::from_millis(300));

    // The leader removes itself: it steps down once the removal applies and hands over at
    // once (TimeoutNow), so the cluster does not wait for an election timeout.
    let l = leader(&cluster);
    let mut left: Vec<u64> = (1..=5).filter(|&i| i != l).collect();
    let out = admin(&cluster, &["member", "remove", "--id", &l.to_string()]);
    let expect: Vec<String> = left.iter().map(u64::to_string).collect();
    assert_eq!(out, format!("voters={} learners=-", expect.join(",")));
    std::thread::sleep(Duration::from_millis(300));

    // Leadership to a node that joined, then one more founder out: back to 3 voters.
    let out = admin(&cluster, &["transfer-leader", "--to", "4"]);
    assert!(out.starts_with("leader=4 term="), "{out}");
    std::thread::sleep(Duration::from_millis(300));
    let gone = *left.iter().find(|&&i| i <= 3).expect("a founder left");
    left.retain(|&i| i != gone);
    let out = admin(&cluster, &["member", "remove", "--id", &gone.to_string()]);
    let expect: Vec<String> = left.iter().map(u64::to_string).collect();
    assert_eq!(out, format!("voters={} learners=-", expect.join(",")));
    // Write on a while with the final configuration, and enough in all to mean something
    // even on a slow machine.
    std::thread::sleep(Duration::from_millis(500));
    let enough = Instant::now();
    while acks.load(Ordering::Relaxed) < 300 && enough.elapsed() < Duration::from_secs(20) {
        std::thread::sleep(Duration::from_millis(50));
    }

    stop.store(true, Ordering::Relaxed);
    let w = writing.join().expect("writer");
    eprintln!(
        "{} writes acknowledged; longest gap between acknowledgements {:?} (ended {:?} into \
         the run); first leader {first}, removed {l} then {gone}",
        w.acked.len(),
        w.longest_gap,
        w.gap_ended_at
    );
    assert!(
        w.failed.is_empty(),
        "writes failed: {:?}",
        &w.failed[..w.failed.len().min(5)]
    );
    assert!(w.acked.len() >= 300, "only {} writes", w.acked.len());
    // The bound: one election timeout (the least a follower waits before campaigning). A
    // change of leader by handover (the removed leader's TimeoutNow, or transfer-leader)
    // takes one vote round and a commit, tens of milliseconds, so the rest of the second is
    // slack for a loaded machine (scheduling, fsync stalls). A handover that failed would
    // leave the followers waiting out a randomized timeout of at least one election timeout
    // after the old leader's last heartbeat, which the last acknowledged write precedes, so
    // it cannot pass.
    assert!(
        w.longest_gap < ELECTION_TIMEOUT,
        "the client waited {:?} between two acknowledged writes (election timeout {:?})",
        w.longest_gap,
        ELECTION_TIMEOUT
    );

    // Every acknowledged write is in the final three-node cluster, read through it alone.
    let mut c = cluster.client_of(&left);
    let stored: HashMap<String, String> = c
        .scan(b"w", usize::MAX)
        .expect("scan the final cluster")
        .into_iter()
        .map(|(k, v)| (String::from_utf8(k).unwrap(), String::from_utf8(v).unwrap()))
        .collect();
    for (k, v) in &w.acked {
        assert_eq!(stored.get(k), Some(v), "acknowledged write {k} lost");
    }
    assert_eq!(c.get(b"warm").unwrap().as_deref(), Some(&b"up"[..]));

    // Every remaining node shows the final configuration, and they agree on a leader.
    let peers = cluster.peers_arg_of(&left);
    let expect_cell = format!("{:?} / [] / -", sorted(&left));
    let start = Instant::now();
    loop {
        let (code, table, _) = run(&["status"], &peers);
        assert_eq!(code, Some(0));
        let statuses: Vec<_> = left
            .iter()
            .filter_map(|&id| c.status(cluster.addrs[id as usize - 1]).ok())
            .collect();
        let agreed = statuses.len() == 3
            && statuses.iter().all(|s| {
                sorted(&s.voters) == left
                    && s.learners.is_empty()
                    && s.outgoing.is_empty()
                    && s.leader.is_some()
                    && s.leader == statuses[0].leader
            })
            && statuses.iter().filter(|s| s.role == Role::Leader).count() == 1;
        let rows_ok = table.lines().skip(1).all(|row| row.ends_with(&expect_cell));
        if agreed && rows_ok && table.lines().count() == 4 {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "the remaining nodes do not all show voters {left:?}:\n{table}\n{statuses:#?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn bad_requests_get_clear_errors_and_exit_codes() {
    let args = node_args();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let cluster = ProcessCluster::start_with_joiners(3, 1, &args);
    leader(&cluster);
    let peers = cluster.peers_arg();
    let refused = |args: &[&str], code: i32, says: &str| {
        let (got, out, err) = run(args, &peers);
        assert_eq!(
            got,
            Some(code),
            "`tinyraft {}`:\n{out}\n{err}",
            args.join(" ")
        );
        assert!(
            err.contains(says),
            "`tinyraft {}` should say `{says}`:\n{err}",
            args.join(" ")
        );
        assert!(out.is_empty(), "nothing on stdout on failure: {out}");
    };
    let node2 = cluster.addrs[1].to_string();
    let node4 = cluster.addrs[3].to_string();

    refused(
        &["member", "remove", "--id", "9"],
        3,
        "node 9 is not a member",
    );
    refused(
        &["member", "promote", "--id", "9"],
        3,
        "node 9 is not a member",
    );
    refused(
        &["member", "add", "--id", "4", "--addr", "not-an-address"],
        2,
        "--addr",
    );
    refused(
        &["member", "add", "--id", "4", "--addr", &node2],
        3,
        "is node 2's",
    );
    refused(
        &["member", "add", "--id", "4", "--addr", "0.0.0.0:7000"],
        3,
        "wildcard",
    );
    refused(
        &["transfer-leader", "--to", "4"],
        3,
        "node 4 is not a voter",
    );
    // A learner is not a voter either.
    let out = admin(
        &cluster,
        &["member", "add", "--id", "4", "--addr", &node4, "--learner"],
    );
    assert_eq!(out, "voters=1,2,3 learners=4");
    refused(
        &["transfer-leader", "--to", "4"],
        3,
        "node 4 is not a voter",
    );
    refused(
        &["member", "add", "--id", "2", "--addr", &node2, "--learner"],
        3,
        "does not demote",
    );
    // Nothing answers: the change may or may not have been made.
    let nobody = tinyraft_tests::process::free_addrs(1)[0].to_string();
    let (code, _, err) = run(
        &["member", "remove", "--id", "2", "--timeout-ms", "500"],
        &nobody,
    );
    assert_eq!(code, Some(4), "{err}");
    // None of that changed the configuration.
    let (code, table, _) = run(&["status"], &cluster.peers_arg_of(&[1, 2, 3]));
    assert_eq!(code, Some(0));
    assert_eq!(table.matches("[1, 2, 3] / [4] / -").count(), 3, "{table}");
}
