//! A 3-node tinyraft cluster with the replicated KV store, inside one Cortex-M4 image.
//!
//! The three nodes live in statics (no heap, no allocator), exchange postcard-encoded
//! messages through the `Transport` trait — nodes 1 and 2 over a simulated UART with COBS
//! framing, the rest directly — and run the scripted scenario of [`scenario`]. Output goes to
//! the host over semihosting; the firmware ends QEMU through semihosting exit with status 0
//! if every check passed and 1 otherwise (a panic also exits with 1).
//!
//! `cargo run --release` builds it and runs it in QEMU (see `.cargo/config.toml`).
#![no_std]
#![no_main]
#![forbid(unsafe_code)]

mod cluster;
mod net;
mod scenario;

use core::mem::size_of;

use cortex_m_rt::entry;
use cortex_m_semihosting::hprintln;
use panic_semihosting as _;
use tinyraft::{FrameReceiver, RawNode};

use cluster::{
    FwNode, Kv, Log, IDS, KV_BYTES, KV_KEYS, KV_SESSIONS, LOG_BYTES, LOG_ENTRIES, OUTBOX_BYTES,
    UART_RX_BYTES, UNSTABLE_BYTES,
};

#[entry]
fn main() -> ! {
    hprintln!("tinyraft firmware: 3 nodes and the KV store in one image, no heap");
    print_sizes();
    let passed = match cluster::boot() {
        Ok(()) => scenario::run().is_ok(),
        Err(why) => {
            hprintln!("FAIL: boot: {}", why);
            false
        }
    };
    finish(passed)
}

/// Reports the outcome and ends QEMU with it: semihosting exit status 0 or 1.
fn finish(passed: bool) -> ! {
    hprintln!("{}", if passed { "PASS" } else { "FAILED" });
    #[cfg(feature = "stack-probe")]
    hprintln!("PARKED");
    #[cfg(not(feature = "stack-probe"))]
    {
        use cortex_m_semihosting::debug;
        debug::exit(if passed {
            debug::EXIT_SUCCESS
        } else {
            debug::EXIT_FAILURE
        });
    }
    // Parked for stack-usage.sh, which reads RAM through the QEMU monitor now; otherwise
    // reached only when no debugger or emulator listens to semihosting.
    loop {
        cortex_m::asm::wfi();
    }
}

/// Prints what each node occupies in RAM; all of it is static (`.bss`).
fn print_sizes() {
    type Raw = RawNode<Log, OUTBOX_BYTES, UNSTABLE_BYTES>;
    let node = size_of::<FwNode>();
    let storage = size_of::<Log>();
    let raw = size_of::<Raw>() - storage;
    let kv = size_of::<Kv>();
    hprintln!(
        "per node: {} B static = RawNode {} B (outbox {} B, unstable log {} B) + MemStorage<{}, {}> {} B + KvStore<ArenaMap<{}, {}>, {}> {} B + transport and counters {} B",
        node,
        raw,
        OUTBOX_BYTES,
        UNSTABLE_BYTES,
        LOG_BYTES,
        LOG_ENTRIES,
        storage,
        KV_KEYS,
        KV_BYTES,
        KV_SESSIONS,
        kv,
        node - raw - storage - kv
    );
    for id in IDS {
        hprintln!("  node {}: {} B", id, node);
    }
    let uart = size_of::<FrameReceiver<UART_RX_BYTES>>();
    hprintln!(
        "UART receivers: 2 x {} B; cluster total {} B",
        uart,
        IDS.len() * node + 2 * uart
    );
}
