//! Command-line arguments.

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::time::Duration;

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
    /// Load a running cluster with closed-loop writers; report throughput, latency
    /// percentiles and operations per fsync.
    Bench(BenchArgs),
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
    /// Change the cluster's membership: add, remove or promote a node.
    #[command(subcommand)]
    Member(MemberCmd),
    /// Hand leadership to another voter and wait until it leads.
    TransferLeader {
        /// The voter that should lead.
        #[arg(long)]
        to: NodeId,
        #[command(flatten)]
        client: ClientArgs,
    },
}

#[derive(Subcommand, Debug)]
pub(crate) enum MemberCmd {
    /// Add a node (started with `tinyraft node --join`): as a learner, wait until it has
    /// caught up, then promote it to voter. Prints the resulting configuration.
    Add {
        /// The new node's id.
        #[arg(long)]
        id: NodeId,
        /// The new node's address (what it was started with in its own --peers).
        #[arg(long, value_parser = resolve)]
        addr: SocketAddr,
        /// Leave it a learner (it receives the log but does not vote).
        #[arg(long)]
        learner: bool,
        /// How long to wait for the learner to catch up before giving up on promoting it.
        #[arg(long, default_value = "30s", value_parser = parse_duration)]
        catch_up_timeout: Duration,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Remove a node (voter or learner). Prints the resulting configuration.
    Remove {
        /// The node to remove.
        #[arg(long)]
        id: NodeId,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Make a learner a voter, once it has caught up. Prints the resulting configuration.
    Promote {
        /// The learner to promote.
        #[arg(long)]
        id: NodeId,
        /// How long to wait for the learner to catch up before giving up.
        #[arg(long, default_value = "30s", value_parser = parse_duration)]
        catch_up_timeout: Duration,
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
    /// Every node of the cluster: ID=HOST:PORT,... Without --join, a new data directory
    /// starts a cluster whose voters are exactly these nodes.
    #[arg(long, value_parser = parse_node_peers)]
    pub(crate) peers: NodePeers,
    /// Start with an empty configuration and wait to be added (`tinyraft member add`)
    /// instead of starting a cluster of --peers. Only a new data directory is affected: a
    /// node always restarts with the configuration on its disk.
    #[arg(long)]
    pub(crate) join: bool,
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

/// Parses `20s`, `1.5s`, `500ms`, `2m` or a plain number of seconds.
pub(crate) fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (number, unit) = match s.find(|c: char| !(c.is_ascii_digit() || c == '.')) {
        Some(i) => s.split_at(i),
        None => (s, "s"),
    };
    let value: f64 = number
        .parse()
        .map_err(|_| format!("`{s}`: expected a duration like 20s, 500ms or 2m"))?;
    let secs = match unit {
        "ms" => value / 1000.0,
        "s" => value,
        "m" => value * 60.0,
        _ => return Err(format!("`{s}`: the unit must be ms, s or m")),
    };
    Duration::try_from_secs_f64(secs).map_err(|_| format!("`{s}`: out of range"))
}

#[derive(Args, Debug)]
pub(crate) struct BenchArgs {
    #[command(flatten)]
    pub(crate) client: ClientArgs,
    /// Concurrent closed-loop clients (threads), each waiting for its write before the next.
    #[arg(long, default_value_t = 64)]
    pub(crate) clients: usize,
    /// How long to measure (after the warm-up), e.g. 20s, 500ms, 2m.
    #[arg(long, default_value = "20s", value_parser = parse_duration)]
    pub(crate) duration: Duration,
    /// Time spent writing, but not counting, before the measured window (leader discovery
    /// and cold caches are not measured).
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    pub(crate) warmup: Duration,
    /// Bytes of each written value.
    #[arg(long, default_value_t = 256)]
    pub(crate) value_size: usize,
    /// Keys each client cycles through (the store holds clients × this many keys).
    #[arg(long, default_value_t = 100)]
    pub(crate) keys_per_client: usize,
    /// Print one JSON object instead of the report.
    #[arg(long)]
    pub(crate) json: bool,
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The administrative commands' spelling is a documented contract (README, CLI section).
    #[test]
    fn admin_commands_parse_as_documented() {
        let parse = |line: &str| Cli::try_parse_from(line.split_whitespace());
        let peers = "--peers 127.0.0.1:7001,2=127.0.0.1:7002";
        let cli = parse(&format!(
            "tinyraft member add {peers} --id 4 --addr 127.0.0.1:7004 --learner --catch-up-timeout 5s"
        ))
        .unwrap();
        match cli.cmd {
            Cmd::Member(MemberCmd::Add {
                id,
                addr,
                learner,
                catch_up_timeout,
                client,
            }) => {
                assert_eq!((id, learner), (4, true));
                assert_eq!(addr, "127.0.0.1:7004".parse().unwrap());
                assert_eq!(catch_up_timeout, Duration::from_secs(5));
                assert_eq!(client.peers.0.len(), 2);
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            parse(&format!("tinyraft member remove {peers} --id 2"))
                .unwrap()
                .cmd,
            Cmd::Member(MemberCmd::Remove { id: 2, .. })
        ));
        assert!(matches!(
            parse(&format!("tinyraft member promote {peers} --id 4"))
                .unwrap()
                .cmd,
            Cmd::Member(MemberCmd::Promote { id: 4, .. })
        ));
        assert!(matches!(
            parse(&format!("tinyraft transfer-leader {peers} --to 3"))
                .unwrap()
                .cmd,
            Cmd::TransferLeader { to: 3, .. }
        ));
        let node = parse("tinyraft node --id 4 --peers 4=127.0.0.1:7004 --data-dir d --join");
        assert!(matches!(
            node.unwrap().cmd,
            Cmd::Node(NodeArgs { join: true, .. })
        ));
        // A bad address is a usage error (exit 2), as is a missing --addr.
        let bad = parse(&format!(
            "tinyraft member add {peers} --id 4 --addr nowhere"
        ));
        assert_eq!(bad.unwrap_err().exit_code(), 2);
        let missing = parse(&format!("tinyraft member add {peers} --id 4"));
        assert_eq!(missing.unwrap_err().exit_code(), 2);
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("20s"), Ok(Duration::from_secs(20)));
        assert_eq!(parse_duration("20"), Ok(Duration::from_secs(20)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        for bad in ["", "s", "20h", "-1s", "1e999s", "ms20"] {
            assert!(parse_duration(bad).is_err(), "{bad} was accepted");
        }
    }
}
