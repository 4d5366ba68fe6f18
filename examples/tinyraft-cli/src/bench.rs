//! `tinyraft bench`: closed-loop writers against a running cluster.
//!
//! Each of `--clients` threads owns a [`KvClient`] and writes `--value-size`-byte values to
//! its own `--keys-per-client` keys, one write at a time: it sends the next only when the
//! previous one was acknowledged (applied by the leader, hence durable on a majority). After
//! `--warmup`, every acknowledged write made within `--duration` is counted and its latency
//! recorded in an HDR histogram (microseconds, three significant digits).
//!
//! The leader's status before and after the window gives the fdatasync calls its log made
//! meanwhile; operations per fsync show the group commit at work (many clients' writes share
//! one ready round and so one fsync). Followers fsync too, in parallel with each other.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use tinyraft::Role;
use tinyraft_std::protocol::NodeStatus;
use tinyraft_std::{ClusterKey, KvClient};

use crate::args::BenchArgs;

/// What one client thread did inside the window.
struct ClientResult {
    latencies: Histogram<u64>,
    ok: u64,
    failed: u64,
}

/// Finds the leader among `peers` and returns its address and status.
fn leader_status(c: &mut KvClient, peers: &[SocketAddr]) -> Option<(SocketAddr, NodeStatus)> {
    peers.iter().find_map(|&a| match c.status(a) {
        Ok(s) if s.role == Role::Leader => Some((a, s)),
        _ => None,
    })
}

pub(crate) fn run(a: BenchArgs) -> ExitCode {
    match bench(&a) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("bench failed: {e}");
            ExitCode::FAILURE
        }
    }
}

fn bench(a: &BenchArgs) -> Result<ExitCode, Box<dyn std::error::Error>> {
    if a.value_size > tinyraft::kv::VALUE_BYTES_MAX {
        return Err(format!(
            "--value-size {} is above the store's limit of {} bytes",
            a.value_size,
            tinyraft::kv::VALUE_BYTES_MAX
        )
        .into());
    }
    let key = ClusterKey::load(a.client.key_file.as_deref())?;
    let peers = a.client.peers.0.clone();
    let new_client = || -> std::io::Result<KvClient> {
        let mut c = KvClient::new(peers.clone(), key.clone(), a.client.cluster_id)?;
        c.op_timeout = Duration::from_millis(a.client.timeout_ms);
        Ok(c)
    };

    // Wait for a leader, so that the warm-up is not spent electing one.
    let mut probe = new_client()?;
    let deadline = Instant::now() + Duration::from_secs(10);
    while leader_status(&mut probe, &peers).is_none() {
        if Instant::now() > deadline {
            return Err("no leader within 10 s".into());
        }
        std::thread::sleep(Duration::from_millis(20));
    }

    let clients = a.clients.max(1);
    let measuring = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let value = vec![b'x'; a.value_size];
    let mut handles = Vec::new();
    for id in 0..clients {
        let (measuring, stop, value) = (measuring.clone(), stop.clone(), value.clone());
        let mut kv = new_client()?;
        let keys = a.keys_per_client.max(1);
        handles.push(std::thread::spawn(move || -> ClientResult {
            let mut r = ClientResult {
                latencies: Histogram::new_with_bounds(1, 60_000_000, 3)
                    .expect("valid histogram bounds"),
                ok: 0,
                failed: 0,
            };
            let keys: Vec<String> = (0..keys).map(|k| format!("bench-{id}-{k}")).collect();
            let mut n = 0usize;
            while !stop.load(Ordering::Relaxed) {
                let k = &keys[n % keys.len()];
                n += 1;
                let counted = measuring.load(Ordering::Relaxed);
                let t = Instant::now();
                let done = kv.put(k.as_bytes(), &value);
                let us = t.elapsed().as_micros() as u64;
                // Only operations that started and finished inside the window count.
                if !counted || !measuring.load(Ordering::Relaxed) {
                    continue;
                }
                match done {
                    Ok(()) => {
                        r.ok += 1;
                        let _ = r.latencies.record(us.clamp(1, 60_000_000));
                    }
                    Err(_) => r.failed += 1,
                }
            }
            r
        }));
    }

    std::thread::sleep(a.warmup);
    let before = leader_status(&mut probe, &peers);
    measuring.store(true, Ordering::Relaxed);
    let started = Instant::now();
    std::thread::sleep(a.duration);
    measuring.store(false, Ordering::Relaxed);
    let window = started.elapsed();
    stop.store(true, Ordering::Relaxed);
    let after = leader_status(&mut probe, &peers);

    let mut latencies =
        Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("valid histogram bounds");
    let (mut ok, mut failed) = (0, 0);
    for h in handles {
        let r = h.join().map_err(|_| "a client thread panicked")?;
        latencies.add(&r.latencies)?;
        ok += r.ok;
        failed += r.failed;
    }

    let ops_per_sec = ok as f64 / window.as_secs_f64();
    let ms = |q: f64| latencies.value_at_quantile(q) as f64 / 1000.0;
    // The same leader before and after, or the counters mean nothing.
    let fsync = match (&before, &after) {
        (Some((a0, s0)), Some((a1, s1))) if a0 == a1 && s0.term == s1.term => Some((
            s1.id,
            s1.log_fsyncs.saturating_sub(s0.log_fsyncs),
            s1.ready_rounds.saturating_sub(s0.ready_rounds),
            s1.applied_entries.saturating_sub(s0.applied_entries),
        )),
        _ => None,
    };
    let per_fsync = fsync
        .filter(|f| f.1 > 0)
        .map(|(_, fsyncs, _, _)| ok as f64 / fsyncs as f64);

    if a.json {
        let mut j = serde_json::json!({
            "system": "tinyraft",
            "clients": clients,
            "duration_s": window.as_secs_f64(),
            "value_size": a.value_size,
            "ops": ok,
            "errors": failed,
            "ops_per_sec": ops_per_sec,
            "p50_ms": ms(0.50),
            "p99_ms": ms(0.99),
            "p999_ms": ms(0.999),
            "max_ms": latencies.max() as f64 / 1000.0,
        });
        if let Some((leader, fsyncs, rounds, applied)) = fsync {
            j["leader"] = leader.into();
            j["leader_log_fsyncs"] = fsyncs.into();
            j["leader_ready_rounds"] = rounds.into();
            j["leader_applied_entries"] = applied.into();
        }
        if let Some(p) = per_fsync {
            j["ops_per_fsync"] = p.into();
        }
        println!("{j}");
    } else {
        println!(
            "tinyraft bench: {clients} clients, {:.1} s, {}-byte values, {} nodes",
            window.as_secs_f64(),
            a.value_size,
            peers.len()
        );
        println!(
            "throughput   {ops_per_sec:>10.0} ops/s   ({ok} writes acknowledged, {failed} failed)"
        );
        println!(
            "latency      p50 {:.3} ms   p99 {:.3} ms   p999 {:.3} ms   max {:.3} ms",
            ms(0.50),
            ms(0.99),
            ms(0.999),
            latencies.max() as f64 / 1000.0
        );
        match (fsync, per_fsync) {
            (Some((leader, fsyncs, rounds, _)), Some(p)) => println!(
                "group commit {p:>10.1} ops/fsync   (leader {leader}: {fsyncs} log fsyncs, {rounds} ready rounds)"
            ),
            _ => println!("group commit  n/a (the leader changed during the run, or did not fsync)"),
        }
    }
    Ok(if ok > 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
