//! Replays the committed fuzz corpora (`fuzz/corpus/<target>/*`) through the same functions
//! the cargo-fuzz targets call, so `cargo test` guards every input the fuzzers kept (and any
//! crash input added there) without needing cargo-fuzz or nightly.

use std::path::PathBuf;

use tinyraft_tests::fuzz;

fn corpus(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/corpus")
        .join(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("corpus {}: {e}", dir.display()))
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "empty corpus {}", dir.display());
    files
        .into_iter()
        .map(|p| {
            let bytes = std::fs::read(&p).expect("read corpus file");
            (p, bytes)
        })
        .collect()
}

fn replay(target: &str, body: fn(&[u8])) {
    let inputs = corpus(target);
    for (path, bytes) in &inputs {
        let outcome = std::panic::catch_unwind(|| body(bytes));
        assert!(outcome.is_ok(), "{target} fails on {}", path.display());
    }
    eprintln!("{target}: {} corpus inputs replayed", inputs.len());
}

#[test]
fn message_decode_step_corpus() {
    replay("message_decode_step", fuzz::message_decode_step);
}

#[test]
fn file_storage_open_corpus() {
    replay("file_storage_open", fuzz::file_storage_open);
}

#[test]
fn sim_schedule_corpus() {
    replay("sim_schedule", fuzz::sim_schedule);
}
