//! The `tinyraft` binary: run a node, talk to a cluster, administer it, or run the local
//! demo.
//!
//! Exit codes of the one-shot client commands (`get`, `put`, `delete`, `cas`, `scan`) and of
//! the administrative ones (`member add|remove|promote`, `transfer-leader`):
//!
//! | code | meaning |
//! |---|---|
//! | 0 | done (for `get`: the key exists; for `member`: also when the configuration already was as asked) |
//! | 1 | `get`: the key is absent; `cas`: the current value did not match (nothing changed) |
//! | 2 | usage error (bad arguments, e.g. an `--addr` that is not HOST:PORT) |
//! | 3 | failed, definitely not applied (refused: a limit, an invalid request, not a member, not a voter, no leader; a learner that did not catch up and was not promoted) |
//! | 4 | failed, outcome unknown (timed out after a write or change may have been proposed; a transfer target not leading by the deadline) |
//! | 5 | the client could not run (socket or key-file error) |

mod admin;
mod args;
mod bench;
mod demo;
mod line;

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use tinyraft_std::{CasOutcome, ClientError, ClusterKey, KvClient, NodeOptions, NodeRuntime};

use args::{Cli, ClientArgs, Cmd, MemberCmd};

/// Exit code: the key is absent / the compare-and-swap did not match.
const EXIT_NOT_FOUND: u8 = 1;
/// Exit code: failed, and definitely not applied.
pub(crate) const EXIT_DEFINITE: u8 = 3;
/// Exit code: failed, and may or may not have been applied.
pub(crate) const EXIT_UNKNOWN: u8 = 4;
/// Exit code: the client could not start.
const EXIT_SETUP: u8 = 5;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.cmd {
        Cmd::Node(a) => run_node(a),
        Cmd::Demo(a) => demo::run(a),
        Cmd::Client(a) => with_client(&a, line::run),
        Cmd::Status(a) => with_client(&a, status),
        Cmd::Bench(a) => bench::run(a),
        Cmd::Get { key, client } => with_client(&client, |c| match c.get(key.as_bytes()) {
            Ok(Some(v)) => {
                println!("{}", String::from_utf8_lossy(&v));
                ExitCode::SUCCESS
            }
            Ok(None) => {
                eprintln!("(absent)");
                ExitCode::from(EXIT_NOT_FOUND)
            }
            Err(e) => fail(&e),
        }),
        Cmd::Put { key, value, client } => {
            with_client(&client, |c| match c.put(key.as_bytes(), value.as_bytes()) {
                Ok(()) => {
                    println!("OK");
                    ExitCode::SUCCESS
                }
                Err(e) => fail(&e),
            })
        }
        Cmd::Delete { key, client } => with_client(&client, |c| match c.delete(key.as_bytes()) {
            Ok(existed) => {
                println!("{}", if existed { "deleted" } else { "(was absent)" });
                ExitCode::SUCCESS
            }
            Err(e) => fail(&e),
        }),
        Cmd::Cas {
            key,
            expected,
            new,
            client,
        } => with_client(&client, |c| {
            let expected = (expected != "-").then_some(expected.as_bytes());
            match c.cas(key.as_bytes(), expected, new.as_bytes()) {
                Ok(CasOutcome::Swapped) => {
                    println!("OK");
                    ExitCode::SUCCESS
                }
                Ok(CasOutcome::Mismatch) => {
                    let cur = c.get(key.as_bytes()).ok().flatten();
                    let cur = cur.map_or("(absent)".into(), |v| {
                        String::from_utf8_lossy(&v).into_owned()
                    });
                    println!("mismatch: current value is {cur}");
                    ExitCode::from(EXIT_NOT_FOUND)
                }
                Err(e) => fail(&e),
            }
        }),
        Cmd::Member(MemberCmd::Add {
            id,
            addr,
            learner,
            catch_up_timeout,
            client,
        }) => with_client(&client, |c| {
            admin::add(c, id, addr, learner, catch_up_timeout)
        }),
        Cmd::Member(MemberCmd::Remove { id, client }) => {
            with_client(&client, |c| admin::remove(c, id))
        }
        Cmd::Member(MemberCmd::Promote {
            id,
            catch_up_timeout,
            client,
        }) => with_client(&client, |c| admin::promote(c, id, catch_up_timeout)),
        Cmd::TransferLeader { to, client } => with_client(&client, |c| admin::transfer(c, to)),
        Cmd::Scan { prefix, client } => with_client(&client, |c| {
            match c.scan(prefix.unwrap_or_default().as_bytes(), line::SCAN_PAIRS_MAX) {
                Ok(pairs) => {
                    let mut out = std::io::stdout().lock();
                    for (k, v) in pairs {
                        let _ = writeln!(
                            out,
                            "{}\t{}",
                            String::from_utf8_lossy(&k),
                            String::from_utf8_lossy(&v)
                        );
                    }
                    ExitCode::SUCCESS
                }
                Err(e) => fail(&e),
            }
        }),
    }
}

