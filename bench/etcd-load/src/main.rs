//! `etcd-load`: closed-loop writers against etcd's gRPC `KV.Put`, reporting the same figures
//! as `tinyraft bench --json` so `bench/etcd_compare.sh` can put the two side by side.
//!
//! Each of `--clients` tasks sends one put at a time (the next once the previous returned)
//! to its own keys, `bench-{client}-{k}`, with a `--value-size`-byte value. etcd answers a
//! put once it is committed (on a majority's WAL, fsynced) and applied. Only puts made
//! within `--duration` after `--warmup` count; latencies go to an HDR histogram in
//! microseconds. Each client has its own HTTP/2 connection, as each tinyraft client has its
//! own socket.
//!
//! The two messages are written here by hand (field numbers from etcd's `rpc.proto`,
//! `etcdserverpb.PutRequest`: key = 1, value = 2; the response's fields are not needed), so
//! no protoc and no generated code are involved.
//!
//! Usage: `etcd-load --endpoint http://127.0.0.1:2379 --clients 64 --duration 20s
//! --value-size 256 [--warmup 1s] [--keys-per-client 100]`

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

/// `etcdserverpb.PutRequest`, the fields a plain put uses.
#[derive(Clone, PartialEq, prost::Message)]
struct PutRequest {
    #[prost(bytes = "vec", tag = "1")]
    key: Vec<u8>,
    #[prost(bytes = "vec", tag = "2")]
    value: Vec<u8>,
}

/// `etcdserverpb.PutResponse`; its header and previous value are skipped.
#[derive(Clone, PartialEq, prost::Message)]
struct PutResponse {}

struct Opts {
    endpoint: String,
    clients: usize,
    duration: Duration,
    warmup: Duration,
    value_size: usize,
    keys_per_client: usize,
}

fn parse_duration(s: &str) -> Option<Duration> {
    let (n, scale) = if let Some(v) = s.strip_suffix("ms") {
        (v, 0.001)
    } else if let Some(v) = s.strip_suffix('s') {
        (v, 1.0)
    } else if let Some(v) = s.strip_suffix('m') {
        (v, 60.0)
    } else {
        (s, 1.0)
    };
    n.parse::<f64>()
        .ok()
        .and_then(|v| Duration::try_from_secs_f64(v * scale).ok())
}

fn parse_opts() -> Result<Opts, String> {
    let mut o = Opts {
        endpoint: "http://127.0.0.1:2379".into(),
        clients: 64,
        duration: Duration::from_secs(20),
        warmup: Duration::from_secs(1),
        value_size: 256,
        keys_per_client: 100,
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let v = args.next().ok_or(format!("{flag} needs a value"))?;
        let bad = |_| format!("bad value for {flag}: {v}");
        match flag.as_str() {
            "--endpoint" => o.endpoint = v.clone(),
            "--clients" => o.clients = v.parse().map_err(bad)?,
            "--value-size" => o.value_size = v.parse().map_err(bad)?,
            "--keys-per-client" => o.keys_per_client = v.parse().map_err(bad)?,
            "--duration" => o.duration = parse_duration(&v).ok_or(format!("bad duration {v}"))?,
            "--warmup" => o.warmup = parse_duration(&v).ok_or(format!("bad duration {v}"))?,
            _ => return Err(format!("unknown flag {flag}")),
        }
    }
    o.clients = o.clients.max(1);
    o.keys_per_client = o.keys_per_client.max(1);
    Ok(o)
}

struct ClientResult {
    latencies: Histogram<u64>,
    ok: u64,
    failed: u64,
}

async fn client(
    id: usize,
    o: Arc<Opts>,
    measuring: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
) -> Result<ClientResult, String> {
    let channel = tonic::transport::Endpoint::from_shared(o.endpoint.clone())
        .map_err(|e| e.to_string())?
        .connect()
        .await
        .map_err(|e| format!("connect {}: {e}", o.endpoint))?;
    let mut grpc = tonic::client::Grpc::new(channel);
    let path = http::uri::PathAndQuery::from_static("/etcdserverpb.KV/Put");
    let keys: Vec<Vec<u8>> = (0..o.keys_per_client)
        .map(|k| format!("bench-{id}-{k}").into_bytes())
        .collect();
    let value = vec![b'x'; o.value_size];
    let mut r = ClientResult {
        latencies: Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid bounds"),
        ok: 0,
        failed: 0,
    };
    let mut n = 0usize;
    while !stop.load(Ordering::Relaxed) {
        let req = PutRequest {
            key: keys[n % keys.len()].clone(),
            value: value.clone(),
        };
        n += 1;
        let counted = measuring.load(Ordering::Relaxed);
        let t = Instant::now();
        let done = async {
            grpc.ready().await.map_err(|e| e.to_string())?;
            let codec = tonic_prost::ProstCodec::<PutRequest, PutResponse>::default();
            grpc.unary(tonic::Request::new(req), path.clone(), codec)
                .await
                .map_err(|e| e.to_string())
        }
        .await;
        let us = t.elapsed().as_micros() as u64;
        if !counted || !measuring.load(Ordering::Relaxed) {
            continue;
        }
        match done {
            Ok(_) => {
                r.ok += 1;
                let _ = r.latencies.record(us.clamp(1, 60_000_000));
            }
            Err(_) => r.failed += 1,
        }
    }
    Ok(r)
}

fn main() {
    let o = match parse_opts() {
        Ok(o) => Arc::new(o),
        Err(e) => {
            eprintln!("etcd-load: {e}");
            std::process::exit(2);
        }
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let result = rt.block_on(async {
        let measuring = Arc::new(AtomicBool::new(false));
        let stop = Arc::new(AtomicBool::new(false));
        let tasks: Vec<_> = (0..o.clients)
            .map(|id| tokio::spawn(client(id, o.clone(), measuring.clone(), stop.clone())))
            .collect();
        tokio::time::sleep(o.warmup).await;
        measuring.store(true, Ordering::Relaxed);
        let started = Instant::now();
        tokio::time::sleep(o.duration).await;
        measuring.store(false, Ordering::Relaxed);
        let window = started.elapsed();
        stop.store(true, Ordering::Relaxed);
        let mut all = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("bounds");
        let (mut ok, mut failed) = (0u64, 0u64);
        for t in tasks {
            let r = t.await.map_err(|e| e.to_string())??;
            all.add(&r.latencies).map_err(|e| e.to_string())?;
            ok += r.ok;
            failed += r.failed;
        }
        Ok::<_, String>((all, ok, failed, window))
    });
    let (lat, ok, failed, window) = match result {
        Ok(r) => r,
        Err(e) => {
            eprintln!("etcd-load: {e}");
            std::process::exit(1);
        }
    };
    let ms = |q: f64| lat.value_at_quantile(q) as f64 / 1000.0;
    println!(
        "{{\"system\":\"etcd\",\"clients\":{},\"duration_s\":{:.3},\"value_size\":{},\"ops\":{ok},\"errors\":{failed},\"ops_per_sec\":{:.1},\"p50_ms\":{:.3},\"p99_ms\":{:.3},\"p999_ms\":{:.3},\"max_ms\":{:.3}}}",
        o.clients,
        window.as_secs_f64(),
        o.value_size,
        ok as f64 / window.as_secs_f64(),
        ms(0.50),
        ms(0.99),
        ms(0.999),
        lat.max() as f64 / 1000.0
    );
    if ok == 0 {
        std::process::exit(1);
    }
}
