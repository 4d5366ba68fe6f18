//! Writes the seed corpora of the fuzz targets into `fuzz/corpus/<target>/`.
//!
//! `cargo run -p tinyraft-tests --bin fuzz-corpus` (from the repository root). The files are
//! committed; `tests/tests/fuzz_corpus.rs` replays them in `cargo test`.

use std::path::Path;

use tinyraft_tests::fuzz;

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus");
    let targets: [(&str, Vec<Vec<u8>>); 3] = [
        ("message_decode_step", fuzz::message_decode_step_seeds()),
        ("file_storage_open", fuzz::file_storage_open_seeds()),
        ("sim_schedule", fuzz::sim_schedule_seeds()),
    ];
    for (target, seeds) in targets {
        let dir = root.join(target);
        std::fs::create_dir_all(&dir).expect("create corpus dir");
        for (i, seed) in seeds.iter().enumerate() {
            std::fs::write(dir.join(format!("seed-{i:02}")), seed).expect("write seed");
        }
        println!("{target}: {} seeds in {}", seeds.len(), dir.display());
    }
}
