//! Puts the chosen board's memory layout where cortex-m-rt's `link.x` looks for `memory.x`.
//!
//! The layouts live in `boards/`, not in this crate's root: the linker runs in the workspace
//! root, so a `memory.x` there would be found first and silently win over the one copied here.
//! `FIRMWARE_BOARD` picks the layout (default `mps2-an386`).

use std::env;
use std::fs;
use std::path::PathBuf;

fn main() {
    let board = env::var("FIRMWARE_BOARD").unwrap_or_else(|_| "mps2-an386".to_string());
    let layout = PathBuf::from("boards").join(format!("{board}.x"));
    let memory =
        fs::read(&layout).unwrap_or_else(|e| panic!("no memory layout {}: {e}", layout.display()));
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    fs::write(out.join("memory.x"), memory).expect("write memory.x");
    println!("cargo:rustc-link-search={}", out.display());
    println!("cargo:rerun-if-changed={}", layout.display());
    println!("cargo:rerun-if-env-changed=FIRMWARE_BOARD");
    println!("cargo:rerun-if-changed=build.rs");
}
