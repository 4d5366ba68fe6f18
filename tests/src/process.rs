//! Real `tinyraft node` processes on loopback, for process-level tests.

use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
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

/// A cluster of node processes sharing a temporary directory.
pub struct ProcessCluster {
    /// Node `i + 1` listens on `addrs[i]`.
    pub addrs: Vec<SocketAddr>,
    dir: tempfile::TempDir,
    children: Vec<Option<Child>>,
    extra_args: Vec<String>,
}

impl ProcessCluster {
    /// Starts `n` nodes.
    pub fn start(n: usize, extra_args: &[&str]) -> Self {
        let mut c = Self {
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

    /// The `--peers` argument of the nodes.
    pub fn peers_arg(&self) -> String {
        let v: Vec<String> = self
            .addrs
            .iter()
            .enumerate()
            .map(|(i, a)| format!("{}={a}", i + 1))
            .collect();
        v.join(",")
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
        let child = Command::new(tinyraft_bin())
            .arg("node")
            .args(["--id", &id.to_string(), "--peers", &self.peers_arg()])
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
        let mut c = KvClient::new(self.addrs.clone(), ClusterKey::insecure_demo(), CLUSTER_ID)
            .expect("client socket");
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