pub(crate) fn fail(e: &ClientError) -> ExitCode {
    eprintln!("error: {e}");
    ExitCode::from(if e.is_definite() {
        EXIT_DEFINITE
    } else {
        EXIT_UNKNOWN
    })
}

fn with_client(a: &ClientArgs, f: impl FnOnce(&mut KvClient) -> ExitCode) -> ExitCode {
    let key = match ClusterKey::load(a.key_file.as_deref()) {
        Ok(k) => k,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(EXIT_SETUP);
        }
    };
    match KvClient::new(a.peers.0.clone(), key, a.cluster_id) {
        Ok(mut c) => {
            c.op_timeout = Duration::from_millis(a.timeout_ms);
            f(&mut c)
        }
        Err(e) => {
            eprintln!("error: cannot open client socket: {e}");
            ExitCode::from(EXIT_SETUP)
        }
    }
}

/// One node per line; the last columns are the node's configuration (ids ascending):
/// voters, learners, and the outgoing voters while joint (`-` otherwise).
fn status(c: &mut KvClient) -> ExitCode {
    let peers = c.peers().to_vec();
    println!(
        "{:<6} {:<22} {:<13} {:>6} {:>8} {:>10} {:>10} {:>10}  voters / learners / outgoing",
        "node", "address", "role", "term", "leader", "commit", "applied", "last"
    );
    let mut reachable = 0;
    for addr in peers {
        match c.status(addr) {
            Ok(s) => {
                reachable += 1;
                let sorted = |ids: &[u64]| {
                    let mut v = ids.to_vec();
                    v.sort_unstable();
                    v
                };
                let outgoing = if s.outgoing.is_empty() {
                    "-".to_string()
                } else {
                    format!("{:?}", sorted(&s.outgoing))
                };
                println!(
                    "{:<6} {:<22} {:<13} {:>6} {:>8} {:>10} {:>10} {:>10}  {:?} / {:?} / {}",
                    s.id,
                    addr.to_string(),
                    format!("{:?}", s.role),
                    s.term,
                    s.leader.map_or("-".into(), |l| l.to_string()),
                    s.commit,
                    s.applied,
                    s.last_index,
                    sorted(&s.voters),
                    sorted(&s.learners),
                    outgoing
                );
            }
            Err(_) => println!("{:<6} {:<22} unreachable", "?", addr.to_string()),
        }
    }
    if reachable == 0 {
        ExitCode::from(EXIT_DEFINITE)
    } else {
        ExitCode::SUCCESS
    }
}

fn run_node(a: args::NodeArgs) -> ExitCode {
    let key = match ClusterKey::load(a.key_file.as_deref()) {
        Ok(k) => k,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(EXIT_SETUP);
        }
    };
    let mut opts = NodeOptions::new(a.id, a.peers.0.clone(), a.data_dir.clone(), key);
    opts.join = a.join;
    opts.cluster_id = a.cluster_id;
    opts.tick = Duration::from_millis(a.tick_ms);
    opts.election_ticks = a.election_ticks;
    opts.heartbeat_ticks = a.heartbeat_ticks;
    opts.lease_reads = a.lease_reads;
    opts.keys_max = a.max_keys;
    opts.compact_after = a.compact_after;
    opts.segment_bytes = a.segment_bytes;
    let runtime = match NodeRuntime::open(opts) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: node {} cannot start: {e}", a.id);
            return ExitCode::from(EXIT_SETUP);
        }
    };
    if !runtime.raw().membership().contains(a.id) {
        eprintln!(
            "node {} is not a member of its configuration: waiting to be added \
             (`tinyraft member add --id {} --addr ...`)",
            a.id, a.id
        );
    }
    let stop = runtime.shutdown_handle();
    if let Err(e) = ctrlc::set_handler(move || stop.request()) {
        eprintln!("warning: cannot install the signal handler: {e}");
    }
    eprintln!(
        "node {} serving on {} (data in {})",
        a.id,
        runtime.local_addr().map_or("?".into(), |x| x.to_string()),
        a.data_dir.display()
    );
    match runtime.run() {
        Ok(()) => {
            eprintln!("node {} stopped cleanly", a.id);
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: node {} stopped: {e}", a.id);
            ExitCode::FAILURE
        }
    }
}
