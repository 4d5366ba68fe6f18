//! Command-line arguments.

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use tinyraft::NodeId;

/// The cluster id used when none is given (the bytes of "tinyraft").
pub(crate) const CLUSTER_ID_DEFAULT: u64 = 0x7469_6e79_7261_6674;

#[derive(Parser, Debug)]
#[command(
    name = "tinyraft",
    version,
    about = "A small Raft-replicated key-value store"
)]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub(crate) cmd: Cmd,
}

#[derive(Subcommand, Debug)]
pub(crate) enum Cmd {
    /// Run one node of a cluster.
    Node(NodeArgs),
    /// Start a 3-node cluster on loopback, run a workload, kill the leader midway, verify.
    Demo(DemoArgs),
    /// Line mode for scripts: one command per stdin line, one JSON object per stdout line.
    Client(ClientArgs),
    /// Show each node's role, term, commit and applied index.
    Status(ClientArgs),
    /// Read a key (exit 1 if absent).
    Get {
        /// The key.
        key: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Set a key.
    Put {
        /// The key.
        key: String,
        /// The value.
        value: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Remove a key.
    Delete {
        /// The key.
        key: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Set KEY to NEW if its value is EXPECTED (`-` means absent); exit 1 on mismatch.
    Cas {
        /// The key.
        key: String,
        /// The value the key must have, or `-` for absent.
        expected: String,
        /// The new value.
        new: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// List the pairs whose key starts with PREFIX (all pairs without one).
    Scan {
        /// The key prefix.
        prefix: Option<String>,
        #[command(flatten)]
        client: ClientArgs,
    },
}

/// `--peers 1=127.0.0.1:7001,2=127.0.0.1:7002,...`
#[derive(Clone, Debug)]
pub(crate) struct NodePeers(pub(crate) Vec<(NodeId, SocketAddr)>);

fn parse_node_peers(s: &str) -> Result<NodePeers, String> {
    let mut out = Vec::new();
    for part in s.split(',').filter(|p| !p.trim().is_empty()) {
        let (id, addr) = part
            .split_once('=')
            .ok_or_else(|| format!("`{part}`: expected ID=HOST:PORT"))?;
        let id: NodeId = id
            .trim()
            .parse()
            .map_err(|_| format!("`{id}`: node ids are positive integers"))?;
        if id == 0 {
            return Err("node id 0 is reserved".into());
        }
        if out.iter().any(|&(i, _)| i == id) {
            return Err(format!("node id {id} appears twice"));
        }
        out.push((id, resolve(addr.trim())?));
    }
    if out.is_empty() {
        return Err("no peers given".into());
    }
    Ok(NodePeers(out))
}

/// `--peers HOST:PORT,...` for clients; `ID=HOST:PORT` entries are accepted too, so the
/// node's `--peers` string works unchanged.
fn parse_client_peers(s: &str) -> Result<ClientPeers, String> {
    let mut out = Vec::new();
    for part in s.split(',').filter(|p| !p.trim().is_empty()) {
        let addr = part.split_once('=').map_or(part, |(_, a)| a);
        out.push(resolve(addr.trim())?);
    }
    if out.is_empty() {
        return Err("no peers given".into());
    }
    Ok(ClientPeers(out))
}

/// `--peers HOST:PORT,...` of a client.
#[derive(Clone, Debug)]
pub(crate) struct ClientPeers(pub(crate) Vec<SocketAddr>);

fn resolve(addr: &str) -> Result<SocketAddr, String> {
    addr.to_socket_addrs()
        .map_err(|e| format!("`{addr}`: {e}"))?
        .next()
        .ok_or_else(|| format!("`{addr}`: no address"))
}

#[derive(Args, Debug)]
pub(crate) struct NodeArgs {
    /// This node's id (must appear in --peers).
    #[arg(long)]
    pub(crate) id: NodeId,
    /// Every node of the cluster: ID=HOST:PORT,...
    #[arg(long, value_parser = parse_node_peers)]
    pub(crate) peers: NodePeers,
    /// Directory for this node's log (created if missing).
    #[arg(long)]
    pub(crate) data_dir: PathBuf,
    /// File with the cluster key as hex (32–128 hex digits). Without it an insecure
    /// built-in demo key is used.
    #[arg(long)]
    pub(crate) key_file: Option<PathBuf>,
    /// Cluster id carried by every datagram.
    #[arg(long, default_value_t = CLUSTER_ID_DEFAULT)]
    pub(crate) cluster_id: u64,
    /// Length of one tick, in milliseconds.
    #[arg(long, default_value_t = 20)]
    pub(crate) tick_ms: u64,
    /// Election timeout base, in ticks (actual timeout is random in [T, 2T)).
    #[arg(long, default_value_t = 10)]
    pub(crate) election_ticks: u32,
    /// Heartbeat interval, in ticks.
    #[arg(long, default_value_t = 2)]
    pub(crate) heartbeat_ticks: u32,
    /// Serve reads from the leader lease instead of a heartbeat round.
    #[arg(long)]
    pub(crate) lease_reads: bool,
    /// Most keys the store holds (memory is reserved up front).
    #[arg(long, default_value_t = 200_000)]
    pub(crate) max_keys: usize,
    /// Snapshot the state machine and compact the log every N applied entries (0: never).
    /// The log then holds at most about 2 × N entries.
    #[arg(long, default_value_t = 10_000)]
    pub(crate) compact_after: u64,
    /// Roll the log to a new segment file at this size; compaction deletes whole segments.
    #[arg(long, default_value_t = 4 << 20)]
    pub(crate) segment_bytes: u64,
}

#[derive(Args, Debug, Clone)]
pub(crate) struct ClientArgs {
    /// The cluster's nodes: HOST:PORT,... (ID=HOST:PORT entries are accepted too).
    #[arg(long, value_parser = parse_client_peers)]
    pub(crate) peers: ClientPeers,
    /// File with the cluster key as hex; the insecure demo key without it.
    #[arg(long)]
    pub(crate) key_file: Option<PathBuf>,
    /// Cluster id carried by every datagram.
    #[arg(long, default_value_t = CLUSTER_ID_DEFAULT)]
    pub(crate) cluster_id: u64,
    /// Give up on one operation after this many milliseconds.
    #[arg(long, default_value_t = 10_000)]
    pub(crate) timeout_ms: u64,
}

#[derive(Args, Debug)]
pub(crate) struct DemoArgs {
    /// Concurrent clients in the workload.
    #[arg(long, default_value_t = 8)]
    pub(crate) clients: usize,
    /// How long the workload runs, in seconds (the leader is killed halfway).
    #[arg(long, default_value_t = 10)]
    pub(crate) seconds: u64,
    /// UDP port of node 1 (nodes 2 and 3 take the next two); 0 picks free ports.
    #[arg(long, default_value_t = 0)]
    pub(crate) base_port: u16,
}
