//! `tinyraft demo`: a 3-node cluster on loopback, as separate processes with file storage in a
//! temporary directory; a mixed workload from concurrent clients; the leader killed with
//! SIGKILL midway; every acknowledged write verified at the end.

use std::collections::HashMap;
use std::net::{SocketAddr, UdpSocket};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use indicatif::{ProgressBar, ProgressStyle};
use tinyraft::Role;
use tinyraft_std::{CasOutcome, ClusterKey, KvClient};

use crate::args::{DemoArgs, CLUSTER_ID_DEFAULT};

/// What one client knows about its own keys: the last acknowledged value and any values
/// written after it whose outcome is unknown (they may legitimately be what a read returns).
#[derive(Default)]
struct KeyHistory {
    acked: Option<String>,
    unknown_after: Vec<String>,
}

struct Cluster {
    exe: std::path::PathBuf,
    dir: tempfile::TempDir,
    peers: Vec<(u64, SocketAddr)>,
    children: Vec<Option<Child>>,
}

impl Cluster {
    fn peers_arg(&self) -> String {
        let v: Vec<String> = self.peers.iter().map(|(i, a)| format!("{i}={a}")).collect();
        v.join(",")
    }

    fn start(&mut self, id: u64) -> std::io::Result<()> {
        let data = self.dir.path().join(format!("node{id}"));
        let log = std::fs::File::create(self.dir.path().join(format!("node{id}.log")))?;
        let child = Command::new(&self.exe)
            .arg("node")
            .args(["--id", &id.to_string()])
            .args(["--peers", &self.peers_arg()])
            .arg("--data-dir")
            .arg(&data)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()?;
        self.children[id as usize - 1] = Some(child);
        Ok(())
    }

