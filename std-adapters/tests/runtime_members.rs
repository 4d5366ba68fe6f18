//! Membership through the node runtime, in one process: [`NodeRuntime`]s on threads, a
//! [`KvClient`] administering them.
//!
//! - A change of two voters goes through a joint configuration, and the client is answered
//!   only once the cluster has left it (`ClientReply::Members` is never joint).
//! - Nodes started with only the original three addresses learn the added nodes' addresses
//!   from the configuration entries, so a node added later can lead them.
//! - A joining node restarted with different flags keeps the configuration on its disk.

use std::net::{SocketAddr, UdpSocket};
use std::path::Path;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tinyraft::{ConfChange, NodeId, Role};
use tinyraft_std::protocol::NodeStatus;
use tinyraft_std::runtime::members::ADDRESS_BOOK_FILE;
use tinyraft_std::sync::Shutdown;
use tinyraft_std::{
    ClientError, ClusterKey, KvClient, MembersOutcome, NodeOptions, NodeRuntime, RuntimeError,
};

fn free_addrs(n: usize) -> Vec<SocketAddr> {
    let socks: Vec<UdpSocket> = (0..n)
        .map(|_| UdpSocket::bind("127.0.0.1:0").unwrap())
        .collect();
    socks.iter().map(|s| s.local_addr().unwrap()).collect()
}

struct Running {
    stop: Shutdown,
    thread: JoinHandle<Result<(), RuntimeError>>,
}

fn start(id: NodeId, peers: &[(NodeId, SocketAddr)], join: bool, dir: &Path) -> Running {
    let mut opts = NodeOptions::new(
        id,
        peers.to_vec(),
        dir.join(format!("n{id}")),
        ClusterKey::insecure_demo(),
    );
    opts.keys_max = 1024;
    opts.tick = Duration::from_millis(10);
    opts.join = join;
    let rt = NodeRuntime::open(opts).unwrap();
    Running {
        stop: rt.shutdown_handle(),
        thread: std::thread::spawn(move || rt.run()),
    }
}

fn stop(r: Running) {
    r.stop.request();
    r.thread.join().unwrap().unwrap();
}

fn client(addrs: &[SocketAddr]) -> KvClient {
    let mut c = KvClient::new(
        addrs.to_vec(),
        ClusterKey::insecure_demo(),
        0x7469_6e79_7261_6674,
    )
    .unwrap();
    c.attempt_timeout = Duration::from_millis(200);
    c.op_timeout = Duration::from_secs(10);
    c
}

fn status_of(c: &mut KvClient, addr: SocketAddr) -> NodeStatus {
    c.status(addr).expect("status")
}

fn wait_until(what: &str, limit: Duration, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < limit, "{what}: not within {limit:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn joint_change_answers_after_leaving_and_addresses_travel_with_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let addrs = free_addrs(5);
    let all: Vec<(NodeId, SocketAddr)> = (1..=5).map(|i| (i, addrs[i as usize - 1])).collect();
    let mut nodes: Vec<Option<Running>> = Vec::new();
    for id in 1..=3 {
        nodes.push(Some(start(id, &all[..3], false, dir.path())));
    }
    for id in 4..=5 {
        nodes.push(Some(start(id, &all, true, dir.path())));
    }
    let mut c = client(&addrs);
    c.put(b"before", b"1").unwrap();

    // Nodes 4 and 5 in, 1 and 2 out, in one change: three voters change, so it is joint.
    let changes = [
        ConfChange::AddVoter(4),
        ConfChange::AddVoter(5),
        ConfChange::Remove(1),
        ConfChange::Remove(2),
    ];
    let addrs45 = [(4, addrs[3]), (5, addrs[4])];
    let outcome = c.change_members(&changes, &addrs45).expect("change");
    let MembersOutcome::Applied { members, .. } = outcome else {
        panic!("{outcome:?}");
    };
    assert_eq!(members.voters, vec![3, 4, 5]);
    assert!(
        members.outgoing.is_empty(),
        "answered while joint: {members}"
    );
    let view = c.leader_view().expect("leader view");
    assert_eq!(view.members, members);

    // Asking again changes nothing and says so.
    assert_eq!(
        c.change_members(&changes[..1], &[]).unwrap(),
        MembersOutcome::AlreadySo
    );

    // Node 3 was started knowing only 1..3: it learned 4's and 5's addresses from the log,
    // and wrote them down.
    let book = std::fs::read_to_string(dir.path().join("n3").join(ADDRESS_BOOK_FILE)).unwrap();
    assert!(
        book.contains(&format!("4={}", addrs[3])) && book.contains(&format!("5={}", addrs[4])),
        "{book}"
    );
    // So a new leader among 4 and 5 can lead it: hand over to 4, then write.
    c.transfer_leader(4).expect("transfer");
    wait_until("node 4 leads", Duration::from_secs(10), || {
        status_of(&mut c, addrs[3]).role == Role::Leader
    });
    c.put(b"after", b"2").unwrap();
    wait_until("node 3 applies the write", Duration::from_secs(10), || {
        let s3 = status_of(&mut c, addrs[2]);
        s3.leader == Some(4) && s3.applied >= status_of(&mut c, addrs[3]).commit
    });

    // Refusals are definite and say why.
    let e = c.change_members(&[ConfChange::Remove(9)], &[]).unwrap_err();
    assert!(
        matches!(e, ClientError::Refused { .. }) && e.is_definite() && e.code() == "not_member",
        "{e:?}"
    );
    let e = c
        .change_members(&[ConfChange::AddLearner(6)], &[])
        .unwrap_err();
    assert!(e.to_string().contains("no address"), "{e}");
    let e = c
        .change_members(&[ConfChange::AddLearner(6)], &[(6, addrs[2])])
        .unwrap_err();
    assert!(e.to_string().contains("node 3's"), "{e}");
    let e = c.transfer_leader(1).unwrap_err();
    assert!(e.to_string().contains("not a voter"), "{e}");

    // Node 5 restarts with --peers naming only itself and without `join`: it keeps the
    // configuration on its disk (it does not become a one-node cluster) and finds the others
    // through its address book.
    stop(nodes[4].take().unwrap());
    nodes[4] = Some(start(5, &all[4..], false, dir.path()));
    wait_until("node 5 follows 4 again", Duration::from_secs(10), || {
        let s = status_of(&mut c, addrs[4]);
        let mut voters = s.voters.to_vec();
        voters.sort_unstable();
        s.leader == Some(4) && voters == [3, 4, 5]
    });
    assert_eq!(c.get(b"before").unwrap().as_deref(), Some(&b"1"[..]));
    assert_eq!(c.get(b"after").unwrap().as_deref(), Some(&b"2"[..]));
    for n in nodes.into_iter().flatten() {
        stop(n);
    }
}
