//! Real `tinyraft node` processes on loopback, for process-level tests.

use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use tinyraft::Role;
use tinyraft_std::{ClusterKey, KvClient};

/// The cluster id the binary uses by default.
pub const CLUSTER_ID: u64 = 0x7469_6e79_7261_6674;

/// Path of the `tinyraft` binary, built once (same profile as the tests) if it is not there.
///
/// `cargo test` builds a package's binaries only for that package's own integration tests, so
/// this package asks cargo for the binary itself; cargo releases its build lock before it
/// runs tests, so the nested build does not wait on the outer one.
pub fn tinyraft_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let exe = std::env::current_exe().expect("test executable path");
        // target/<profile>/deps/<test> -> target/<profile>
        let profile_dir = exe
            .parent()
            .and_then(Path::parent)
            .expect("target dir")
            .to_path_buf();
        let bin = profile_dir.join("tinyraft");
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut cmd = Command::new(cargo);
        cmd.args(["build", "-p", "tinyraft-cli", "--bin", "tinyraft"]);
        if profile_dir.file_name().is_some_and(|n| n == "release") {
            cmd.arg("--release");
        }
        let status = cmd
            .status()
            .expect("run cargo build for the tinyraft binary");
        assert!(status.success(), "building the tinyraft binary failed");
        assert!(bin.exists(), "no binary at {}", bin.display());
        bin
    })
}

/// UDP ports free right now on loopback.
pub fn free_addrs(n: usize) -> Vec<SocketAddr> {
    let socks: Vec<UdpSocket> = (0..n)
        .map(|_| UdpSocket::bind("127.0.0.1:0").expect("bind"))
        .collect();
    socks
        .iter()
        .map(|s| s.local_addr().expect("addr"))
        .collect()
}

/// Runs the `tinyraft` binary to completion with `args`.
pub fn tinyraft(args: &[&str]) -> Output {
    Command::new(tinyraft_bin())
        .args(args)
        .output()
        .expect("run tinyraft")
}

/// A cluster of node processes sharing a temporary directory.
pub struct ProcessCluster {
    /// Node `i + 1` listens on `addrs[i]`.
    pub addrs: Vec<SocketAddr>,
    /// Nodes `1..=founders` start the cluster (their `--peers` lists just them); the others
    /// are started with `--join` and every address.
    founders: usize,
    dir: tempfile::TempDir,
    children: Vec<Option<Child>>,
    extra_args: Vec<String>,
}

impl ProcessCluster {
    /// Starts `n` nodes.
    pub fn start(n: usize, extra_args: &[&str]) -> Self {
        Self::start_with_joiners(n, 0, extra_args)
    }

    /// Starts a cluster of `founders` nodes, and `joiners` more nodes (ids after theirs)
    /// with `--join`, waiting to be added.
    pub fn start_with_joiners(founders: usize, joiners: usize, extra_args: &[&str]) -> Self {
        let n = founders + joiners;
        let mut c = Self {
            founders,
            addrs: free_addrs(n),
            dir: tempfile::Builder::new()
                .prefix("tinyraft-proc-")
                .tempdir()
                .expect("tempdir"),
            children: (0..n).map(|_| None).collect(),
            extra_args: extra_args.iter().map(|s| s.to_string()).collect(),
        };
        for id in 1..=n as u64 {
            c.start_node(id);
        }
        c
    }

    /// Every node's `ID=HOST:PORT`, joiners included: the `--peers` of clients.
    pub fn peers_arg(&self) -> String {
        self.peers_arg_of(&(1..=self.addrs.len() as u64).collect::<Vec<_>>())
    }

    /// The `--peers` of the given nodes only.
    pub fn peers_arg_of(&self, ids: &[u64]) -> String {
        let v: Vec<String> = ids
            .iter()
            .map(|&id| format!("{id}={}", self.addrs[id as usize - 1]))
            .collect();
        v.join(",")
    }

    /// The `--peers` node `id` is started with: a founder knows the founders, a joiner every
    /// node (as an operator would give it).
    fn node_peers_arg(&self, id: u64) -> String {
        if id as usize <= self.founders {
            self.peers_arg_of(&(1..=self.founders as u64).collect::<Vec<_>>())
        } else {
            self.peers_arg()
        }
    }

    /// The data directory of node `id`.
    pub fn data_dir(&self, id: u64) -> PathBuf {
        self.dir.path().join(format!("node{id}"))
    }

    /// Starts (or restarts) node `id` with its data directory.
    pub fn start_node(&mut self, id: u64) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join(format!("node{id}.log")))
            .expect("log file");
        let join = (id as usize > self.founders).then_some("--join");
        let child = Command::new(tinyraft_bin())
            .arg("node")
            .args(["--id", &id.to_string(), "--peers", &self.node_peers_arg(id)])
            .args(join)
            .arg("--data-dir")
            .arg(self.data_dir(id))
            .args(&self.extra_args)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn tinyraft node");
        self.children[id as usize - 1] = Some(child);
    }

    /// kill -9 node `id`.
    pub fn kill(&mut self, id: u64) {
        if let Some(mut c) = self.children[id as usize - 1].take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Sends SIGTERM to node `id` and waits for it to exit; returns its exit status.
    pub fn terminate(&mut self, id: u64) -> Option<std::process::ExitStatus> {
        let mut c = self.children[id as usize - 1].take()?;
        let _ = Command::new("kill")
            .args(["-TERM", &c.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(s)) = c.try_wait() {
                return Some(s);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = c.kill();
        c.wait().ok()
    }

    /// A client of the whole cluster.
    pub fn client(&self) -> KvClient {
        self.client_of(&(1..=self.addrs.len() as u64).collect::<Vec<_>>())
    }

    /// A client that knows only the given nodes.
    pub fn client_of(&self, ids: &[u64]) -> KvClient {
        let addrs = ids.iter().map(|&id| self.addrs[id as usize - 1]).collect();
        let mut c =
            KvClient::new(addrs, ClusterKey::insecure_demo(), CLUSTER_ID).expect("client socket");
        c.attempt_timeout = Duration::from_millis(150);
        c.op_timeout = Duration::from_secs(10);
        c
    }

    /// Waits until a node other than `not` reports itself leader; returns its id.
    pub fn wait_for_leader(&self, not: Option<u64>, limit: Duration) -> Option<u64> {
        let mut c = self.client();
        let start = Instant::now();
        while start.elapsed() < limit {
            for &a in &self.addrs {
                if let Ok(s) = c.status(a) {
                    if s.role == Role::Leader && Some(s.id) != not {
                        return Some(s.id);
                    }
                }
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        None
    }

    /// What node `id` wrote to its log so far (stderr), for failure messages.
    pub fn node_log(&self, id: u64) -> String {
        std::fs::read_to_string(self.dir.path().join(format!("node{id}.log"))).unwrap_or_default()
    }
}

impl Drop for ProcessCluster {
    fn drop(&mut self) {
        for id in 1..=self.children.len() as u64 {
            self.kill(id);
        }
    }
}