    fn kill(&mut self, id: u64) {
        if let Some(mut c) = self.children[id as usize - 1].take() {
            let _ = c.kill(); // SIGKILL: no chance to flush anything
            let _ = c.wait();
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for id in 1..=self.children.len() as u64 {
            self.kill(id);
        }
    }
}

fn free_ports(base: u16, n: usize) -> std::io::Result<Vec<SocketAddr>> {
    let mut out = Vec::new();
    let mut holders = Vec::new();
    for i in 0..n {
        let port = if base == 0 { 0 } else { base + i as u16 };
        let s = UdpSocket::bind(("127.0.0.1", port))?;
        out.push(s.local_addr()?);
        holders.push(s);
    }
    Ok(out) // the sockets close here; the nodes bind the same ports right after
}

fn client(addrs: &[SocketAddr]) -> std::io::Result<KvClient> {
    let mut c = KvClient::new(
        addrs.to_vec(),
        ClusterKey::insecure_demo(),
        CLUSTER_ID_DEFAULT,
    )?;
    c.attempt_timeout = Duration::from_millis(150);
    c.op_timeout = Duration::from_secs(8);
    Ok(c)
}

/// Polls the nodes until one reports itself leader; returns it and how long that took.
fn wait_for_leader(
    c: &mut KvClient,
    addrs: &[SocketAddr],
    not: Option<u64>,
    limit: Duration,
) -> Option<(u64, Duration)> {
    let start = Instant::now();
    while start.elapsed() < limit {
        for &a in addrs {
            if let Ok(s) = c.status(a) {
                if s.role == Role::Leader && Some(s.id) != not {
                    return Some((s.id, start.elapsed()));
                }
            }
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    None
}

pub(crate) fn run(a: DemoArgs) -> ExitCode {
    match demo(a) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("demo failed: {e}");
            ExitCode::FAILURE
        }
    }
}

fn demo(a: DemoArgs) -> Result<bool, Box<dyn std::error::Error>> {
    let total_start = Instant::now();
    let addrs = free_ports(a.base_port, 3)?;
    let mut cluster = Cluster {
        exe: std::env::current_exe()?,
        dir: tempfile::Builder::new()
            .prefix("tinyraft-demo-")
            .tempdir()?,
        peers: addrs
            .iter()
            .enumerate()
            .map(|(i, &a)| (i as u64 + 1, a))
            .collect(),
        children: vec![None, None, None],
    };
    println!(
        "tinyraft demo: 3 nodes on {} (data in {})",
        cluster.peers_arg(),
        cluster.dir.path().display()
    );
    for id in 1..=3 {
        cluster.start(id)?;
    }
    let mut probe = client(&addrs)?;
    let (leader, first_election) =
        wait_for_leader(&mut probe, &addrs, None, Duration::from_secs(10))
            .ok_or("no leader was elected within 10 s")?;
    println!(
        "node {leader} is leader (first election took {} ms)",
        first_election.as_millis()
    );

    // The workload: each client owns its keys, so it knows what every one must hold. It runs
    // for a fixed time; the leader is killed halfway through, while clients are writing.
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicUsize::new(0));
    let duration = Duration::from_secs(a.seconds.max(2));
    let bar = ProgressBar::new(duration.as_millis() as u64);
    bar.set_style(
        ProgressStyle::with_template("{bar:40} {elapsed:>3} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let latencies = Arc::new(Mutex::new(Histogram::<u64>::new(3)?));
    let mut handles = Vec::new();
    let workload_start = Instant::now();
    for c in 0..a.clients.max(1) {
        let (addrs, done, lat, stop) =
            (addrs.clone(), done.clone(), latencies.clone(), stop.clone());
        handles.push(std::thread::spawn(
            move || -> Result<(HashMap<String, KeyHistory>, u64), String> {
                let mut kv = client(&addrs).map_err(|e| e.to_string())?;
                let mut keys: HashMap<String, KeyHistory> = HashMap::new();
                let mut failed = 0u64;
                let mut i = 0usize;
                while !stop.load(Ordering::Relaxed) {
                    i += 1;
                    let key = format!("c{c}-k{}", i % 50);
                    let value = format!("v{i}");
                    let t = Instant::now();
                    let h = keys.entry(key.clone()).or_default();
                    let ok = match i % 10 {
                        0..=5 => match kv.put(key.as_bytes(), value.as_bytes()) {
                            Ok(()) => {
                                h.acked = Some(value);
                                h.unknown_after.clear();
                                true
                            }
                            Err(e) => {
                                if !e.is_definite() {
                                    h.unknown_after.push(value);
                                }
                                false
                            }
                        },
                        6..=8 => kv.get(key.as_bytes()).is_ok(),
                        _ => {
                            let expected = h.acked.clone();
                            match kv.cas(
                                key.as_bytes(),
                                expected.as_deref().map(str::as_bytes),
                                value.as_bytes(),
                            ) {
                                Ok(CasOutcome::Swapped) => {
                                    h.acked = Some(value);
                                    h.unknown_after.clear();
                                    true
                                }
                                // A mismatch is only possible after an unknown-outcome write.
                                Ok(CasOutcome::Mismatch) => true,
                                Err(e) => {
                                    if !e.is_definite() {
                                        h.unknown_after.push(value);
                                    }
                                    false
                                }
                            }
                        }
                    };
                    if ok {
                        let us = t.elapsed().as_micros() as u64;
                        let _ = lat.lock().map(|mut l| l.record(us.max(1)));
                    } else {
                        failed += 1;
                    }
                    done.fetch_add(1, Ordering::Relaxed);
                }
                Ok((keys, failed))
            },
        ));
    }
    let tick_bar = |bar: &ProgressBar, msg: &str| {
        bar.set_position(workload_start.elapsed().as_millis() as u64);
        bar.set_message(format!("{} ops  {msg}", done.load(Ordering::Relaxed)));
    };
    while workload_start.elapsed() < duration / 2 {
        tick_bar(&bar, "");
        std::thread::sleep(Duration::from_millis(50));
    }
    let (old, _) = wait_for_leader(&mut probe, &addrs, None, Duration::from_secs(5))
        .ok_or("lost the leader")?;
    tick_bar(&bar, &format!("killing leader {old}"));
    let killed_at = Instant::now();
    cluster.kill(old);
    let (new_leader, _) = wait_for_leader(&mut probe, &addrs, Some(old), Duration::from_secs(10))
        .ok_or("no new leader within 10 s of killing the old one")?;
    let election = killed_at.elapsed();
    // Bring the old leader back; it catches up from the new leader.
    cluster.start(old)?;
    let note = format!(
        "node {old} killed; node {new_leader} leads after {} ms",
        election.as_millis()
    );
    while workload_start.elapsed() < duration {
        tick_bar(&bar, &note);
        std::thread::sleep(Duration::from_millis(50));
    }
    stop.store(true, Ordering::Relaxed);

    let mut histories: HashMap<String, KeyHistory> = HashMap::new();
    let mut failed = 0;
    for h in handles {
        let (keys, f) = h.join().map_err(|_| "a client thread panicked")??;
        histories.extend(keys);
        failed += f;
    }
    let workload = workload_start.elapsed();
    bar.finish_with_message(format!("{} ops  {note}", done.load(Ordering::Relaxed)));

    // Every acknowledged write must be readable (or superseded by a later write whose
    // outcome was unknown).
    let mut verifier = client(&addrs)?;
    let mut lost = Vec::new();
    let mut checked = 0;
    for (key, h) in &histories {
        let Some(acked) = &h.acked else { continue };
        checked += 1;
        let got = verifier
            .get(key.as_bytes())?
            .map(|v| String::from_utf8_lossy(&v).into_owned());
        let fine = got.as_deref() == Some(acked.as_str())
            || got.as_ref().is_some_and(|g| h.unknown_after.contains(g));
        if !fine {
            lost.push(format!("{key}: acknowledged {acked:?}, read {got:?}"));
        }
    }
    let lat = latencies.lock().map_err(|_| "latency lock poisoned")?;
    let ops = lat.len();
    println!();
    println!("+------------------------------+----------------+");
    println!("| operations completed         | {ops:>14} |");
    println!("| operations failed            | {failed:>14} |");
    println!(
        "| throughput                   | {:>10.0} op/s |",
        ops as f64 / workload.as_secs_f64()
    );
    println!(
        "| latency p50                  | {:>11.2} ms |",
        lat.value_at_quantile(0.50) as f64 / 1000.0
    );
    println!(
        "| latency p99                  | {:>11.2} ms |",
        lat.value_at_quantile(0.99) as f64 / 1000.0
    );
    println!(
        "| leader killed (SIGKILL)      | {:>14} |",
        format!("node {old}")
    );
    println!(
        "| new leader elected in        | {:>11} ms |",
        election.as_millis()
    );
    println!("| acknowledged keys verified   | {checked:>14} |");
    println!("| lost acknowledged writes     | {:>14} |", lost.len());
    println!("+------------------------------+----------------+");
    for l in &lost {
        println!("LOST {l}");
    }
    drop(cluster);
    println!("done in {:.1} s", total_start.elapsed().as_secs_f64());
    Ok(lost.is_empty())
}
